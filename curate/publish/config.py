"""What a publish writes and where: the recipe's `publish:` section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curate.schema import DEFAULT_MODE_PROMPTS, ReasoningMode

# Version names become folder names and git tags: keep them to characters safe for both.
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Raw columns published next to `messages`, when the run has them.
DEFAULT_COLUMNS = [
    "problem",
    "reasoning",
    "answer_text",
    "reference_answer",
    "source",
    "domain",
    "model",
    "correct",
    "pass_rate",
    "band",
    "reasoning_tokens",
    "answer_tokens",
    "finish_reason",
    "reasoning_mode",
]


class PublishConfig(BaseModel):
    """How to turn a finished run into a versioned Hugging Face dataset."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path = Field(
        Path("published"),
        description="Dataset folder: each publish adds a version folder inside it (published/v1/, ...).",
    )
    split: str = Field(
        "train", pattern=r"^\w+$", description="Split name: shards are data/<split>-NNNNN-of-NNNNN.parquet."
    )
    messages: bool = Field(True, description="Add an SFT-ready `messages` column (system/user/assistant chat turns).")
    system_prompt: str | None = Field(
        None, description="Content of the system turn in `messages`; null leaves the system turn out."
    )
    mode_prompt: bool = Field(
        False,
        description="Put each row's reasoning_mode (from a reasoning_modes step) in its system turn, as "
        "Llama-Nemotron's 'detailed thinking on/off': the mode's text from mode_prompts, then system_prompt. "
        "The reasoning_mode column is then left out; with false it is published (when in `columns`) and "
        "curate's trainer puts the default mode text in the prompt itself.",
    )
    mode_prompts: dict[ReasoningMode, str] = Field(
        default_factory=lambda: dict(DEFAULT_MODE_PROMPTS),
        description="mode_prompt: the system text of each reasoning mode (long, short, no_think).",
    )
    user_template: str = Field(
        "{problem}", description="User turn: '{problem}' is replaced by the problem text (no other fields)."
    )
    think_open: str = Field("<think>", description="Opens the reasoning inside the assistant turn.")
    think_close: str = Field("</think>", description="Closes the reasoning; the final answer follows it.")
    preference: bool = Field(
        True,
        description="Publish the pairs of the run's preference_pairs step as the `preference` config "
        "(prompt/chosen/rejected for TRL's DPOTrainer), next to the default one.",
    )
    columns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COLUMNS),
        description="Raw run columns to publish as well, when present (absent ones are skipped). "
        "Lineage columns (trace_id, problem_id, teacher, sampling_params_hash, verifier_version) are always added.",
    )
    pretty_name: str | None = Field(None, description="Dataset title on the card; defaults to the recipe name.")
    description: str | None = Field(
        None, description="Opening paragraph of the card; defaults to a summary written from the run."
    )
    license: str | None = Field(
        None,
        description="Hub license id (e.g. 'apache-2.0'); defaults to the sources' license when they share one, "
        "else 'other'.",
    )
    language: list[str] = Field(default_factory=lambda: ["en"], description="Language codes for the card header.")
    task_categories: list[str] = Field(
        default_factory=lambda: ["text-generation"], description="Hub task categories for the card header."
    )
    tags: list[str] = Field(
        default_factory=lambda: ["reasoning", "distillation", "synthetic", "curate"],
        description="Hub tags for the card header.",
    )
    author: str | None = Field(
        None, description="Author for the citation block; defaults to the Hub repo's owner."
    )
    citation: str | None = Field(None, description="BibTeX for the card's citation block; generated when null.")
    shard_size_mb: float = Field(
        500, gt=0, description="Target shard size in MB (in-memory estimate; files are smaller once compressed)."
    )
    version_scheme: Literal["counter", "semver"] = Field(
        "counter",
        description="'counter': v1, v2, ...; 'semver': 1.0.0, with major = columns changed, "
        "minor = rows changed, patch = only card or recipe changed.",
    )
    version: str | None = Field(
        None, description="Explicit version name instead of the scheme's next one; it must not exist yet."
    )
    hub_repo_id: str | None = Field(
        None, pattern=r"^[\w.-]+/[\w.-]+$",
        description="Hub dataset repo ('owner/name') for `curate push` and the card's load snippet.",
    )
    private: bool = Field(True, description="Create the Hub repo private (ignored when it already exists).")
    hub_branch: str = Field(
        "main", description="Hub branch each version is committed to; every version is also tagged."
    )

    @field_validator("user_template")
    @classmethod
    def _template_has_problem(cls, value: str) -> str:
        if "{problem}" not in value:
            raise ValueError("user_template must contain '{problem}'")
        return value

    @field_validator("output_dir", mode="before")
    @classmethod
    def _folder_named(cls, value):
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder
            raise ValueError("output_dir is empty; name a folder, e.g. published/NAME")
        return value

    @field_validator("version")
    @classmethod
    def _version_name(cls, value: str | None) -> str | None:
        if value is not None and not VERSION_NAME.match(value):
            raise ValueError("version must be letters, digits, '.', '_' or '-' (it becomes a folder and a git tag)")
        return value

    def content_settings(self) -> dict:
        """The settings that shape the published files' content (what the fingerprint covers).

        Where and how files are laid out (folder, shard size, version naming, Hub
        visibility) changes no content, so republishing with only those changed is a no-op.
        """
        layout = {"output_dir", "shard_size_mb", "version_scheme", "version", "private", "hub_branch"}
        # `preference` shapes content only through the pairs it publishes, which the fingerprint hashes.
        layout.add("preference")
        return self.model_dump(mode="json", exclude=layout)

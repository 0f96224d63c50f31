"""Where problems come from: a recipe's `sources:` entries (also its `eval:` and `compare:`
held-out problems), and which source field fills which problem-table column."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(StrictModel):
    """Which source field fills which problem-table column."""

    problem: str = Field("problem", description="Field holding the problem text.")
    answer: str | None = Field(
        "answer", description="Field holding the reference answer or solution (null: none)."
    )
    tests: str | None = Field(None, description="Code problems: field with the test program or list of asserts.")
    entry_point: str | None = Field(None, description="Code problems: field naming the function under test.")


class Source(StrictModel):
    name: str = Field(description="Short name, recorded in the `source` column.")
    path: str | None = Field(None, description="Local file or HF dataset folder, relative to the recipe.")
    hub: str | None = Field(None, description="Or a Hub dataset name for datasets.load_dataset.")
    hub_config: str | None = Field(None, description="Hub dataset configuration name.")
    revision: str | None = Field(None, description="Hub dataset revision (pin it for reproducibility).")
    split: str = Field("train", description="Split to read from a Hub dataset or dataset folder.")
    format: Literal["jsonl", "json", "parquet", "csv", "hf_disk"] | None = Field(
        None, description="File format; inferred from the suffix when omitted."
    )
    fields: FieldMap = Field(default_factory=FieldMap)
    answer_format: Literal["plain", "gsm8k", "boxed"] = Field(
        "plain",
        description="How the reference answer is read from the answer field: as is, after "
        "GSM8K's '####', or the last \\boxed{} of a MATH-style solution.",
    )
    domain: Literal["math", "choice", "code"] = Field(
        "math", description="Decides the verifier: math (math-verify), choice (multiple-choice letter) or code (tests).")
    limit: int | None = Field(None, ge=1, description="Read only the first N records.")
    license: str | None = Field(None, description="License of the data, for the dataset card.")

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of path or hub")
        return self

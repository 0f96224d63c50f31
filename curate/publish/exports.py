"""A published version in the formats other trainers read: LLaMA-Factory, axolotl, OpenAI.

Each export is a folder of JSONL files plus what the tool needs to find them:
- `llama-factory`: `dataset_info.json` registering `<name>` (ShareGPT with OpenAI-style
  role/content tags, the system prompt as the first turn) and, when the version has pairs,
  `<name>_preference` (`ranking: true`; `chosen`/`rejected` one message each).
- `axolotl`: `axolotl.yaml`, a `datasets:` snippet of type `chat_template`, and with pairs
  `axolotl_dpo.yaml` (`rl: dpo`, type `chat_template.default`).
- `openai`: `train.jsonl` for supervised fine-tuning (`messages`), with pairs
  `preference.jsonl` in the DPO form (`input.messages`, `preferred_output`, `non_preferred_output`).

Reasoning is written the way these trainers' reasoning templates (and a student that is to
think aloud) expect it: inside `<think>`…`</think>` at the start of the assistant turn,
whatever think tags the version was published with. The folder is built aside and renamed
into place, so a failed export leaves the previous one (or none), never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from curate.core.io import atomic_path, fsync_dir, write_json, write_text
from curate.publish.config import PublishConfig
from curate.publish.rows import messages_expr
from curate.publish.versions import PREFERENCE, has_config, read_lineage, read_version_rows

FORMATS = ("llama-factory", "axolotl", "openai")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BUILDING_PREFIX = ".export-"


@dataclass(frozen=True)
class ExportResult:
    format: str
    folder: Path
    files: dict[str, int]  # file name -> rows (0 for the config files)


def export_version(version_dir: Path, format: str, to: Path | None = None) -> ExportResult:
    """Write `version_dir` (a published version folder) as `format` into `to` (default:
    `<dataset>/exports/<version>/<format>`), replacing an earlier export there."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    version_dir = Path(version_dir)
    dataset_dir, version = version_dir.parent, version_dir.name
    lineage = read_lineage(dataset_dir, version)
    settings = PublishConfig.model_validate(lineage.get("publish_config") or {})
    conversations = sft_messages(read_version_rows(dataset_dir, version), settings, version_dir)
    pairs = None
    if has_config(dataset_dir, version, PREFERENCE):
        pairs = preference_turns(read_version_rows(dataset_dir, version, PREFERENCE), settings)
    name = dataset_name(lineage, version)
    target = Path(to) if to is not None else dataset_dir / "exports" / version / format
    writer = {"llama-factory": _write_llama_factory, "axolotl": _write_axolotl, "openai": _write_openai}[format]
    files = _build_aside(target, lambda folder: writer(folder, name, conversations, pairs, target))
    return ExportResult(format, target, files)


def dataset_name(lineage: dict, version: str) -> str:
    """`<recipe>_<version>` in the characters every tool accepts as a dataset key."""
    recipe = (lineage.get("recipe") or {}).get("name") or "curate"
    return re.sub(r"[^A-Za-z0-9_]+", "_", f"{recipe}_{version}").strip("_")


def sft_messages(rows: pl.DataFrame, settings: PublishConfig, where: Path) -> pl.DataFrame:
    """One `messages` column: the published turns (rebuilt from the raw columns when the
    version was published without them), the assistant's reasoning in `<think>` tags."""
    if "messages" not in rows.columns:
        return rows.select(messages_expr(rows.columns, _standard_tags(settings), where).alias("messages"))
    return rows.select(pl.col("messages").list.eval(_with_standard_tags(pl.element(), settings)))


def preference_turns(pairs: pl.DataFrame, settings: PublishConfig) -> pl.DataFrame:
    """`prompt` turns and one `chosen` and one `rejected` assistant message per pair."""
    return pairs.select(
        "prompt",
        *(_with_standard_tags(pl.col(side).list.first(), settings).alias(side) for side in ("chosen", "rejected")),
    )


def _standard_tags(settings: PublishConfig) -> PublishConfig:
    return settings.model_copy(update={"think_open": THINK_OPEN, "think_close": THINK_CLOSE})


def _with_standard_tags(turn: pl.Expr, settings: PublishConfig) -> pl.Expr:
    """The turn struct with an assistant's leading custom think tags replaced by `<think>`."""
    if (settings.think_open, settings.think_close) == (THINK_OPEN, THINK_CLOSE):
        return turn
    content = turn.struct.field("content")
    swapped = (content.str.replace(settings.think_open, THINK_OPEN, literal=True, n=1)
               .str.replace(settings.think_close, THINK_CLOSE, literal=True, n=1))
    is_reasoning = (turn.struct.field("role") == "assistant") & content.str.starts_with(settings.think_open)
    return turn.struct.with_fields(pl.when(is_reasoning).then(swapped).otherwise(content).alias("content"))


def _build_aside(target: Path, write) -> dict[str, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=_BUILDING_PREFIX, dir=target.parent))
    building.chmod(0o755)
    try:
        files = write(building)
        old = None
        if target.exists():
            old = target.parent / f"{_BUILDING_PREFIX}old-{building.name}"
            os.rename(target, old)
        os.rename(building, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return files


def _write_jsonl(frame: pl.DataFrame, path: Path) -> int:
    with atomic_path(path) as tmp:
        frame.write_ndjson(tmp)
    return frame.height


def _write_openai(folder: Path, name: str, conversations: pl.DataFrame, pairs: pl.DataFrame | None,
                  final: Path) -> dict[str, int]:
    files = {"train.jsonl": _write_jsonl(conversations, folder / "train.jsonl")}
    if pairs is not None:
        dpo = pairs.select(
            pl.struct(pl.col("prompt").alias("messages")).alias("input"),
            pl.concat_list("chosen").alias("preferred_output"),
            pl.concat_list("rejected").alias("non_preferred_output"),
        )
        files["preference.jsonl"] = _write_jsonl(dpo, folder / "preference.jsonl")
    return files


_OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                "system_tag": "system"}


def _write_llama_factory(folder: Path, name: str, conversations: pl.DataFrame, pairs: pl.DataFrame | None,
                         final: Path) -> dict[str, int]:
    files = {f"{name}.jsonl": _write_jsonl(conversations, folder / f"{name}.jsonl")}
    info: dict[str, dict[str, object]] = {name: {
        "file_name": f"{name}.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": _OPENAI_TAGS}}
    if pairs is not None:
        preference = f"{name}_preference"
        pair_rows = pairs.rename({"prompt": "messages"})
        files[f"{preference}.jsonl"] = _write_jsonl(pair_rows, folder / f"{preference}.jsonl")
        info[preference] = {"file_name": f"{preference}.jsonl", "formatting": "sharegpt", "ranking": True,
                            "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                            "tags": _OPENAI_TAGS}
    write_json(info, folder / "dataset_info.json")
    files["dataset_info.json"] = 0
    return files


def _write_axolotl(folder: Path, name: str, conversations: pl.DataFrame, pairs: pl.DataFrame | None,
                   final: Path) -> dict[str, int]:
    files = {f"{name}.jsonl": _write_jsonl(conversations, folder / f"{name}.jsonl")}
    mappings = {"role": "role", "content": "content"}
    sft = {"chat_template": "tokenizer_default", "datasets": [{
        "path": str((final / f"{name}.jsonl").absolute()), "ds_type": "json", "type": "chat_template",
        "field_messages": "messages", "message_property_mappings": mappings, "roles_to_train": ["assistant"]}]}
    _write_yaml(sft, folder / "axolotl.yaml", "SFT on the exported traces; merge into your axolotl config.")
    files["axolotl.yaml"] = 0
    if pairs is not None:
        preference = f"{name}_preference.jsonl"
        files[preference] = _write_jsonl(pairs.rename({"prompt": "messages"}), folder / preference)
        dpo = {"rl": "dpo", "chat_template": "tokenizer_default", "datasets": [{
            "path": str((final / preference).absolute()), "ds_type": "json", "split": "train",
            "type": "chat_template.default", "field_messages": "messages", "field_chosen": "chosen",
            "field_rejected": "rejected", "message_property_mappings": mappings,
            "roles": {"system": ["system"], "user": ["user"], "assistant": ["assistant"]}}]}
        _write_yaml(dpo, folder / "axolotl_dpo.yaml", "DPO on the exported preference pairs.")
        files["axolotl_dpo.yaml"] = 0
    return files


def _write_yaml(data: dict, path: Path, comment: str) -> None:
    write_text(f"# {comment}\n" + yaml.safe_dump(data, sort_keys=False), path)


def describe_export(result: ExportResult) -> str:
    rows = ", ".join(f"{name} ({count:,} rows)" if count else name for name, count in result.files.items())
    return f"{result.format} export at {result.folder}: {rows}"


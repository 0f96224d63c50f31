"""The published table: `messages`, raw columns and per-row lineage, plus content hashes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.publish.config import PublishConfig
from curate.publish.run import Run, RunDirError
from curate.schema import content_hash

LINEAGE_COLUMNS = ("trace_id", "problem_id", "teacher", "sampling_params_hash", "verifier_version")

# Descriptions of the columns publish adds (the others are described in curate.schema).
PUBLISH_COLUMNS = {
    "messages": "Chat turns for SFT: optional system prompt, the problem as the user turn, and the "
    "teacher's reasoning (between think tags) followed by its final answer as the assistant turn.",
    "sampling_params_hash": "Hash of the sampling parameters the trace was generated with.",
    "verifier_version": "Verifier (and its version) that checked the answer (only when a verify step ran).",
}


def published_frame(run: Run, config: PublishConfig) -> pl.DataFrame:
    """Rows as published: `messages` first, then the raw columns, then the lineage columns."""
    frame = run.output
    if frame.height == 0:
        raise RunDirError(f"{run.run_dir}: the run's output has no rows; nothing to publish")
    if "trace_id" in frame.columns:
        _check_unique(frame, "trace_id", run)

    selected: list[pl.Expr] = []
    if config.messages:
        selected.append(messages_expr(frame.columns, config, run.run_dir).alias("messages"))
    lineage_names = set(LINEAGE_COLUMNS)
    selected += [pl.col(name) for name in config.columns if name in frame.columns and name not in lineage_names]
    selected += [pl.col(name) for name in ("trace_id", "problem_id", "teacher") if name in frame.columns]
    if "generation_params" in frame.columns:
        selected.append(_sampling_params_hash(frame, run))
    verifier = _verifier_version(frame, run)
    if verifier is not None:
        selected.append(verifier)
    return frame.select(selected)


def messages_expr(columns: list[str], config: PublishConfig, where: Path | str) -> pl.Expr:
    """The `messages` column; `where` (the run folder) names the data in errors."""
    if "problem" not in columns:
        raise RunDirError(f"{where}: output has no 'problem' column, needed for the user turn of `messages`")
    user_parts: list[pl.Expr] = []
    for index, text in enumerate(config.user_template.split("{problem}")):
        if index:
            user_parts.append(pl.col("problem").fill_null(""))
        user_parts.append(pl.lit(text))
    user = pl.concat_str(user_parts)

    if {"reasoning", "answer_text"} <= set(columns):
        reasoning = pl.col("reasoning").fill_null("").str.strip_chars()
        answer = pl.col("answer_text").fill_null("").str.strip_chars()
        with_reasoning = pl.concat_str(
            [pl.lit(config.think_open + "\n"), reasoning, pl.lit(f"\n{config.think_close}\n\n"), answer]
        )
        assistant = pl.when(reasoning != "").then(with_reasoning).otherwise(answer)
    elif "completion" in columns:
        assistant = pl.col("completion").fill_null("")
    else:
        raise RunDirError(
            f"{where}: output has neither 'reasoning'+'answer_text' nor 'completion' for the assistant turn"
        )

    turns = [_turn("user", user), _turn("assistant", assistant)]
    if config.system_prompt is not None:
        turns.insert(0, _turn("system", pl.lit(config.system_prompt)))
    return pl.concat_list(turns)


def _turn(role: str, content: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(role).alias("role"), content.cast(pl.String).alias("content"))


def _check_unique(frame: pl.DataFrame, key: str, run: Run) -> None:
    duplicated = frame.filter(pl.col(key).is_duplicated())[key].unique().head(5).to_list()
    if duplicated:
        raise RunDirError(f"{run.run_dir}: output has repeated {key} values, e.g. {duplicated}")


def _sampling_params_hash(frame: pl.DataFrame, run: Run) -> pl.Expr:
    # A run has few distinct parameter sets: hash each once and map.
    hashes = {}
    for params in frame["generation_params"].drop_nulls().unique().to_list():
        try:
            canonical = json.dumps(json.loads(params), sort_keys=True)
        except json.JSONDecodeError:
            bad = frame.filter(pl.col("generation_params") == params).row(0, named=True)
            raise RunDirError(
                f"{run.run_dir}: generation_params of trace {bad.get('trace_id')} is not JSON: {params[:80]!r}"
            ) from None
        hashes[params] = content_hash(canonical)
    return pl.col("generation_params").replace_strict(hashes, default=None, return_dtype=pl.String).alias(
        "sampling_params_hash"
    )


def _verifier_version(frame: pl.DataFrame, run: Run) -> pl.Expr | None:
    """The verifier_version column, or None when nothing was verified."""
    if "verifier_version" in frame.columns:
        return pl.col("verifier_version").cast(pl.String)
    verify_ops = [step.op for step in run.steps if "verif" in step.op]
    if not verify_ops:
        return None
    # The run did not record a per-row verifier version: name the step and the versions it ran with
    # (math answers are checked with math-verify, code in curate's own sandbox).
    label = f"{verify_ops[-1]} (curate {run.manifest.curate_version or '?'}"
    math_verify = run.packages.get("math-verify") or run.packages.get("math_verify")
    math_label = f"{label}, math-verify {math_verify})" if math_verify else f"{label})"
    if "domain" not in frame.columns:
        return pl.lit(math_label, pl.String).alias("verifier_version")
    return (
        pl.when(pl.col("domain") == "math").then(pl.lit(math_label)).otherwise(pl.lit(f"{label})"))
        .alias("verifier_version")
    )


def row_hashes(frame: pl.DataFrame) -> pl.Series:
    """One content hash per row, independent of column order."""
    encoded = frame.select(pl.struct(sorted(frame.columns)).struct.json_encode()).to_series()
    return pl.Series("row_hash", [content_hash(row) for row in encoded.to_list()], dtype=pl.String)


def data_fingerprint(frame: pl.DataFrame) -> str:
    """Hash of the set of rows: the same rows in another order give the same fingerprint."""
    return content_hash(*row_hashes(frame).sort().to_list())


def column_types(frame: pl.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.schema.items()}

"""The published table: `messages`, raw columns and per-row lineage, plus content hashes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.publish.config import PublishConfig
from curate.publish.run import Run, RunDirError
from curate.schema import content_hash, content_hash_expr, with_mode_prompt

MODE_COLUMN = "reasoning_mode"  # set by the reasoning_modes step
LINEAGE_COLUMNS = ("trace_id", "problem_id", "teacher", "sampling_params_hash", "verifier_version")

# Descriptions of the columns publish adds (the others are described in curate.schema).
PUBLISH_COLUMNS = {
    "messages": "Chat turns for SFT: optional system prompt, the problem as the user turn, and the "
    "teacher's reasoning (between think tags) followed by its final answer as the assistant turn.",
    "sampling_params_hash": "Hash of the sampling parameters the trace was generated with.",
    "verifier_version": "Verifier (and its version) that checked the answer (only when a verify step ran).",
}


# Descriptions of the `preference` config's columns (the others are described in curate.schema).
PREFERENCE_DESCRIPTIONS = {
    "prompt": "The turns before the answer (optional system prompt, the problem as the user turn).",
    "chosen": "A verified correct trace of the problem, as one assistant turn.",
    "rejected": "A verified wrong trace of the same problem, as one assistant turn.",
    "pair_id": "Hash of the chosen and rejected trace ids.",
    "chosen_trace_id": "The trace_id of the chosen trace.",
    "rejected_trace_id": "The trace_id of the rejected trace.",
    "chosen_teacher": "Teacher of the chosen trace.",
    "rejected_teacher": "Teacher of the rejected trace.",
    "chosen_model": "Model of the chosen trace.",
    "rejected_model": "Model of the rejected trace.",
    "chosen_answer": "Final answer extracted from the chosen trace.",
    "rejected_answer": "Final answer extracted from the rejected trace.",
    "rejected_answer_count": "The problem's verified wrong samples giving the rejected answer.",
    "pair_policy": "The preference_pairs settings that chose the pair.",
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
    # The mode travels in the system prompt or as a column, never both: a trainer seeing the
    # column adds the mode's text to the prompt itself.
    left_out = set(LINEAGE_COLUMNS) | ({MODE_COLUMN} if config.mode_prompt else set())
    selected += [pl.col(name) for name in config.columns if name in frame.columns and name not in left_out]
    selected += [pl.col(name) for name in ("trace_id", "problem_id", "teacher") if name in frame.columns]
    if "generation_params" in frame.columns:
        selected.append(_sampling_params_hash(frame, run))
    verifier = _verifier_version(frame, run)
    if verifier is not None:
        selected.append(verifier)
    return frame.select(selected)


def messages_expr(columns: list[str], config: PublishConfig, where: Path | str) -> pl.Expr:
    """The `messages` column; `where` (the run folder) names the data in errors."""
    if config.mode_prompt and MODE_COLUMN not in columns:
        raise RunDirError(f"{where}: publish.mode_prompt needs the '{MODE_COLUMN}' column: add a reasoning_modes "
                          "step to the recipe, or set mode_prompt: false")
    turns = [*prompt_turns(columns, config, where), _turn("assistant", assistant_expr(columns, config, where))]
    messages = pl.concat_list(turns)
    if config.mode_prompt and config.system_prompt is None:
        # A row without a mode then has no system text: leave its system turn out.
        return messages.list.filter(pl.element().struct.field("content").is_not_null())
    return messages


def prompt_turns(columns: list[str], config: PublishConfig, where: Path | str) -> list[pl.Expr]:
    """The turns before the assistant's: the optional system prompt and the problem as the user turn."""
    if "problem" not in columns:
        raise RunDirError(f"{where}: output has no 'problem' column, needed for the user turn of `messages`")
    user_parts: list[pl.Expr] = []
    for index, text in enumerate(config.user_template.split("{problem}")):
        if index:
            user_parts.append(pl.col("problem").fill_null(""))
        user_parts.append(pl.lit(text))
    turns = [_turn("user", pl.concat_str(user_parts))]
    system = pl.lit(config.system_prompt, pl.String)
    if config.mode_prompt and MODE_COLUMN in columns:
        mode_text = pl.col(MODE_COLUMN).replace_strict(config.mode_prompts, default=None, return_dtype=pl.String)
        turns.insert(0, _turn("system", with_mode_prompt(system, mode_text)))
    elif config.system_prompt is not None:
        turns.insert(0, _turn("system", system))
    return turns


def assistant_expr(columns: list[str], config: PublishConfig, where: Path | str, prefix: str = "") -> pl.Expr:
    """The assistant turn's text: reasoning between the think tags, then the final answer
    (or the raw completion). `prefix` picks one side of a preference pair ('chosen_')."""
    reasoning_column, answer_column, completion_column = (
        f"{prefix}{c}" for c in ("reasoning", "answer_text", "completion"))
    if {reasoning_column, answer_column} <= set(columns):
        reasoning = pl.col(reasoning_column).fill_null("").str.strip_chars()
        answer = pl.col(answer_column).fill_null("").str.strip_chars()
        with_reasoning = pl.concat_str(
            [pl.lit(config.think_open + "\n"), reasoning, pl.lit(f"\n{config.think_close}\n\n"), answer]
        )
        # A no_think row (reasoning_modes) teaches the final answer text alone.
        mode_column = f"{prefix}{MODE_COLUMN}"
        thinks = pl.col(mode_column).fill_null("") != "no_think" if mode_column in columns else pl.lit(True)
        return pl.when((reasoning != "") & thinks).then(with_reasoning).otherwise(answer)
    if completion_column in columns:
        return pl.col(completion_column).fill_null("")
    raise RunDirError(
        f"{where}: output has neither '{reasoning_column}'+'{answer_column}' nor '{completion_column}' "
        "for the assistant turn"
    )


# Pair columns published next to prompt/chosen/rejected, when present (renamed on the way).
PREFERENCE_COLUMNS = {
    "pair_id": "pair_id", "problem_id": "problem_id", "chosen_trace_id": "chosen_trace_id",
    "rejected_trace_id": "rejected_trace_id",
    "chosen_teacher": "chosen_teacher", "rejected_teacher": "rejected_teacher",
    "chosen_model": "chosen_model", "rejected_model": "rejected_model",
    "chosen_extracted_answer": "chosen_answer", "rejected_extracted_answer": "rejected_answer",
    "rejected_answer_count": "rejected_answer_count", "reference_answer": "reference_answer",
    "source": "source", "domain": "domain", "pass_rate": "pass_rate", "band": "band", "pair_policy": "pair_policy",
}
PAIR_LINEAGE_COLUMNS = ("pair_id", "problem_id", "chosen_trace_id", "rejected_trace_id")


def preference_frame(run: Run, config: PublishConfig) -> pl.DataFrame | None:
    """The `preference` config's rows (TRL's conversational preference form: `prompt` turns,
    one-turn `chosen` and `rejected`), or None when the run formed no pairs or publishing
    them is switched off."""
    pairs = run.pairs() if config.preference else None
    if pairs is None or pairs.is_empty():  # the card's funnel still says why no pair was formed
        return None
    columns = pairs.columns
    if pairs.height and pairs["pair_id"].is_duplicated().any():
        raise RunDirError(f"{run.run_dir}: the preference pairs repeat pair_id values")
    return pairs.select(
        pl.concat_list(prompt_turns(columns, config, run.run_dir)).alias("prompt"),
        *(pl.concat_list([_turn("assistant", assistant_expr(columns, config, run.run_dir, f"{side}_"))]).alias(side)
          for side in ("chosen", "rejected")),
        *(pl.col(name).alias(alias) for name, alias in PREFERENCE_COLUMNS.items() if name in columns),
    )


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
    encoded = pl.struct(sorted(frame.columns)).struct.json_encode()
    return frame.select(content_hash_expr(encoded).alias("row_hash")).to_series()


def data_fingerprint(frame: pl.DataFrame) -> str:
    """Hash of the set of rows: the same rows in another order give the same fingerprint."""
    return content_hash(*row_hashes(frame).sort().to_list())


def column_types(frame: pl.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.schema.items()}

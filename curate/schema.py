"""The tables operators pass to each other, in one place.

A run starts with a *problem table* (one row per problem). `generate` turns it into a
*trace table* (one row per problem x teacher x sample) that keeps the problem columns,
and later stages add the columns listed in `STAGE_COLUMNS`. `schemas/*.schema.json` are
generated from these lists (`curate schema`), and a test keeps them in sync.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import polars as pl

from curate.text import collapsed_text

try:  # a dependency; the GPU check's carried wheels leave it out (over the 64 MiB limit)
    import polars_hash  # noqa: F401 - registers the `chash` expression namespace

    _HASH_PLUGIN = True
except ImportError:  # the same hashes, ~3x slower: one Python sha256 per row
    _HASH_PLUGIN = False


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    description: str
    nullable: bool = False


PROBLEM_COLUMNS: tuple[Column, ...] = (
    Column("problem_id", pl.String(), "Stable content hash of the normalised problem text."),
    Column("problem", pl.String(), "The problem statement shown to the teacher."),
    Column(
        "reference_answer",
        pl.String(),
        "Reference final answer, normalised per source (GSM8K '#### N', MATH '\\boxed{}').",
        nullable=True,
    ),
    Column("source", pl.String(), "Name of the recipe source the problem came from."),
    Column("domain", pl.String(), "Problem domain: 'math' or 'code' (decides the verifier)."),
    Column(
        "tests",
        pl.String(),
        "Code problems: JSON object, {'test': program, 'entry_point': name} (assert-style) or "
        "{'cases': [{'input': stdin, 'output': stdout}, ...], 'time_limit_s': seconds} (stdin/stdout); "
        "null otherwise.",
        nullable=True,
    ),
    Column("metadata", pl.String(), "JSON object with the source record's unmapped fields."),
)

TRACE_COLUMNS: tuple[Column, ...] = PROBLEM_COLUMNS + (
    Column("trace_id", pl.String(), "Stable hash of problem_id, teacher, model, sample_index, params."),
    Column("teacher", pl.String(), "Teacher name from the recipe."),
    Column("model", pl.String(), "Model id, directory or GGUF file the teacher ran."),
    Column("sample_index", pl.Int32(), "Index of this sample among the teacher's n samples."),
    Column("prompt", pl.String(), "Rendered prompt: JSON list of chat messages, or plain text."),
    Column("completion", pl.String(), "Raw model output."),
    Column("reasoning", pl.String(), "Reasoning part of the completion (e.g. inside <think>)."),
    Column("answer_text", pl.String(), "Completion after the reasoning: the final answer text."),
    Column("prompt_tokens", pl.Int32(), "Prompt length in tokens."),
    Column("reasoning_tokens", pl.Int32(), "Reasoning length in tokens."),
    Column("answer_tokens", pl.Int32(), "Final answer text length in tokens."),
    Column("finish_reason", pl.String(), "'stop' or 'length' (truncated)."),
    Column("generation_params", pl.String(), "JSON object of the sampling parameters used."),
)

# Columns a trace source adds to the traces it imports.
IMPORT_COLUMNS: tuple[Column, ...] = (
    Column("source_correct", pl.Boolean(), "Trace sources: the dump's own correctness label, kept next to the "
           "`correct` that verify computes (null = no label, or a generated trace).", nullable=True),
)

# Columns that later stages add to the trace or problem table. Each stage lists its own.
STAGE_COLUMNS: tuple[Column, ...] = IMPORT_COLUMNS + (
    Column("reject_reason", pl.String(), "Filters: why the row was removed (null = kept).", nullable=True),
    Column("reject_detail", pl.String(), "Filters: JSON with evidence for the removal.", nullable=True),
    # verify
    Column("extracted_answer", pl.String(), "Verify: final answer (math) or code taken from the trace.", nullable=True),
    Column("extraction_method", pl.String(), "Verify: how it was found: boxed, gsm8k, answer_is, choice, regex, "
           "last_number, code_block, raw.", nullable=True),
    Column("correct", pl.Boolean(), "Verify: answer matches the reference / passes the tests (null = undecided).",
           nullable=True),
    Column("verify_status", pl.String(), "Verify: correct, wrong, timeout, parse_error, no_answer or error."),
    Column("verify_detail", pl.String(), "Verify: JSON with the reason, or per-test results for code."),
    # grade (per problem, repeated on each of its trace rows)
    Column("n_samples", pl.Int64(), "Grade: verified samples of the problem (correct not null)."),
    Column("n_correct", pl.Int64(), "Grade: correct samples of the problem."),
    Column("pass_rate", pl.Float64(), "Grade: n_correct / n_samples (null = no verified sample).", nullable=True),
    Column("wilson_low", pl.Float64(), "Grade: lower bound of the pass-rate confidence interval.", nullable=True),
    Column("wilson_high", pl.Float64(), "Grade: upper bound of the pass-rate confidence interval.", nullable=True),
    Column("n_teachers", pl.Int32(), "Grade: teachers with at least one verified sample."),
    Column("teacher_pass_rates", pl.String(), "Grade: JSON list of {teacher, pass_rate, n_samples}."),
    Column("teacher_variance", pl.Float64(), "Grade: variance of the teachers' pass rates.", nullable=True),
    Column("teacher_cv", pl.Float64(), "Grade: coefficient of variation of the teachers' pass rates (null at mean 0).",
           nullable=True),
    Column("teacher_disagreement", pl.Boolean(), "Grade: some teacher never solves it while another does."),
    Column("band", pl.String(), "Grade: difficulty band: unsolved, the configured bands, trivial.", nullable=True),
    # dedup
    Column("judge_verdict", pl.Boolean(), "Verify's LLM judge: the final answer matches the reference "
           "(null = not asked or no verdict).", nullable=True),
    Column("judge_reason", pl.String(), "Verify's LLM judge: its one-line reason.", nullable=True),
    Column("judge_status", pl.String(), "Verify's LLM judge: ok, unparseable, truncated, generation_error, "
           "over_budget or skipped.", nullable=True),
    Column("template_id", pl.String(), "template_cap: id of the problem text with its numbers masked (problems "
           "differing only in numbers share it).", nullable=True),
    Column("dedup_cluster", pl.String(), "Dedup: id of the row kept for this row's near-duplicate cluster "
           "(its own id when unique; null for empty text).", nullable=True),
    # prune
    Column("reasoning_tokens_before", pl.Int32(), "Prune: reasoning tokens before the first shortening "
           "(null = untouched).", nullable=True),
    Column("pruned_by", pl.String(), "Prune: comma-separated operators that shortened the reasoning "
           "(null = untouched).", nullable=True),
    Column("process_verdict", pl.Boolean(), "Prune: process_check's judge says every step follows "
           "(null = not asked or no verdict).", nullable=True),
    Column("process_reason", pl.String(), "Prune: process_check's judge's one-line reason.", nullable=True),
    Column("process_status", pl.String(), "Prune: process_check outcome: ok, unparseable, truncated, "
           "generation_error, over_budget or skipped.", nullable=True),
    Column("rewrite_status", pl.String(), "Prune: rewrite_traces outcome: rewritten, skipped, "
           "rejected:answer_lost|format_lost|no_gain|truncated or failed:<reason> (original kept unless rewritten).",
           nullable=True),
    Column("answer_tokens_before", pl.Int32(), "Prune: answer tokens before rewrite_traces (text: answer_text) "
           "shortened the solution (null = untouched).", nullable=True),
    Column("review_verdict", pl.String(), "Human review (review_filter): the reviewer's verdict, correct, wrong or "
           "unclear (null = not reviewed).", nullable=True),
    Column("review_note", pl.String(), "Human review (review_filter): the reviewer's note, if any.", nullable=True),
    # select
    Column("reasoning_mode", pl.String(), "reasoning_modes: how the student should answer this problem: 'long' "
           "or 'short' reasoning, or 'no_think' (the final answer text alone).", nullable=True),
)

# The reasoning modes `reasoning_modes` assigns, and the system-prompt text that asks for each
# (Llama-Nemotron's "detailed thinking on/off"): publish, the trainer and eval share them.
ReasoningMode = Literal["long", "short", "no_think"]
REASONING_MODES: tuple[str, ...] = get_args(ReasoningMode)
DEFAULT_MODE_PROMPTS: dict[ReasoningMode, str] = {
    "long": "detailed thinking on", "short": "detailed thinking on", "no_think": "detailed thinking off"}


def with_mode_prompt(system: pl.Expr, mode_text: pl.Expr) -> pl.Expr:
    """A system prompt with the mode's text in front (the text alone when there is no system
    prompt; the system prompt alone when the row has no mode)."""
    return (
        pl.when(mode_text.is_null()).then(system)
        .when(system.is_null() | (system == "")).then(mode_text)
        .otherwise(pl.concat_str([mode_text, pl.lit("\n"), system]))
    )


TABLES: dict[str, tuple[Column, ...]] = {"problem": PROBLEM_COLUMNS, "trace": TRACE_COLUMNS}
KNOWN_COLUMNS: dict[str, Column] = {c.name: c for c in TRACE_COLUMNS + STAGE_COLUMNS}


def polars_schema(table: str) -> pl.Schema:
    return pl.Schema({c.name: c.dtype for c in TABLES[table]})


def conform(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Cast `frame` to the table's dtypes and put its columns first; extra columns stay."""
    columns = TABLES[table]
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        raise ValueError(f"{table} table is missing columns: {', '.join(missing)}")
    names = [c.name for c in columns]
    casts = [pl.col(c.name).cast(c.dtype) for c in columns]
    return frame.select(casts + [pl.col(n) for n in frame.columns if n not in names])


_JSON_TYPES = {pl.String: "string", pl.Int32: "integer", pl.Int64: "integer", pl.Float64: "number",
               pl.Boolean: "boolean"}


def json_schema(table: str) -> dict:
    """JSON Schema of one table row, for editors and for readers outside Python."""
    properties = {}
    # The trace table also documents the columns later stages add; none of them is required.
    documented = TABLES[table] + (STAGE_COLUMNS if table == "trace" else ())
    for column in documented:
        json_type = _JSON_TYPES[type(column.dtype)]
        properties[column.name] = {
            "type": [json_type, "null"] if column.nullable else json_type,
            "description": column.description,
            "x-polars-dtype": str(column.dtype),
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"curate {table} table row",
        "type": "object",
        "properties": properties,
        "required": [c.name for c in TABLES[table] if not c.nullable],
    }


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def content_hash_expr(*parts: pl.Expr) -> pl.Expr:
    """content_hash of each row's parts (text expressions), vectorised: the parts are joined
    and hashed (the same sha256) by the polars-hash plugin, without Python per row."""
    joined = pl.concat_str([*parts, pl.lit("")], separator="\x1f")  # each part followed by the separator
    if _HASH_PLUGIN:
        return cast(Any, joined).chash.sha2_256().str.head(16)
    return joined.cast(pl.Binary).map_batches(
        lambda keys: pl.Series([hashlib.sha256(key).hexdigest()[:16] if key is not None else None
                                for key in keys.to_list()], dtype=pl.String),
        return_dtype=pl.String,
    )


def problem_id_expr(problem: pl.Expr) -> pl.Expr:
    """problem_id as a polars expression (vectorised over millions of rows)."""
    return content_hash_expr(collapsed_text(problem))


def problem_id(problem: str) -> str:
    """problem_id of one problem text (the same as problem_id_expr)."""
    return pl.select(problem_id_expr(pl.lit(problem, pl.String))).item()


def trace_id(problem_id: str, teacher: str, model: str, sample_index: int, params: dict) -> str:
    return content_hash(problem_id, teacher, model, str(sample_index), json.dumps(params, sort_keys=True))


def completion_tokens() -> pl.Expr:
    """Tokens the teacher produced: reasoning plus final answer."""
    return pl.col("reasoning_tokens").cast(pl.Int64) + pl.col("answer_tokens").cast(pl.Int64)

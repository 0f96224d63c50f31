"""The tables operators pass to each other, in one place.

A run starts with a *problem table* (one row per problem). `generate` turns it into a
*trace table* (one row per problem x teacher x sample) that keeps the problem columns,
and later stages add the columns listed in `STAGE_COLUMNS`. `schemas/*.schema.json` are
generated from these lists (`curate schema`), and a test keeps them in sync.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

import polars as pl


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
        "Code problems: JSON object {'test': program, 'entry_point': name}; null otherwise.",
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

# Columns that later stages add to the trace or problem table. Each stage lists its own.
STAGE_COLUMNS: tuple[Column, ...] = (
    Column("reject_reason", pl.String(), "Filters: why the row was removed (null = kept).", nullable=True),
    Column("reject_detail", pl.String(), "Filters: JSON with evidence for the removal.", nullable=True),
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
    for column in TABLES[table]:
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


_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Whitespace- and Unicode-normalised text: what content hashes are taken of."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def problem_id_expr(problem: pl.Expr) -> pl.Expr:
    """problem_id as a polars expression (vectorised over millions of rows)."""
    normalised = (
        problem.str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars()
    )
    return normalised.map_batches(
        lambda s: pl.Series([content_hash(t) for t in s.to_list()], dtype=pl.String),
        return_dtype=pl.String,
    )


def trace_id(problem_id: str, teacher: str, model: str, sample_index: int, params: dict) -> str:
    return content_hash(problem_id, teacher, model, str(sample_index), json.dumps(params, sort_keys=True))

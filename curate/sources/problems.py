"""Turn source records into the problem table (see curate.schema.PROBLEM_COLUMNS)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NoReturn

import polars as pl

from curate.answers.extract import gsm8k_final, last_boxed
from curate.core.io import file_sha256
from curate.schema import PROBLEM_COLUMNS, conform, problem_id_expr
from curate.sources.config import Source
from curate.sources.readers import SourceError, polars_errors_named, read_source


def resolve_path(source: Source, recipe_dir: Path) -> Path | None:
    if source.path is None:
        return None
    path = Path(source.path).expanduser()
    return path if path.is_absolute() else (recipe_dir / path)


def load_problems(source: Source, recipe_dir: Path) -> pl.DataFrame:
    path = resolve_path(source, recipe_dir)
    checked = {source.fields.problem: "text"} | ({source.fields.answer: "answer"} if source.fields.answer else {})
    if source.fields.options:
        checked[source.fields.options] = "text_list"
    raw = read_source(source, path, checked)
    if source.limit:
        raw = raw.head(source.limit)
    where = str(path) if path else f"hub dataset {source.hub!r}"
    mapping = ", ".join(f"{role} {name!r}" for role, name in source.fields.model_dump(exclude={"tests_format"}).items()
                        if name)
    with polars_errors_named(where, f"mapping fields ({mapping})"):
        return map_fields(raw, source, where)


def map_fields(raw: pl.DataFrame, source: Source, where: str) -> pl.DataFrame:
    fields = source.fields
    require_text(raw, fields.problem, "problem", where, allow_null=False)
    if fields.answer:
        raw = raw.with_columns(answer_as_text(raw, fields.answer, where))
    if source.domain == "code" and not fields.tests:
        raise SourceError(f"{where}: code source {source.name!r} needs `fields.tests`")
    mapped = {fields.problem, fields.answer, fields.tests, fields.entry_point, fields.options} - {None}
    for name in mapped - {fields.problem, fields.answer}:
        if name not in raw.columns:
            raise SourceError(f"{where}: mapped field {name!r} is missing (fields: {', '.join(raw.columns)})")
    unmapped = [c for c in raw.columns if c not in mapped]
    frame = raw.select(
        problem=with_options(pl.col(fields.problem), raw, source, where),
        reference_answer=reference_expr(raw, source, where),
        source=pl.lit(source.name),
        domain=pl.lit(source.domain),
        tests=_tests(raw, source),
        metadata=pl.struct(unmapped).struct.json_encode() if unmapped else pl.lit("{}"),
    ).with_columns(problem_id=problem_id_expr(pl.col("problem")))
    return conform(frame, "problem").select([c.name for c in PROBLEM_COLUMNS])


def require_field(raw: pl.DataFrame, name: str, role: str, where: str) -> pl.Series:
    if name not in raw.columns:
        raise SourceError(
            f"{where}: field {name!r} (mapped to {role}) is missing; fields are: {', '.join(raw.columns)}"
        )
    return raw[name]


def first_true(mask: pl.Series) -> int:
    """0-based position of the mask's first True (0 when it has none; polars' arg_max gives
    None for an empty mask only)."""
    return mask.arg_max() or 0


def record_number(mask: pl.Series, records: pl.Series | None = None) -> int:
    """The 1-based record number of the mask's first True: its position in the file, or its
    entry in `records` when the rows are not the file's records in order (exploded lists)."""
    row = first_true(mask)
    return records[row] if records is not None else row + 1


def require_text(raw: pl.DataFrame, name: str, role: str, where: str, allow_null: bool) -> None:
    column = require_field(raw, name, role, where)
    if column.dtype != pl.String:
        if column.null_count() == len(column):
            raise SourceError(f"{where}: field {name!r} (mapped to {role}) is null in every record")
        _wrong_type(column, name, role, where, "text")
    if not allow_null and column.null_count():
        raise SourceError(f"{where}: record {record_number(column.is_null())}: field {name!r} (mapped to {role}) "
                          "is null or missing")
    require_not_blank(column, name, role, where)


OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def with_options(problem: pl.Expr, raw: pl.DataFrame, source: Source, where: str, records: pl.Series | None = None
                 ) -> pl.Expr:
    """The problem with the `fields.options` list appended, one 'A. text' line per option
    after a blank line (`records`: as in `require_not_blank`)."""
    name = source.fields.options
    if not name:
        return problem
    column = require_field(raw, name, "options", where)
    dtype = column.dtype
    if dtype == pl.Null:
        return problem
    if not (isinstance(dtype, pl.List) and dtype.inner in (pl.String, pl.Null)):
        bad, why = column.is_not_null(), f"must be a list of texts, got {dtype}"
    else:
        bad = (column.list.len() > len(OPTION_LETTERS)) | column.list.eval(pl.element().is_null()).list.any()
        why = f"must hold at most {len(OPTION_LETTERS)} options, none of them null"
    if bad.any():
        raise SourceError(f"{where}: record {record_number(bad, records)}: field {name!r} (mapped to options) {why}")
    letter = pl.int_range(pl.len()).replace_strict(dict(enumerate(OPTION_LETTERS)), return_dtype=pl.String)
    lines = pl.col(name).list.eval(pl.concat_str(letter, pl.lit(". "), pl.element())).list.join("\n")
    return pl.when(pl.col(name).list.len() > 0).then(pl.concat_str(problem, pl.lit("\n\n"), lines)).otherwise(problem)


def require_not_blank(column: pl.Series, name: str, role: str, where: str, records: pl.Series | None = None) -> None:
    """Raise naming the first record whose text is empty or only white space (`records`:
    the record numbers of the rows, when they are not the row order)."""
    blank = column.str.strip_chars() == ""
    if blank.any():
        record = record_number(blank, records)
        raise SourceError(f"{where}: record {record}: field {name!r} (mapped to {role}) is empty")


def answer_as_text(raw: pl.DataFrame, name: str, where: str, role: str = "answer") -> pl.Series:
    """The answer field as text: numbers rendered without a spurious ".0" (42.0 -> "42")."""
    column = require_field(raw, name, role, where)
    if column.dtype == pl.String:
        return column
    if column.dtype.is_integer():
        return column.cast(pl.String)
    if column.dtype.is_float():
        infinite = column.is_not_null() & ~column.is_finite()
        if infinite.any():
            record = first_true(infinite)
            raise SourceError(f"{where}: record {record + 1}: field {name!r} (mapped to {role}) must be a finite "
                              f"number, got {column[record]}")
        whole = column.is_finite() & (column == column.round(0)) & (column.abs() < 2**53)
        return pl.select(pl.when(whole).then(column.cast(pl.Int64, strict=False).cast(pl.String))
                         .otherwise(column.cast(pl.String)).alias(name)).to_series()
    if column.dtype == pl.Null:
        return column.cast(pl.String)
    _wrong_type(column, name, role, where, "text or a number")


def _wrong_type(column: pl.Series, name: str, role: str, where: str, wanted: str) -> NoReturn:
    record = first_true(column.is_not_null())
    value = column[record]
    example = repr(value.to_list() if isinstance(value, pl.Series) else value)[:60]
    raise SourceError(f"{where}: record {record + 1}: field {name!r} (mapped to {role}) must be {wanted}, "
                      f"got {column.dtype}: {example}")


def reference_expr(raw: pl.DataFrame, source: Source, where: str) -> pl.Expr:
    if not source.fields.answer:
        return pl.lit(None, pl.String)
    column = raw[source.fields.answer]
    if source.answer_format == "plain":
        return pl.col(source.fields.answer).str.strip_chars()
    parse = gsm8k_final if source.answer_format == "gsm8k" else last_boxed
    # One Python call per record: brace matching has no polars expression.
    parsed = pl.Series([parse(text) for text in column.to_list()], dtype=pl.String)
    unparsed = parsed.is_null() & column.is_not_null()
    if unparsed.any():
        record = record_number(unparsed)
        marker = "'####'" if source.answer_format == "gsm8k" else "\\boxed{}"
        raise SourceError(
            f"{where}: record {record}: field {source.fields.answer!r} has no {marker} answer "
            f"(answer_format: {source.answer_format})"
        )
    return pl.lit(parsed)


def _tests(raw: pl.DataFrame, source: Source) -> pl.Expr:
    if not source.fields.tests:
        return pl.lit(None, pl.String)
    test = pl.col(source.fields.tests)
    dtype = raw.schema[source.fields.tests]
    if source.fields.tests_format == "cases":  # stdin/stdout cases: passed on as JSON, checked by verify
        if dtype == pl.String:
            return test
        return (pl.struct(cases=test) if isinstance(dtype, pl.List) else test).struct.json_encode()
    if isinstance(dtype, pl.List):  # MBPP: a list of asserts
        test = test.list.join("\n")
    entry = pl.col(source.fields.entry_point) if source.fields.entry_point else pl.lit(None, pl.String)
    return pl.struct(test=test, entry_point=entry).struct.json_encode()


def source_fingerprint(source: Source, recipe_dir: Path) -> dict:
    """What identifies a source's content: its config and the file's sha256."""
    path = resolve_path(source, recipe_dir)
    record = {"name": source.name, "path": str(path) if path else None, "hub": source.hub,
              "config": source.model_dump(mode="json"), "sha256": None, "license": source.license}
    if path is not None and path.is_file():
        record["sha256"] = file_sha256(path)
    elif path is not None and path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(file_sha256(child).encode())
        record["sha256"] = digest.hexdigest()
    return record

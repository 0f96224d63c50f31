"""Read a source (JSONL, JSON, parquet, CSV, HF dataset folder, Hub dataset) into a frame.

Readers take the fast path (Arrow, polars) and, when it fails, find the offending record
themselves so the error names the file, the line or record and the field. polars reads
JSON Lines fastest, but keeps the first of two values of one key without a word and turns
a problem `42` or `["a", "b"]` in a text column into the strings "42" and '["a", "b"]'. So a
JSON Lines file costs, before polars reads it, either a polars scan of its lines that hands
Python's parser only the few that may hide a duplicate key or deep nesting (short records:
`_check_suspect_lines`) or Python's parser on every line (long records, where it is the
cheaper of the two); and a checked text value that reads like a coerced one (`_looks_coerced`,
rare in real text) costs a pass over the raw bytes to tell them apart (`_json_values_not_text`).
"""

from __future__ import annotations

import json
import math
import mmap
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import polars as pl

from curate.sources.config import Source


class SourceError(Exception):
    """Bad source data. The message names the file, the record (or line) and the field;
    for a bad line of a JSON Lines file, `line` and `reason` say which and what."""

    def __init__(self, message: str, line: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.line, self.reason = line, reason


def source_format(source: Source, path: Path) -> str:
    if source.format:
        return source.format
    if path.is_dir():
        return "hf_disk"
    suffix = path.suffix.lower().lstrip(".")
    formats = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "parquet": "parquet", "csv": "csv"}
    if suffix not in formats:
        raise SourceError(f"{path}: cannot tell the format from the suffix; set `format:` in the source")
    return formats[suffix]


# What a mapped field must hold, checked record by record when a file mixes JSON types.
FieldKind = str  # "text", "answer" (text or a number), "label" (a boolean, or 0/1); "<kind>_list": a list of them


def read_source(source: Source, path: Path | None, checked: Mapping[str, FieldKind] | None = None) -> pl.DataFrame:
    """The source's records as a frame, before field mapping. `path` is resolved already.
    `checked` maps field names to what they must hold (see `FieldKind`): a JSON Lines file
    whose records mix types in a checked field is read record by record, and the first
    record with a wrong value is named."""
    if source.hub:
        return _read_hub(source)
    assert path is not None, "Source's validator requires a path when there is no hub"
    if not path.exists():
        raise SourceError(f"{path}: file not found (source {source.name!r})")
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"{path}: file is empty (source {source.name!r})")
    fmt = source_format(source, path)
    reader = {"jsonl": lambda p: _read_jsonl(p, checked or {}), "json": _read_json, "parquet": _read_parquet,
              "csv": _read_csv, "hf_disk": lambda p: _read_hf_disk(p, source.split)}[fmt]
    frame = reader(path)
    if frame.height == 0:
        raise SourceError(f"{path}: no records (source {source.name!r})")
    return frame


def _read_jsonl(path: Path, checked: Mapping[str, FieldKind]) -> pl.DataFrame:
    # Python's parser checks the lines first: polars keeps the first of two values of one key
    # (silently), and polars 1.x crashes the process on a record nested ~20,000 deep.
    if _mean_line_bytes(path) < LONG_LINE:
        _check_suspect_lines(path)
    else:
        _check_lines(path)
    frame = _fast_jsonl(path, checked)
    if frame is not None:
        return frame
    checked_values = _checked_values(path, checked)
    try:
        frame = pl.read_ndjson(path, infer_schema_length=None)
    except Exception:  # noqa: BLE001 - polars' message lacks the line; find it ourselves
        numbered = list(jsonl_records(path))
        if not numbered:
            raise SourceError(f"{path}: no records, only blank lines") from None
        _check_one_schema(path, numbered, ignore=checked.keys())
        try:
            frame = pl.from_dicts([record for _, record in numbered], infer_schema_length=None)
        except Exception as error:  # noqa: BLE001
            raise SourceError(f"{path}: records do not share one schema: {_first_line(error)}") from None
    # polars coerced mixed columns (1.0 -> "1.0"); the checked ones take the values read here.
    return frame.with_columns(pl.Series(name, values) for name, values in checked_values.items())


# Records polars reads to infer the schema. A field that first appears later is not read
# (unless it is a checked field: then the whole file is inferred), so it is missing from
# `metadata`; a later value of another JSON type stops the fast path.
INFER_RECORDS = 10_000


def _fast_jsonl(path: Path, checked: Mapping[str, FieldKind]) -> pl.DataFrame | None:
    """The file read by polars, or None when the record-by-record reader must decide: a bad
    line, types that change from record to record, or a checked field whose value polars
    may have turned into text (it reads 42 or ["a"] in a text column as "42" or '["a"]')."""
    try:
        frame = pl.read_ndjson(path, infer_schema_length=INFER_RECORDS)
        if any(name not in frame.columns for name in checked):  # absent, or first seen late
            frame = pl.read_ndjson(path, infer_schema_length=None)
    except Exception:  # noqa: BLE001 - invalid UTF-8 or JSON, clashing types, blank lines only
        return None
    coerced_text, coerced_lists = [], []
    for name, kind in checked.items():
        dtype = frame.schema.get(name, pl.Null)
        scalar_kind = kind.removesuffix("_list")
        if kind.endswith("_list") and dtype != pl.Null:
            if not isinstance(dtype, pl.List) or scalar_kind == "label" and dtype.inner not in (pl.Boolean, pl.Null):
                return None
            if dtype.inner == pl.String:
                coerced_lists.append(name)
        elif scalar_kind == "label" and not (dtype in (pl.Boolean, pl.Null) or dtype.is_integer()):
            return None
        elif dtype == pl.String:
            coerced_text.append(name)
    if _looks_coerced(frame, coerced_text, coerced_lists) and _json_values_not_text(path, coerced_text, coerced_lists):
        return None
    return frame


# The whole text is what polars writes for a JSON value that is not a string: a number
# (maybe reformatted: -1.5e3 -> "-1500"), a boolean, an array or an object.
COERCED_TEXT = r"(?s)\A(?:-?(?:[0-9][0-9.eE+-]*|inf|Infinity)|NaN|true|false|\[.*\]|\{.*\})\z"


def _looks_coerced(frame: pl.DataFrame, fields: list[str], list_fields: list[str]) -> bool:
    """Whether any value of `fields` (or element of `list_fields`) may be a non-text JSON
    value that polars turned into text. Real problems and completions almost never are, so
    this check spares the pass over the raw bytes."""
    texts = [frame[name] for name in fields] + [frame[name].explode() for name in list_fields]
    return any(column.str.contains(COERCED_TEXT).any() for column in texts)


def _json_values_not_text(path: Path, fields: list[str], list_fields: list[str]) -> bool:
    """Whether a field in `fields` holds, anywhere in the file, a JSON value that is neither
    text nor null (or a list in `list_fields` an element that is not). One regular-expression
    pass over the raw bytes: in JSON text every quote inside a string is escaped, so
    `"name":` matches keys only (at any depth: a nested key of that name is a false alarm
    that only costs the slow path)."""
    def keys(names: list[str]) -> bytes:
        return b"|".join(re.escape(json.dumps(name).encode()) for name in names)

    patterns = []
    if fields:
        patterns.append(rb"(?:" + keys(fields) + rb")\s*:\s*[^\s\"n]")
    if list_fields:
        string = rb'"(?:[^"\\]|\\.)*"'
        patterns.append(rb"(?:" + keys(list_fields) + rb")\s*:\s*\[\s*(?:(?:" + string
                        + rb"|null)\s*,\s*)*[^\s\"n\]]")
    if not patterns:
        return False
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return re.search(b"|".join(patterns), data) is not None


def _checked_values(path: Path, checked: Mapping[str, FieldKind]) -> dict[str, list]:
    """The checked fields' values, record by record; raises at the first wrong value."""
    values: dict[str, list] = {name: [] for name in checked}
    for record_number, (_, record) in enumerate(jsonl_records(path), start=1):
        for name, kind in checked.items():
            values[name].append(checked_value(record.get(name), kind, f"{path}: record {record_number}", name))
    return {name: column for name, column in values.items() if any(v is not None for v in column)}


def checked_value(value, kind: FieldKind, where: str, name: str):
    """`value` if it is what `kind` asks for (numbers rendered as text for "answer")."""
    if value is None:
        return None
    if kind.endswith("_list"):
        if not isinstance(value, list):
            raise SourceError(f"{where}: field {name!r} must be a list, got {type(value).__name__} {repr(value)[:60]}")
        return [checked_value(v, kind.removesuffix("_list"), where, name) for v in value]
    if kind == "answer" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SourceError(f"{where}: field {name!r} must be a finite number, got {value!r}")
        return render_number(value)
    if kind in ("text", "answer") and isinstance(value, str):
        return value
    if kind == "label" and (isinstance(value, bool) or (type(value) is int and value in (0, 1))):
        return bool(value)
    wanted = {"text": "text", "answer": "text or a number",
              "label": "a boolean (or 0/1; text labels need `label_values`)"}[kind]
    raise SourceError(f"{where}: field {name!r} must be {wanted}, got {type(value).__name__} {repr(value)[:60]}")


def render_number(value: int | float) -> str:
    """42 and 42.0 -> "42"; 2.5 -> "2.5": no spurious ".0" on a whole number."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def jsonl_records(path: Path):
    """(1-based line number, record) for each non-blank line."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            record = _parse_line(path, line_number, raw)
            if record is not None:
                yield line_number, record


def _check_lines(path: Path) -> None:
    """Raise at the first line Python's parser refuses (see `_parse_line`)."""
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            _parse_line(path, line_number, raw)


# Python's parser costs ~10 us a line plus ~5 ns a byte, the scan for suspect lines ~15 ns a
# byte (bench/RESULTS.md): short records (problems) take the scan, long ones (traces) Python.
LONG_LINE = 2048


def _mean_line_bytes(path: Path) -> float:
    """The mean length of the lines in the file's first MiB."""
    with open(path, "rb") as handle:
        head = handle.read(2**20)
    return len(head) / head.count(b"\n") if b"\n" in head else float("inf")


# A key as json.dumps writes it: a JSON string and a colon. Every quote inside a JSON string
# is escaped, so matched left to right from the line's start this finds each such key once, at
# any depth. A line ODD_KEYS matches may hold keys it misses: a key with white space before
# its colon, or a string whose text starts with a colon (after `{`, `[` or `,`: the one place
# where KEY matches across two strings and may swallow the key after them).
KEY = r'"(?:[^"\\]|\\.)*":'
ODD_KEYS = r'"\s+:|[\[{,]\s*"\s*:'
# Opening brackets in a line before Python's parser checks how deep they nest (it refuses
# past its recursion limit, ~1,000; polars 2 past 1,024, polars 1 crashes).
DEEP_SUSPECT = 500


def _check_suspect_lines(path: Path) -> None:
    """`_check_lines` for the lines that may hold a duplicate key or deep nesting, found by
    polars streaming the lines on all cores: a line where one key appears twice (in one object
    or, a false alarm, in two: chat turns), a key with an escape (`"\\u0061"` is `"a"`), odd
    keys (ODD_KEYS) or more than DEEP_SUSPECT opening brackets. Python's parser reads only
    those lines: ~2.5x cheaper than parsing every line of short records (bench/RESULTS.md)."""
    line, keys = pl.col("line"), pl.col("keys")
    try:
        suspect = pl.scan_lines(path, row_index_name="number", row_index_offset=1).with_columns(
            keys=line.str.extract_all(KEY)  # a column of its own: the filter would extract it thrice
        ).filter(
            (keys.list.n_unique() < keys.list.len()) | keys.list.join("").str.contains("\\", literal=True)
            | line.str.contains(ODD_KEYS) | (line.str.count_matches(r"[\[{]") > DEEP_SUSPECT)
        ).select("number", "line").collect(engine="streaming")
    except pl.exceptions.PolarsError:  # not UTF-8: Python's parser names the line
        _check_lines(path)
        return
    for number, text in suspect.iter_rows():
        _parse_line(path, number, text.encode())


def _parse_line(path: Path, line_number: int, raw: bytes) -> dict | None:
    """The line's record (None for a blank line); a line that is not one JSON object with
    distinct keys, or is nested too deeply, raises naming it."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}:{line_number}: not valid UTF-8 (byte {error.start})",
                          line_number, "not valid UTF-8") from None
    if not line.strip():
        return None
    try:
        record = json.loads(line, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}:{line_number}: malformed JSON: {error.msg} (column {error.colno})",
                          line_number, "not valid JSON") from None
    except DuplicateKey as error:
        raise SourceError(f"{path}:{line_number}: {error}", line_number, "duplicate key") from None
    except RecursionError:
        raise SourceError(f"{path}:{line_number}: {TOO_DEEP}", line_number, "nested too deeply") from None
    if not isinstance(record, dict):
        raise SourceError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}",
                          line_number, "expected a JSON object")
    return record


TOO_DEEP = "JSON nested too deeply to read (more arrays or objects inside each other than Python's parser allows)"


class DuplicateKey(ValueError):
    pass


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's pairs as a dict; a key given twice raises (parsers disagree on which
    value wins: Python keeps the last, polars the first)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise DuplicateKey(f"field {twice!r} appears twice in one JSON object: which value is meant is unclear")
    return record


def _check_one_schema(path: Path, numbered: list[tuple[int, dict]], unit: str = "",
                      ignore: Collection[str] = ()) -> None:
    """Name the first record whose field has another JSON type than the same field before it
    (fields in `ignore` are checked by kind elsewhere: an answer may be a number or text)."""
    first_seen: dict[str, tuple[str, int]] = {}
    for number, record in numbered:
        for key, value in record.items():
            if value is None or key in ignore:
                continue
            kind = _json_kind(value)
            seen = first_seen.setdefault(key, (kind, number))
            if seen[0] != kind:
                where = f"{path}:{number}" if not unit else f"{path}: {unit} {number}"
                raise SourceError(f"{where}: field {key!r} is {kind}, but {seen[0]} in "
                                  f"{unit or 'line'} {seen[1]}", number, f"field {key!r} changes type")


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names: dict[type, str] = {str: "text", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _read_json(path: Path) -> pl.DataFrame:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=unique_keys)
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not valid UTF-8 (byte {error.start})") from None
    except DuplicateKey as error:
        raise SourceError(f"{path}: {error}") from None
    except RecursionError:
        raise SourceError(f"{path}: {TOO_DEEP}") from None
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}:{error.lineno}: malformed JSON: {error.msg} (column {error.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
    for number, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise SourceError(f"{path}: record {number}: expected a JSON object, got {type(record).__name__}")
    if not data:
        raise SourceError(f"{path}: no records (an empty list)")
    try:
        return pl.from_dicts(data, infer_schema_length=None)
    except Exception as error:  # noqa: BLE001
        _check_one_schema(path, list(enumerate(data, start=1)), unit="record")
        raise SourceError(f"{path}: records do not share one schema: {_first_line(error)}") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"{path}: not a readable parquet file: {_first_line(error)}") from None


def _read_csv(path: Path) -> pl.DataFrame:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not valid UTF-8 (byte {error.start})") from None
    if not header:
        raise SourceError(f"{path}:1: no header row")
    # Every column as text: answers like "007" or "1,000" must not become numbers. A row
    # with too few or too many fields is an error, not a row padded with nulls.
    convert = pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True,
                                     null_values=[""])  # empty field -> null, as before; "NA" stays text
    try:
        table = pa_csv.read_csv(path, convert_options=convert)
    except pa.ArrowInvalid as error:
        message = _csv_error(path, convert) or f"{path}: not a readable CSV file: {_first_line(error)}"
        raise SourceError(message) from None
    return cast(pl.DataFrame, pl.from_arrow(table))  # a Table makes a DataFrame


def _csv_error(path: Path, convert) -> str | None:
    """Read again on one thread, where Arrow knows line numbers, to name the bad row."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    bad = []

    def refuse(row) -> str:
        bad.append(row)
        return "error"

    try:
        pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=False), convert_options=convert,
                        parse_options=pa_csv.ParseOptions(invalid_row_handler=refuse))
    except pa.ArrowInvalid:
        pass
    if not bad:
        return None
    row = bad[0]
    where = f"{path}:{row.number}" if row.number and row.number > 0 else f"{path}"
    return f"{where}: row has {row.actual_columns} fields, the header has {row.expected_columns}"


def _read_hf_disk(path: Path, split: str) -> pl.DataFrame:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"{path}: not a dataset saved with save_to_disk: {_first_line(error)}") from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise SourceError(f"{path}: no split {split!r} (splits: {', '.join(dataset)})")
        dataset = dataset[split]
    return cast(pl.DataFrame, pl.from_arrow(dataset.data.table))  # a Table makes a DataFrame


def _read_hub(source: Source) -> pl.DataFrame:
    import datasets

    try:
        dataset = datasets.load_dataset(
            source.hub, source.hub_config, split=source.split, revision=source.revision
        )
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"hub dataset {source.hub!r} (source {source.name!r}): {_first_line(error)}") from None
    return cast(pl.DataFrame, pl.from_arrow(dataset.data.table))  # a Table makes a DataFrame


@contextmanager
def polars_errors_named(where: str, what: str) -> Iterator[None]:
    """A failure inside polars while reading or mapping a source becomes a SourceError that
    names the file and `what` was being done (the fields involved)."""
    try:
        yield
    except pl.exceptions.PolarsError as error:
        raise SourceError(f"{where}: {what}: polars failed: {type(error).__name__}: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

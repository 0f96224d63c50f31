"""Read a source (JSONL, JSON, parquet, CSV, HF dataset folder, Hub dataset) into a frame.

Readers take the fast path (polars, Arrow) and, when it fails, find the offending record
themselves so the error names the file, the line or record and the field.
"""

from __future__ import annotations

import json
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


def read_source(source: Source, path: Path | None) -> pl.DataFrame:
    """The source's records as a frame, before field mapping. `path` is resolved already."""
    if source.hub:
        return _read_hub(source)
    assert path is not None, "Source's validator requires a path when there is no hub"
    if not path.exists():
        raise SourceError(f"{path}: file not found (source {source.name!r})")
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"{path}: file is empty (source {source.name!r})")
    fmt = source_format(source, path)
    reader = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet, "csv": _read_csv,
              "hf_disk": lambda p: _read_hf_disk(p, source.split)}[fmt]
    frame = reader(path)
    if frame.height == 0:
        raise SourceError(f"{path}: no records (source {source.name!r})")
    return frame


def _read_jsonl(path: Path) -> pl.DataFrame:
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception:  # noqa: BLE001 - polars' message lacks the line; find it ourselves
        records = list(_jsonl_records(path))
        try:
            return pl.from_dicts(records, infer_schema_length=None)
        except Exception as error:  # noqa: BLE001
            raise SourceError(f"{path}: records do not share one schema: {_first_line(error)}") from None


def _jsonl_records(path: Path):
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise SourceError(f"{path}:{line_number}: not valid UTF-8 (byte {error.start})",
                                  line_number, "not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{path}:{line_number}: malformed JSON: {error.msg} (column {error.colno})",
                                  line_number, "not valid JSON") from None
            if not isinstance(record, dict):
                raise SourceError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}",
                                  line_number, "expected a JSON object")
            yield record


def _read_json(path: Path) -> pl.DataFrame:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not valid UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}:{error.lineno}: malformed JSON: {error.msg} (column {error.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise SourceError(f"{path}: record {index}: expected a JSON object, got {type(record).__name__}")
    try:
        return pl.from_dicts(data, infer_schema_length=None)
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"{path}: records do not share one schema: {_first_line(error)}") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"{path}: not a readable parquet file: {_first_line(error)}") from None


def _read_csv(path: Path) -> pl.DataFrame:
    try:
        # Every column as text: answers like "007" or "1,000" must not become numbers.
        return pl.read_csv(path, infer_schema=False)
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"{path}: not a readable CSV file: {_first_line(error)}") from None


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


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

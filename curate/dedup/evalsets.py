"""Evaluation sets to decontaminate against: bundled names, local files, or HF datasets.

A recipe names each set as a string (`aime24`, `aime25`, `amc23`, `math500` are
bundled in curate/data/evalsets; any other string is a file path) or as a mapping:
`{path: evals/mine.parquet, field: question}` or
`{hf_dataset: HuggingFaceH4/MATH-500, split: test, field: problem}` (loaded with
`datasets.load_dataset`, so it needs the Hub or a local HF cache). Files and datasets are
read by the source readers (curate.sources.readers), as a recipe's sources are.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import Field, model_validator

from curate.core.operator import OperatorConfig
from curate.sources.config import Source
from curate.sources.readers import SourceError, read_source

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "evalsets"
BUNDLED = ("aime24", "aime25", "amc23", "math500")
_ID_FIELDS = ("unique_id", "id", "task_id")
_SCHEMA = {"eval_set": pl.String, "eval_id": pl.String, "eval_problem": pl.String}


class EvalSetSpec(OperatorConfig):
    name: str | None = Field(None, description="Label in reports (default: the file or dataset name).")
    path: str | None = Field(None, description="A .jsonl, .json (list of records) or .parquet file.")
    hf_dataset: str | None = Field(None, description="A dataset name for datasets.load_dataset.")
    hf_config: str | None = Field(None, description="The dataset's config name, if it has several.")
    split: str = Field("test", description="Split of hf_dataset to load.")
    field: str = Field("problem", description="Field holding the problem text.")

    @model_validator(mode="after")
    def _one_source(self) -> EvalSetSpec:
        if (self.path is None) == (self.hf_dataset is None):
            raise ValueError("an eval set needs exactly one of path or hf_dataset")
        return self

    def source(self) -> Source:
        """The eval set as a source (path or hub, config, split) for the source readers."""
        name = self.name or self.hf_dataset or Path(str(self.path)).stem  # the validator: path when no hf_dataset
        return Source(name=name, path=self.path, hub=self.hf_dataset, hub_config=self.hf_config, split=self.split)


def load_eval_sets(sets: list[str | EvalSetSpec]) -> pl.DataFrame:
    """All eval problems: eval_set, eval_id, eval_problem (nulls and blanks dropped)."""
    frames = [_load_one(_spec(item)) for item in sets]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA)
    return frame.filter(pl.col("eval_problem").str.strip_chars().str.len_chars() > 0)


def _spec(item: str | EvalSetSpec) -> EvalSetSpec:
    if isinstance(item, EvalSetSpec):
        return item
    if item in BUNDLED:
        return EvalSetSpec(name=item, path=str(BUNDLED_DIR / f"{item}.jsonl"))
    if Path(item).suffix in {".jsonl", ".json", ".parquet"}:
        return EvalSetSpec(path=item)
    raise ValueError(
        f"eval set {item!r} is neither a bundled set ({', '.join(BUNDLED)}) nor a "
        ".jsonl/.json/.parquet path; for a HF dataset write {hf_dataset: NAME, field: ...}"
    )


def _load_one(spec: EvalSetSpec) -> pl.DataFrame:
    source = spec.source()
    name = source.name
    if spec.hf_dataset is not None:
        where = f"HF dataset {spec.hf_dataset!r} split {spec.split!r}"
    else:
        where = f"file {spec.path}"
    records = _records(spec, source)
    if records and spec.field not in records[0]:
        raise ValueError(f"eval set {name!r}: {where} has no field {spec.field!r} "
                         f"(fields: {', '.join(sorted(records[0]))})")
    ids, problems = [], []
    for position, record in enumerate(records):
        problem = record.get(spec.field)
        if problem is not None and not isinstance(problem, str):
            raise ValueError(f"eval set {name!r}: record {position} of {where}: "
                             f"field {spec.field!r} is {type(problem).__name__}, not text")
        id_value = next((record[f] for f in _ID_FIELDS if record.get(f) is not None), position)
        ids.append(str(id_value))
        problems.append(problem)
    return pl.DataFrame({"eval_set": [name] * len(problems), "eval_id": ids, "eval_problem": problems},
                        schema=_SCHEMA)


def _records(spec: EvalSetSpec, source: Source) -> list[dict]:
    """The set's records, read like a recipe source; errors name the eval set file or dataset."""
    path = Path(spec.path) if spec.path is not None else None
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"eval set file {path} does not exist")
        if path.stat().st_size == 0:
            return []
    try:
        frame = read_source(source, path)
    except SourceError as error:
        if path is None:
            raise ValueError(f"could not load HF dataset {spec.hf_dataset!r} (split {spec.split!r}): "
                             f"{error}") from error
        if error.line is not None:
            raise ValueError(f"eval set file {path}, line {error.line}: {error.reason} ({error})") from None
        raise ValueError(f"eval set file {path}: {error}") from None
    # Only the id and problem fields are read; the first record's fields name the missing one.
    columns = [c for c in (*_ID_FIELDS, spec.field) if c in frame.columns]
    if spec.field not in frame.columns:
        return [dict.fromkeys(frame.columns)]
    return frame.select(columns).to_dicts()


def check_eval_sets(sets: list[str | EvalSetSpec]) -> list[str]:
    """One line per eval set that cannot be read (a missing file, a missing or non-text
    field, an unknown name); HF datasets are not fetched here."""
    problems = []
    for item in sets:
        try:
            spec = _spec(item)
            if spec.hf_dataset is None:
                _load_one(spec)
        except (ValueError, OSError) as error:
            problems.append(f"eval_sets: {error}")
    return problems

"""Evaluation sets to decontaminate against: bundled names, local files, or HF datasets.

A recipe names each set as a string (`aime24`, `aime25`, `amc23`, `math500` are
bundled in curate/data/evalsets; any other string is a file path) or as a mapping:
`{path: evals/mine.parquet, field: question}` or
`{hf_dataset: HuggingFaceH4/MATH-500, split: test, field: problem}` (loaded with
`datasets.load_dataset`, so it needs the Hub or a local HF cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from pydantic import Field, model_validator

from curate.core.operator import OperatorConfig

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "evalsets"
BUNDLED = ("aime24", "aime25", "amc23", "math500")
_ID_FIELDS = ("unique_id", "id", "task_id")


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


def load_eval_sets(sets: list[str | EvalSetSpec]) -> pl.DataFrame:
    """All eval problems: eval_set, eval_id, eval_problem (nulls and blanks dropped)."""
    frames = [_load_one(_spec(item)) for item in sets]
    frame = pl.concat(frames) if frames else pl.DataFrame(
        schema={"eval_set": pl.String, "eval_id": pl.String, "eval_problem": pl.String})
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
    if spec.hf_dataset is not None:
        records, where = _hf_records(spec), f"HF dataset {spec.hf_dataset!r} split {spec.split!r}"
    else:
        records, where = _file_records(Path(spec.path)), f"file {spec.path}"
    name = spec.name or (spec.hf_dataset or Path(spec.path).stem)
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
                        schema={"eval_set": pl.String, "eval_id": pl.String, "eval_problem": pl.String})


def _file_records(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"eval set file {path} does not exist")
    if path.suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"eval set file {path}: not valid JSON ({error})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"eval set file {path}: expected a JSON list of objects")
        return records
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"eval set file {path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise ValueError(f"eval set file {path}, line {number}: expected a JSON object")
        records.append(record)
    return records


def _hf_records(spec: EvalSetSpec) -> list[dict]:
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hf_dataset, spec.hf_config, split=spec.split)
    except Exception as error:  # the datasets library raises many types; name the set
        raise ValueError(f"could not load HF dataset {spec.hf_dataset!r} (split {spec.split!r}): "
                         f"{type(error).__name__}: {error}") from error
    return dataset.to_list()

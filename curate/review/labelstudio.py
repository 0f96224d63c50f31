"""Label Studio's JSON formats, both ways.

Out: a list of tasks, `[{"data": {...}}]` (Label Studio's import format), each trace's fields
under `data`, and the labeling config (XML) that shows them and asks for a verdict (a single
choice named `verdict`) and an optional note (a text area named `note`).

In: Label Studio's JSON export, one object per task with its `data` and its `annotations`,
each annotation a `result` list of regions `{"from_name", "type", "value"}`; a choice's value
is `{"choices": [...]}`, a text area's `{"text": [...]}`. Per task the latest annotation that
was not cancelled counts (by `updated_at`, then `created_at`, then its order in the file).
Review files are human-sized (hundreds of tasks), so they are read as plain JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl

from curate.core.io import NotRegularFileError, read_regular, write_text

VERDICTS = ("correct", "wrong", "unclear")
Pick = Literal["disagree", "judge", "random"]
TASK_FIELDS = ("trace_id", "problem", "reasoning", "answer_text", "reference_answer", "correct", "source_correct",
               "judge_verdict", "judge_reason", "source", "teacher")
_MAX_EXPORT_BYTES = 512 << 20

LABEL_CONFIG = """<View>
  <Header value="Problem"/>
  <Text name="problem" value="$problem"/>
  <Header value="Reference answer"/>
  <Text name="reference_answer" value="$reference_answer"/>
  <Header value="Reasoning"/>
  <Text name="reasoning" value="$reasoning"/>
  <Header value="Final answer (verify: $correct, dump label: $source_correct, judge: $judge_verdict)"/>
  <Text name="answer" value="$answer_text"/>
  <Choices name="verdict" toName="answer" choice="single" required="true">
    <Choice value="correct"/>
    <Choice value="wrong"/>
    <Choice value="unclear"/>
  </Choices>
  <TextArea name="note" toName="answer" placeholder="Why (optional)" maxSubmissions="1"/>
</View>
"""


class ReviewFileError(ValueError):
    """A Label Studio export that cannot be read: names the file, the task (1-based) and the field."""


def pick_rows(frame: pl.DataFrame, pick: Pick, n: int, seed: int) -> pl.DataFrame:
    """Up to `n` traces to review, a seeded sample of those `pick` selects: `disagree`
    (verify and the dump's label differ), `judge` (the judge said wrong, or differs from
    verify) or `random` (any trace)."""
    if "trace_id" not in frame.columns:
        raise ValueError("the traces have no trace_id column to match verdicts back by")
    needed = {"disagree": ("correct", "source_correct"), "judge": ("judge_verdict",), "random": ()}[pick]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"--pick {pick} needs column(s) {', '.join(missing)}, which the traces lack")
    if pick == "disagree":
        frame = frame.filter(pl.col("correct") != pl.col("source_correct"))  # nulls compare as null: left out
    elif pick == "judge":
        differs = (pl.col("judge_verdict") != pl.col("correct")) if "correct" in frame.columns else pl.lit(False)
        frame = frame.filter((pl.col("judge_verdict") == False) | differs.fill_null(False))  # noqa: E712
    return frame.sample(min(n, frame.height), seed=seed, shuffle=True) if frame.height > n else frame


def write_tasks(rows: pl.DataFrame, path: Path) -> Path:
    """The Label Studio import file at `path` and the labeling config beside it (returned).
    Every field the config shows is in each task (null where the run lacks the column)."""
    fields = [(pl.col(c) if c in rows.columns else pl.lit(None)).cast(pl.String).alias(c) for c in TASK_FIELDS]
    data = rows.select(pl.struct(fields).alias("data"))
    write_text(json.dumps(data.to_dicts(), ensure_ascii=False, indent=1) + "\n", path)
    config = path.with_name(f"{path.stem}.label_config.xml")
    write_text(LABEL_CONFIG, config)
    return config


def read_verdicts(path: Path) -> pl.DataFrame:
    """trace_id, review_verdict, review_note: one row per task that has a verdict."""
    tasks = _load_export(path)
    rows = []
    for number, task in enumerate(tasks, 1):
        where = f"{path}: task {number}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ReviewFileError(f"{where}: no `data` object; is this a Label Studio JSON export?")
        trace_id = task["data"].get("trace_id")
        if not isinstance(trace_id, str) or not trace_id:
            raise ReviewFileError(f"{where}: field data.trace_id is missing; export the tasks `curate review` wrote")
        annotation = _latest_annotation(task.get("annotations"), where)
        if annotation is None:
            continue
        verdict, note = _verdict_and_note(annotation.get("result"), where)
        if verdict is not None:
            rows.append({"trace_id": trace_id, "review_verdict": verdict, "review_note": note})
    verdicts = pl.DataFrame(rows, schema={"trace_id": pl.String, "review_verdict": pl.String,
                                          "review_note": pl.String})
    repeated = verdicts.filter(pl.col("trace_id").is_duplicated())["trace_id"].head(3).to_list()
    if repeated:
        raise ReviewFileError(f"{path}: trace_id {repeated[0]!r} is reviewed in more than one task; keep one")
    return verdicts


def _load_export(path: Path) -> list:
    try:
        raw = read_regular(path, _MAX_EXPORT_BYTES)
        if len(raw) > _MAX_EXPORT_BYTES:
            raise ReviewFileError(f"{path}: over {_MAX_EXPORT_BYTES >> 20} MB; is this a review export?")
        tasks = json.loads(raw)
    except (OSError, NotRegularFileError) as error:
        raise ReviewFileError(f"{path}: cannot read the review file ({error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReviewFileError(f"{path}: not JSON ({error})") from None
    if not isinstance(tasks, list):
        raise ReviewFileError(f"{path}: a Label Studio JSON export is a list of tasks, this is a "
                              f"{type(tasks).__name__}")
    return tasks


def _latest_annotation(annotations: object, where: str) -> dict | None:
    if annotations is None:
        return None
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ReviewFileError(f"{where}: field annotations is not a list of objects")
    done = [(str(a.get("updated_at") or ""), str(a.get("created_at") or ""), index, a)
            for index, a in enumerate(annotations) if not a.get("was_cancelled")]
    return max(done, key=lambda entry: entry[:3])[3] if done else None


def _verdict_and_note(result: object, where: str) -> tuple[str | None, str | None]:
    if not isinstance(result, list):
        raise ReviewFileError(f"{where}: field annotations[].result is not a list")
    verdict = note = None
    for region in result:
        value = region.get("value") if isinstance(region, dict) else None
        if not isinstance(value, dict):
            raise ReviewFileError(f"{where}: a region of annotations[].result has no `value` object")
        if region.get("from_name") == "verdict":
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1 or choices[0] not in VERDICTS:
                raise ReviewFileError(f"{where}: field verdict is {choices!r}; expected one of {', '.join(VERDICTS)}")
            verdict = choices[0]
        elif region.get("from_name") == "note":
            text = value.get("text")
            if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
                raise ReviewFileError(f"{where}: field note is not a list of texts")
            note = "\n".join(text) or None
    return verdict, note

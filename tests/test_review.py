"""Human review round trip (issue 36, item 4): a sample of traces out as Label Studio tasks,
the project's JSON export back in as `review_verdict` / `review_note`, used by `review_filter`.
The export fixture follows Label Studio's documented export format (tasks with `data` and
`annotations`, each a `result` of regions), with a cancelled annotation, a task annotated
twice and one not annotated."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import StepContext, split_rejections
from curate.review.labelstudio import ReviewFileError, pick_rows, read_verdicts, write_tasks
from curate.review.operators import ReviewFilter, ReviewFilterConfig
from tests.test_publish import FIXTURE_RUN, fixture_output
from tests.test_runner import run_cli

EXPORT = Path(__file__).parent / "fixtures" / "review" / "labelstudio_export.json"


def traces() -> pl.DataFrame:
    """Ten traces: verify and the dump's label disagree on 3, the judge flags 4 (2 overlap)."""
    return pl.DataFrame({
        "trace_id": [f"t{i}" for i in range(10)],
        "problem": [f"problem {i}" for i in range(10)],
        "correct": [True, True, False, True, None, True, False, True, True, True],
        "source_correct": [True, False, True, True, False, True, False, False, None, True],
        "judge_verdict": [True, False, True, True, None, False, False, True, None, True],
    })


def test_pick_selects_disagreements_judge_flags_or_a_seeded_random_sample():
    frame = traces()
    assert sorted(pick_rows(frame, "disagree", 50, 0)["trace_id"]) == ["t1", "t2", "t7"]
    # the judge said wrong (t1, t5, t6), or differs from verify (t1, t2)
    assert sorted(pick_rows(frame, "judge", 50, 0)["trace_id"]) == ["t1", "t2", "t5", "t6"]
    first, again, other = (pick_rows(frame, "random", 4, seed)["trace_id"].to_list() for seed in (1, 1, 2))
    assert len(first) == 4 and first == again and first != other
    assert pick_rows(frame, "disagree", 2, 0).height == 2


def test_pick_names_the_column_a_choice_needs():
    with pytest.raises(ValueError, match="needs column.*source_correct"):
        pick_rows(traces().drop("source_correct"), "disagree", 5, 0)


def test_tasks_are_label_studio_imports_whose_config_names_what_is_read_back(tmp_path):
    config_path = write_tasks(traces(), tmp_path / "tasks.json")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 10 and all(set(task) == {"data"} for task in tasks)
    assert tasks[1]["data"]["trace_id"] == "t1" and tasks[4]["data"]["correct"] is None
    view = ET.fromstring(config_path.read_text())
    controls = {element.get("name"): element.tag for element in view if element.tag in ("Choices", "TextArea")}
    assert controls == {"verdict": "Choices", "note": "TextArea"}
    shown = set(re.findall(r"\$(\w+)", config_path.read_text()))
    assert shown <= set(tasks[0]["data"]), shown - set(tasks[0]["data"])


def test_export_gives_each_tasks_latest_completed_verdict_and_note():
    verdicts = {row["trace_id"]: row for row in read_verdicts(EXPORT).iter_rows(named=True)}
    assert set(verdicts) == {"0114bd70cd83917b", "1cf7810eb43a5c40", "33867c4587fa28c1"}  # cancelled, none: out
    assert verdicts["0114bd70cd83917b"]["review_verdict"] == "wrong"
    assert verdicts["0114bd70cd83917b"]["review_note"].splitlines() == [
        "The final answer is 150 degrees; the lines meet at 90.", "Reference says 90."]
    assert verdicts["1cf7810eb43a5c40"]["review_verdict"] == "correct"  # the later of two annotations
    assert verdicts["33867c4587fa28c1"] == {"trace_id": "33867c4587fa28c1", "review_verdict": "unclear",
                                            "review_note": None}


def test_tasks_written_then_annotated_come_back_by_trace_id(tmp_path):
    write_tasks(traces(), tmp_path / "tasks.json")
    exported = json.loads((tmp_path / "tasks.json").read_text())
    for index, task in enumerate(exported):  # what Label Studio adds on export
        task["id"] = index + 1
        task["annotations"] = [{"id": 50 + index, "was_cancelled": False, "created_at": "2026-12-07T10:00:00Z",
                                "result": [{"from_name": "verdict", "to_name": "answer", "type": "choices",
                                            "value": {"choices": ["wrong" if index % 3 else "correct"]}}]}]
    (tmp_path / "export.json").write_text(json.dumps(exported))
    verdicts = read_verdicts(tmp_path / "export.json")
    assert verdicts["trace_id"].to_list() == [f"t{i}" for i in range(10)]
    assert Counter(verdicts["review_verdict"]) == {"wrong": 6, "correct": 4}


@pytest.mark.parametrize(("content", "message"), [
    ('{"data": {}}', "list of tasks, this is a dict"),
    ("[{\"annotations\": []}]", "task 1: no `data` object"),
    ('[{"data": {"trace_id": "a"}}, {"data": {"problem": "x"}}]', "task 2: field data.trace_id is missing"),
    ('[{"data": {"trace_id": "a"}, "annotations": [{"result": [{"from_name": "verdict", "value": '
     '{"choices": ["maybe"]}}]}]}]', "task 1: field verdict is \\['maybe'\\]"),
    ('[{"data": {"trace_id": "a"}, "annotations": {"result": []}}]', "task 1: field annotations is not a list"),
    ("[{", "not JSON"),
])
def test_a_bad_export_is_one_line_naming_the_task_and_field(tmp_path, content, message):
    path = tmp_path / "export.json"
    path.write_text(content)
    with pytest.raises(ReviewFileError, match=message):
        read_verdicts(path)


def apply_filter(frame: pl.DataFrame, **settings) -> tuple[pl.DataFrame, pl.DataFrame, StepContext]:
    step = ReviewFilter(ReviewFilterConfig(file=EXPORT, **settings))
    ctx = StepContext(step_id="review", step_dir=Path("."), cache_dir=Path("."))
    step.setup(ctx)
    kept, rejected = split_rejections(step.apply(frame, ctx))
    return kept, rejected, ctx


def test_review_filter_adds_the_columns_and_rejects_the_verdicts_it_is_told_to():
    frame = fixture_output()
    kept, rejected, ctx = apply_filter(frame)
    assert rejected["trace_id"].to_list() == ["0114bd70cd83917b"]
    assert rejected["reject_reason"].to_list() == ["review_rejected"]
    assert kept.height == frame.height - 1 and kept["trace_id"].to_list() == frame["trace_id"].to_list()[1:]
    assert kept.filter(pl.col("trace_id") == "1cf7810eb43a5c40")["review_note"].item().startswith("Checked by hand")
    assert kept["review_verdict"].null_count() == frame.height - 3 and ctx.metrics["reviewed"] == 3

    only_approved, rejected, _ = apply_filter(frame, drop=["wrong", "unclear"], keep_unreviewed=False)
    assert only_approved["trace_id"].to_list() == ["1cf7810eb43a5c40"]
    assert Counter(rejected["reject_reason"]) == {"review_missing": 6, "review_rejected": 2}


def test_review_filter_config_names_an_unknown_verdict_and_a_missing_file(tmp_path):
    step = ReviewFilter(ReviewFilterConfig(file=tmp_path / "none.json", drop=["wrong", "bad"]))
    problems = step.check_config(tmp_path)
    assert len(problems) == 2 and "unknown verdict(s) bad" in problems[0] and "does not exist" in problems[1]


def test_review_command_writes_tasks_and_refuses_a_pick_the_run_cannot_serve(tmp_path):
    result = run_cli("review", str(FIXTURE_RUN), "--to", str(tmp_path / "tasks.json"), "--pick", "random", "--n", "4")
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    rejected = pl.read_parquet(FIXTURE_RUN / "rejections.parquet")["trace_id"].drop_nulls()
    every_trace = set(fixture_output()["trace_id"]) | set(rejected)
    assert len(tasks) == 4 and {t["data"]["trace_id"] for t in tasks} <= every_trace
    assert (tmp_path / "tasks.label_config.xml").is_file()
    # rejected traces are candidates too: a large enough sample holds every trace
    assert run_cli("review", str(FIXTURE_RUN), "--to", str(tmp_path / "all.json"), "--pick", "random").returncode == 0
    assert {t["data"]["trace_id"] for t in json.loads((tmp_path / "all.json").read_text())} == every_trace
    assert set(rejected) - set(fixture_output()["trace_id"])

    refused = run_cli("review", str(FIXTURE_RUN), "--to", str(tmp_path / "other.json"))  # default: disagree
    assert refused.returncode == 2 and "source_correct" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "other.json").exists()

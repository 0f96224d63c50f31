"""Audits people read (issue 36, items 5 and 7): the "Missing data" notes name only data a step
of the recipe should have made (a table whose step the recipe lacks is listed as not in this
recipe), and the labels-vs-verify table lists every disagreement."""

from __future__ import annotations

import json
import shutil

from curate.audit import Audit, audit_command
from tests.test_publish import FIXTURE_RUN


def test_a_step_the_recipe_lacks_is_not_a_missing_data_warning(tmp_path):
    audit = Audit.open(FIXTURE_RUN)  # generate, verify, dedup, decontaminate, grade: no prune step
    audit.pruning()
    assert not [note for note in audit.notes if note.startswith("pruning")]
    assert [entry for entry in audit.absent if entry.startswith("pruning (made by ")]
    report = audit_command(FIXTURE_RUN, tmp_path / "report.html").read_text()
    assert "Not in this recipe: " in report and "pruning: needs" not in report


def test_a_step_that_ran_but_left_no_data_is_still_a_warning(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run_dir)
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["steps"].append({**manifest["steps"][-1], "id": "prune_steps", "op": "prune_steps"})
    (run_dir / "run.json").write_text(json.dumps(manifest))
    audit = Audit.open(run_dir)
    audit.pruning()
    assert [note for note in audit.notes if note.startswith("pruning: needs")]
    assert not [entry for entry in audit.absent if entry.startswith("pruning")]


def test_every_label_disagreement_is_listed_with_its_problem_and_verify_detail(tmp_path):
    import polars as pl

    from tests.test_publish import make_run

    def many_labelled(frame: pl.DataFrame) -> pl.DataFrame:
        copies = pl.concat([frame.with_columns(trace_id=pl.col("trace_id") + f"-{i}") for i in range(14)])
        return copies.with_columns(  # 126 traces, every other one labelled against verify's verdict
            source_correct=pl.when(pl.int_range(pl.len()) % 2 == 0).then(~pl.col("correct")).otherwise("correct"),
            verify_detail=pl.format('{{"reason": "checked {}"}}', pl.col("trace_id")))

    run_dir = make_run(tmp_path, transform=many_labelled)
    table = Audit.open(run_dir).label_disagreements()
    assert table.height == 63  # all of them, not the first 50
    assert {"trace_id", "problem", "verify_detail", "source_correct", "correct"} <= set(table.columns)
    report = audit_command(run_dir, tmp_path / "report.html").read_text()
    assert "rows 1–50 of 63" in report and "rows 51–63 of 63" in report
    assert all(f"checked {trace_id}" in report for trace_id in table["trace_id"])

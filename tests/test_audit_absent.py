"""The audit's "Missing data" notes name only data a step of the recipe should have made;
a table whose step the recipe does not have is listed as not in this recipe (issue 36, item 7)."""

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

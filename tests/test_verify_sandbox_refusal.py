"""Code verification refuses to run model code where bubblewrap cannot isolate it, unless
the recipe names the unsafe mode (issue 34). Unavailability is simulated: PATH without bwrap."""

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curate.answers import sandbox_box
from curate.answers.sandbox import run_tests
from curate.answers.sandbox_box import IsolationUnavailable
from curate.core.operator import StepContext
from curate.errors import USER_ERROR, describe
from curate.verify.operators import Verify

CODE_ROW = {"domain": ["code"], "problem": ["p"], "reference_answer": [None],
            "tests": [json.dumps({"test": "assert f() == 1\n", "entry_point": None})],
            "answer_text": ["```python\ndef f():\n    return 1\n```"], "completion": [""]}


@pytest.fixture
def no_bwrap(monkeypatch, tmp_path):
    """A machine without bubblewrap: PATH holds the other tools, not bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("prlimit", "setpriv"):
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    monkeypatch.setenv("PATH", str(bin_dir))
    sandbox_box._probe.cache_clear()
    yield
    sandbox_box._probe.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_code_verification_refuses_to_run_without_isolation(tmp_path):
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(IsolationUnavailable, match="bwrap not found") as refused:
        Verify(Verify.Config()).apply(pl.DataFrame(CODE_ROW), ctx)
    with pytest.raises(IsolationUnavailable):
        run_tests("def f():\n    return 1\n", "assert f() == 1\n", None)
    # On the command line: bad setup the user can fix (exit 2), with the two fixes named, not a "failure".
    code, lines = describe(refused.value)
    assert code == USER_ERROR and len(lines) == 1
    assert "apt-get install bubblewrap" in lines[0] and "sandbox: unsafe-no-isolation" in lines[0]
    assert "not bad input" not in lines[0]


RECIPE = """\
name: t
sources:
  - name: code
    path: p.jsonl
    domain: code
    fields: {{problem: prompt, answer: null, tests: tests}}
steps:
  - op: generate
    teachers: [{{name: t, backend: openai, model: m, prompt: {{user: "{{problem}}"}}}}]
  - op: verify{sandbox}
"""


@pytest.mark.usefixtures("no_bwrap")
@pytest.mark.parametrize("sandbox, refused", [("", True), ("\n    sandbox: unsafe-no-isolation", False)])
def test_validate_refuses_a_code_recipe_before_the_run_starts(tmp_path, sandbox, refused):
    """`curate validate` (and `curate run`, before any step) names the missing bwrap and its fixes."""
    from curate.preflight import check_recipe
    from curate.recipe import load_recipe

    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "p", "tests": "assert f() == 1"}) + "\n")
    (tmp_path / "r.yaml").write_text(RECIPE.format(sandbox=sandbox))
    problems = check_recipe(load_recipe(tmp_path / "r.yaml"), output_dir=tmp_path / "out").problems
    assert bool(problems) is refused, problems
    if refused:
        (problem,) = problems
        assert problem.line == 10 and "bwrap not found" in problem.message
        assert "apt-get install bubblewrap" in problem.hint and "sandbox: unsafe-no-isolation" in problem.hint
        validate = subprocess.run([sys.executable, "-m", "curate.cli", "validate", "r.yaml"], cwd=tmp_path,
                                  capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert validate.returncode == 2 and "apt-get install bubblewrap" in validate.stderr, validate.stderr


def test_an_old_recipes_isolate_field_points_to_sandbox(tmp_path):
    from curate.recipe import RecipeError, load_recipe

    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "p", "tests": "assert f() == 1"}) + "\n")
    (tmp_path / "r.yaml").write_text(RECIPE.format(sandbox="\n    isolate: true"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "r.yaml")
    (problem,) = caught.value.problems
    assert "isolate" in problem.message and "sandbox: unsafe-no-isolation" in problem.message, problem


@pytest.mark.usefixtures("no_bwrap")
def test_the_unsafe_mode_runs_when_asked_by_name_and_warns(tmp_path, caplog):
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    verified = Verify(Verify.Config(sandbox="unsafe-no-isolation")).apply(pl.DataFrame(CODE_ROW), ctx)
    assert verified["verify_status"][0] == "correct"
    assert json.loads(verified["verify_detail"][0])["sandbox"] == "unsafe-no-isolation"
    assert any("WITHOUT isolation" in record.message for record in caplog.records)


def test_math_rows_need_no_sandbox(no_bwrap, tmp_path):
    frame = pl.DataFrame({"domain": ["math"], "problem": ["1+1"], "reference_answer": ["2"], "tests": [None],
                          "answer_text": ["\\boxed{2}"], "completion": [""]})
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert Verify(Verify.Config()).apply(frame, ctx)["correct"].to_list() == [True]



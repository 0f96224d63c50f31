"""Code verification refuses to run model code where bubblewrap cannot isolate it, unless
the recipe names the unsafe mode (issue 34). Unavailability is simulated: PATH without bwrap."""

import json

import polars as pl
import pytest

from curate.answers import sandbox_box
from curate.answers.sandbox import run_tests
from curate.answers.sandbox_box import IsolationUnavailable
from curate.core.operator import StepContext
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
    with pytest.raises(IsolationUnavailable, match="bwrap not found.*sandbox: unsafe-no-isolation"):
        Verify(Verify.Config()).apply(pl.DataFrame(CODE_ROW), ctx)
    with pytest.raises(IsolationUnavailable):
        run_tests("def f():\n    return 1\n", "assert f() == 1\n", None)


@pytest.mark.usefixtures("no_bwrap")
def test_the_unsafe_mode_runs_when_asked_by_name_and_warns(tmp_path, caplog):
    from curate.errors import describe

    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    verified = Verify(Verify.Config(sandbox="unsafe-no-isolation")).apply(pl.DataFrame(CODE_ROW), ctx)
    assert verified["verify_status"][0] == "correct"
    assert json.loads(verified["verify_detail"][0])["sandbox"] == "unsafe-no-isolation"
    assert any("WITHOUT isolation" in record.message for record in caplog.records)
    code, lines = describe(IsolationUnavailable("x"))
    assert len(lines) == 1


def test_math_rows_need_no_sandbox(no_bwrap, tmp_path):
    frame = pl.DataFrame({"domain": ["math"], "problem": ["1+1"], "reference_answer": ["2"], "tests": [None],
                          "answer_text": ["\\boxed{2}"], "completion": [""]})
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert Verify(Verify.Config()).apply(frame, ctx)["correct"].to_list() == [True]



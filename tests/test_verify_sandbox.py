"""The code sandbox: tests pass/fail/time out, and the code cannot reach out."""

import json
from pathlib import Path

import polars as pl
import pytest

from curate.answers.sandbox import SandboxLimits, kernel_isolation_available, run_tests
from curate.core.operator import StepContext
from curate.verify.operators import Verify

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
PROBLEMS = [json.loads(line) for line in (FIXTURES / "code_problems.jsonl").read_text().splitlines()]
ISOLATION = [True, False] if kernel_isolation_available() else [False]


def _run(body: str, isolate: bool, **limits):
    return run_tests(f"def f():\n{body}\n", "assert f() == 1\n", "f", SandboxLimits(**limits), isolate)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p["source"] + ":" + p["problem"][:20])
def test_reference_solutions_pass_every_test(problem):
    tests = json.loads(problem["tests"])
    result = run_tests(problem["solution"], tests["test"], tests["entry_point"])
    assert result.status == "correct", result
    assert len(result.tests) >= 3 and all(t["status"] == "pass" for t in result.tests)


def test_wrong_solution_fails_per_test():
    problem = PROBLEMS[0]
    tests = json.loads(problem["tests"])
    result = run_tests(problem["problem"] + "    return False\n", tests["test"], tests["entry_point"])
    assert result.status == "wrong"
    assert {t["status"] for t in result.tests} == {"pass", "fail"}


@pytest.mark.parametrize("isolate", ISOLATION)
def test_infinite_loop_times_out(isolate):
    result = _run("    while True:\n        pass", isolate, test_timeout_s=0.5)
    assert result.status == "timeout"
    wall = _run("    while True:\n        pass", isolate, test_timeout_s=30, wall_timeout_s=1.5)
    assert wall.status == "timeout"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_network_is_refused(isolate):
    result = _run("    import socket\n    socket.create_connection(('127.0.0.1', 22), timeout=1)\n    return 1",
                  isolate)
    assert result.status == "wrong"
    assert result.tests[0]["status"] == "error"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_huge_allocation_is_stopped(isolate):
    result = _run("    block = bytearray(10 * 1024 ** 3)\n    return 1", isolate)
    assert result.tests[0]["status"] == "error" and "MemoryError" in result.tests[0]["message"]


@pytest.mark.parametrize("isolate", ISOLATION)
def test_writes_outside_the_temp_dir_fail(isolate, tmp_path):
    target = tmp_path / "escaped.txt"
    result = _run(f"    open({str(target)!r}, 'w').write('x')\n    return 1", isolate)
    assert result.tests[0]["status"] == "error"
    assert not target.exists()
    inside = _run("    open('scratch.txt', 'w').write('x')\n    return len(open('scratch.txt').read())", isolate)
    assert inside.status == "correct"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_project_files_are_not_readable(isolate):
    schema = Path(__file__).resolve().parents[1] / "curate" / "schema.py"
    result = _run(f"    return len(open({str(schema)!r}).read()) and 2", isolate)
    assert result.tests[0]["status"] == "error"


def test_verify_operator_on_code_rows(tmp_path):
    problem = PROBLEMS[4]
    frame = pl.DataFrame({
        "domain": ["code", "code", "code"],
        "problem": [problem["problem"]] * 3,
        "reference_answer": [None] * 3,
        "tests": [problem["tests"], problem["tests"], None],
        "answer_text": [f"Here:\n```python\n{problem['solution']}\n```", "```python\ndef nope(:\n```", "x"],
        "completion": ["", "", ""],
    })
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    verified = Verify(Verify.Config()).apply(frame, ctx)
    assert verified["verify_status"].to_list() == ["correct", "wrong", "error"]
    assert verified["correct"].to_list() == [True, False, None]
    assert verified["extraction_method"][0] == "code_block"
    assert all(t["status"] == "pass" for t in json.loads(verified["verify_detail"][0])["tests"])

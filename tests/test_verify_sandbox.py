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


# Each limit is checked twice: the sandbox stops the probe, and the same probe gets through
# once that limit's layers are taken away (`weaken`: the harness's rule removed, no kernel
# isolation), so the first test would fail if the limit ever stopped working.


def weaken(monkeypatch, rule: str, replacement: str) -> None:
    """Replace `rule` in the sandbox harness (it must be there: the control tests something)."""
    from curate.answers import sandbox

    assert rule in sandbox._HARNESS
    monkeypatch.setattr(sandbox, "_HARNESS", sandbox._HARNESS.replace(rule, replacement))


NO_NETWORK_RULE = '"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",'
# CPU time, not wall time: on a loaded machine 3 s of wall clock can be well under 1 s of CPU
CPU_1_5S = "    import time\n    while time.process_time() < 1.5:\n        pass\n    return 1"
LOOP_3S = "    import time\n    end = time.time() + 3\n    while time.time() < end:\n        pass\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_per_test_and_wall_timeouts_stop_a_long_loop(isolate):
    assert _run(LOOP_3S, isolate, test_timeout_s=0.5).status == "timeout"
    wall = _run(LOOP_3S, isolate, test_timeout_s=30, wall_timeout_s=1.0)
    assert wall.status == "timeout" and "wall time" in wall.message
    cpu = _run(CPU_1_5S, isolate, test_timeout_s=120, wall_timeout_s=120, cpu_seconds=1)
    assert cpu.status == "timeout"


def test_the_same_loops_finish_without_the_timeouts():
    assert _run(LOOP_3S, False, test_timeout_s=30, wall_timeout_s=30).status == "correct"
    assert _run(CPU_1_5S, False, test_timeout_s=120, wall_timeout_s=120, cpu_seconds=10).status == "correct"


@pytest.fixture
def listener():
    """A TCP listener the test itself opens on 127.0.0.1; yields (port, accepted())."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)

    def accepted() -> bool:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            return False
        connection.close()
        return True

    yield server.getsockname()[1], accepted
    server.close()


def _connect(port: int) -> str:
    return f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_network_is_refused(isolate, listener):
    port, accepted = listener
    result = _run(_connect(port), isolate)
    assert result.status == "wrong" and result.tests[0]["status"] == "error"
    assert not accepted()  # nothing reached the listener


def test_the_listener_is_reached_without_the_network_denial(listener, monkeypatch):
    port, accepted = listener
    weaken(monkeypatch, NO_NETWORK_RULE, "")
    assert _run(_connect(port), False).status == "correct" and accepted()


# an anonymous mapping counts against the address-space limit without touching its pages,
# so the control is instant even on a loaded machine
ALLOCATE_2G = "    import mmap\n    block = mmap.mmap(-1, 2 * 1024 ** 3)\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_huge_allocation_is_stopped(isolate):
    result = _run(ALLOCATE_2G, isolate, memory_bytes=1 << 30)
    assert result.tests[0]["status"] == "error" and "Cannot allocate memory" in result.tests[0]["message"]


def test_the_allocation_succeeds_without_the_memory_limit():
    import resource

    assert _run(ALLOCATE_2G, False, memory_bytes=resource.RLIM_INFINITY).status == "correct"


WRITE_32M = "    open('big.bin', 'wb').write(b'x' * (32 << 20))\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_file_size_limit(isolate):
    assert _run(WRITE_32M, isolate, file_bytes=16 << 20).status != "correct"
    assert _run(WRITE_32M, isolate, file_bytes=64 << 20).status == "correct"  # the control


OPEN_100 = "    handles = [open('f%d' % i, 'w') for i in range(100)]\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_open_files_limit(isolate):
    result = _run(OPEN_100, isolate, open_files=64)
    assert result.status == "wrong" and "Too many open files" in result.tests[0]["message"]
    assert _run(OPEN_100, isolate, open_files=1024).status == "correct"  # the control


SPAWN = "    import subprocess\n    subprocess.run(['true'])\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_subprocesses_are_refused(isolate):
    result = _run(SPAWN, isolate)
    assert result.tests[0]["status"] == "error" and "subprocess.Popen is not allowed" in result.tests[0]["message"]


def test_subprocesses_run_without_their_denial(monkeypatch):
    weaken(monkeypatch, '"subprocess.Popen", ', "")
    assert _run(SPAWN, False).status == "correct"


def _write_to(target: Path) -> str:
    return f"    open({str(target)!r}, 'w').write('x')\n    return 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_writes_outside_the_temp_dir_fail(isolate, tmp_path):
    target = tmp_path / "escaped.txt"
    result = _run(_write_to(target), isolate)
    assert result.tests[0]["status"] == "error"
    assert not target.exists()
    inside = _run("    open('scratch.txt', 'w').write('x')\n    return len(open('scratch.txt').read())", isolate)
    assert inside.status == "correct"


def test_the_write_lands_without_its_denial(tmp_path, monkeypatch):
    target = tmp_path / "escaped.txt"
    weaken(monkeypatch, "if writing and not inside(path, temp_dir)", "if False")
    assert _run(_write_to(target), False).status == "correct" and target.read_text() == "x"


SCHEMA = Path(__file__).resolve().parents[1] / "curate" / "schema.py"
READ_SCHEMA = f"    return len(open({str(SCHEMA)!r}).read()) and 1"


@pytest.mark.parametrize("isolate", ISOLATION)
def test_project_files_are_not_readable(isolate):
    result = _run(READ_SCHEMA, isolate)
    assert result.tests[0]["status"] == "error"


def test_project_files_are_readable_without_hiding(monkeypatch):
    weaken(monkeypatch, 'temp_dir, hidden = spec["temp_dir"], spec["hidden"]',
           'temp_dir, hidden = spec["temp_dir"], []')
    assert _run(READ_SCHEMA, False).status == "correct"


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

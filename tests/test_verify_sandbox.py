"""The code sandbox with assert-style tests: verdicts, limits, and each attack of issue 34
given to it as model code.

Every attack test runs the same model code twice where it can: in the bubblewrap sandbox,
where it must fail, and with `sandbox: unsafe-no-isolation`, where it must get through, so
the test would notice if the probe stopped probing anything.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from curate.answers import sandbox_box
from curate.answers.sandbox import SandboxLimits, run_tests
from curate.answers.sandbox_box import Isolation
from curate.core.operator import StepContext
from curate.verify.operators import Verify

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
PROBLEMS = [json.loads(line) for line in (FIXTURES / "code_problems.jsonl").read_text().splitlines()]
BWRAP = Isolation.BWRAP
UNSAFE = Isolation.UNSAFE
AS_ROOT = os.geteuid() == 0

needs_bwrap = pytest.mark.skipif(sandbox_box._probe() is not None,
                                 reason=f"bubblewrap cannot run here: {sandbox_box._probe()}")
pytestmark = needs_bwrap


def _run(body: str, isolation: Isolation = BWRAP, test: str = "assert f() == 1\n", **limits):
    return run_tests(f"def f():\n{body}\n", test, "f", SandboxLimits(**limits), isolation)


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p["source"] + ":" + p["problem"][:20])
def test_reference_solutions_pass_every_test(problem, isolation):
    tests = json.loads(problem["tests"])
    result = run_tests(problem["solution"], tests["test"], tests["entry_point"], isolation=isolation)
    assert result.status == "correct", result
    assert len(result.tests) >= 3 and all(t["status"] == "pass" for t in result.tests)


def test_wrong_solution_fails_per_test():
    problem = PROBLEMS[0]
    tests = json.loads(problem["tests"])
    result = run_tests(problem["problem"] + "    return False\n", tests["test"], tests["entry_point"])
    assert result.status == "wrong"
    assert {t["status"] for t in result.tests} == {"pass", "fail"}


def test_values_cross_as_plain_values_and_exceptions_keep_their_type():
    code = ("def f(x):\n    return {'t': (x, 1.5), 's': {1, 2}, 'inf': float('inf'), 'big': 10**30, 'b': b'x'}\n"
            "def g(x):\n    raise ValueError('no ' + x)\n")
    test = ("assert f([1]) == {'t': ([1], 1.5), 's': {1, 2}, 'inf': float('inf'), 'big': 10**30, 'b': b'x'}\n"
            "try:\n    g('way')\n    assert False\nexcept ValueError as e:\n    assert str(e) == 'no way'\n"
            "assert g('x') == 1\n")
    result = run_tests(code, test, None)
    assert [t["status"] for t in result.tests] == ["pass", "error"], result
    assert "ValueError: no x" in result.tests[1]["message"]


def test_a_loop_of_asserts_at_the_end_of_check_is_run():
    test = ("def check(candidate):\n    assert candidate(1) == 2\n"
            "    for x in range(3):\n        assert candidate(x) == x + 1\n")
    assert run_tests("def inc(x):\n    return x + 1\n", test, "inc").status == "correct"
    wrong = run_tests("def inc(x):\n    return 2 if x == 1 else 0\n", test, "inc")
    assert wrong.status == "wrong" and wrong.tests[-1]["name"] == "check_rest"


def test_a_test_passing_what_cannot_cross_is_undecided_not_wrong():
    result = run_tests("def apply(g, x):\n    return g(x)\n", "assert apply(lambda v: v, 1) == 1\n", None)
    assert result.status == "error" and result.tests[0]["status"] == "unsupported"


# --- What the tests call: only the solution's own functions are proxied ---------------------

VALUES = {p["source"]: p for p in map(json.loads, (FIXTURES / "code_values.jsonl").read_text().splitlines())}
MAD_TEST = ("def check(candidate):\n    assert abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6\n"
            "    assert abs(candidate([1.0, 2.0, 3.0, 4.0]) - 1.0) < 1e-6\n")


@pytest.mark.parametrize("code, test, entry_point", [
    ("def mean_absolute_deviation(n):\n    return 42.0\ndef abs(x):\n    return 0\n", MAD_TEST,
     "mean_absolute_deviation"),
    ("def f(x):\n    return None\ndef sorted(x):\n    return [1, 2]\ndef len(x):\n    return 2\n",
     "assert sorted(f([2, 1])) == [1, 2]\nassert len(f('ab')) == 2\n", None),
], ids=["abs_humaneval", "sorted_len_mbpp"])
def test_a_solution_defining_a_builtin_does_not_change_it_for_the_tests(code, test, entry_point):
    result = run_tests(code, test, entry_point)
    assert result.status == "wrong", result


def test_a_solution_redefining_the_prompts_helper_does_not_change_it_for_the_tests():
    """HumanEval/32 checks find_zero with the prompt's `poly`: a solution's `poly` returning 0
    would pass any find_zero. The prompt's helpers run with the tests."""
    problem = VALUES["humaneval/32"]
    tests = json.loads(problem["tests"])
    forged = problem["problem"] + "    return 0.0\ndef poly(xs, x):\n    return 0\n"
    result = run_tests(forged, tests["test"], tests["entry_point"], prelude=problem["problem"])
    assert result.status == "wrong", result
    reference = run_tests(problem["solution"], tests["test"], tests["entry_point"], prelude=problem["problem"])
    assert reference.status == "correct", reference


def test_a_standard_module_the_tests_use_without_importing_is_the_real_one():
    """MBPP 98's test uses `math` (its `test_imports`, which the source leaves out) that the
    solution never imports: the test box imports it, and never takes the solution's `cmath as math`."""
    test = "assert math.isclose(f(4), math.sqrt(4))\n"
    assert run_tests("def f(x):\n    return x ** 0.5\n", test, None).status == "correct"
    assert run_tests("import cmath as math\ndef f(x):\n    return 3\n", test, None).status == "wrong"


def test_a_function_named_like_a_builtin_is_still_tested_when_the_tests_call_nothing_else():
    """MBPP 126 asks for a `sum` (of common divisors): with no other function called, it is the one tested."""
    code = ("import builtins\ndef sum(a, b):\n"
            "    return builtins.sum(d for d in range(1, min(a, b)) if a % d == 0 and b % d == 0)\n")
    assert run_tests(code, "assert sum(10, 15) == 6\nassert sum(100, 150) == 93\n", None).status == "correct"


# --- Values that cross as their base type, and those that cannot cross ---------------------

def test_a_counter_crosses_as_a_dict():
    problem = VALUES["mbpp/88"]
    result = run_tests(problem["solution"], json.loads(problem["tests"])["test"], None)
    assert result.status == "correct", result
    code = ("import collections\nPoint = collections.namedtuple('Point', 'x y')\n"
            "def f():\n    return collections.defaultdict(int, a=1), collections.OrderedDict(b=2), Point(1, 2)\n")
    assert run_tests(code, "assert f() == ({'a': 1}, {'b': 2}, (1, 2))\n", None).status == "correct"


def test_a_class_of_the_solution_the_tests_build_leaves_the_row_undecided():
    """MBPP 601's tests build the solution's `Pair`: its objects cannot cross, so no verdict."""
    problem = VALUES["mbpp/601"]
    result = run_tests(problem["solution"], json.loads(problem["tests"])["test"], None)
    assert result.status == "error" and result.tests[0]["status"] == "unsupported", result


def test_an_integer_of_any_size_crosses():
    code = "import math\ndef f(n):\n    return math.factorial(n)\n"
    test = "import math\nassert f(1800) == math.factorial(1800)\nassert f(1800) != math.factorial(1799)\n"
    assert run_tests(code, test, None).status == "correct"


# --- A box that does not start is not the solution's fault ----------------------------------

def test_a_solution_box_that_fails_to_start_leaves_the_row_undecided(monkeypatch):
    """bwrap failing to set up the solution's box (simulated: a bind of a missing path)."""
    from curate.answers import sandbox

    def failing(argv, *args, **kwargs):
        command = sandbox_box.box_command(argv, *args, **kwargs)
        if sandbox._SOLUTION_HARNESS in argv:
            command[1:1] = ["--ro-bind", "/nonexistent-curate-test", "/nonexistent"]
        return command

    monkeypatch.setattr(sandbox, "box_command", failing)
    result = run_tests("def f():\n    return 1\n", "assert f() == 1\n", None)
    assert result.status == "error", result
    assert "did not start" in result.message or "exited before" in result.message
    assert "nonexistent-curate-test" in result.message


# CPU time, not wall time: on a loaded machine 3 s of wall clock can be well under 1 s of CPU
CPU_1_5S = "    import time\n    while time.process_time() < 1.5:\n        pass\n    return 1"
LOOP_3S = "    import time\n    end = time.time() + 3\n    while time.time() < end:\n        pass\n    return 1"
SLEEP = "    import time\n    time.sleep({})\n    return 1"


def test_per_test_and_whole_program_cpu_limits_stop_a_long_loop():
    # a generous backstop: on a loaded machine the CPU seconds may take many more of wall clock
    assert _run(CPU_1_5S, test_timeout_s=0.5, backstop_factor=30).status == "timeout"
    assert _run(CPU_1_5S, test_timeout_s=120, cpu_seconds=1, backstop_factor=30).status == "timeout"


def test_code_that_catches_the_cpu_timeout_is_stopped_at_the_next_one():
    body = ("    while True:\n        try:\n            while True:\n                pass\n"
            "        except BaseException:\n            pass")
    result = _run(body, test_timeout_s=0.5, cpu_seconds=30, backstop_factor=30)
    assert result.status == "timeout", result


def test_a_slow_machine_does_not_make_a_correct_solution_timeout():
    """A stalled machine, simulated by a solution that waits 1.5 s of wall clock with no CPU: the
    per-test limit (0.5 s) is CPU time, so it passes; wall clock was the limit before."""
    assert _run(SLEEP.format(1.5), test_timeout_s=0.5).status == "correct"


def test_the_wall_clock_backstop_leaves_the_row_undecided():
    result = _run(SLEEP.format(30), test_timeout_s=0.5, backstop_factor=1)
    assert result.status == "error" and result.tests[0]["status"] == "backstop", result
    whole = _run(SLEEP.format(30), test_timeout_s=30, cpu_seconds=1, backstop_factor=1)
    assert whole.status == "error" and "whole program" in whole.message, whole


def test_the_same_loops_finish_without_the_timeouts():
    assert _run(LOOP_3S, test_timeout_s=30).status == "correct"
    assert _run(CPU_1_5S, test_timeout_s=120, cpu_seconds=10).status == "correct"


# --- Forged verdicts: the model's code cannot decide pass or fail ---------------------------

FORGERIES = {
    # the attack that worked before: the harness's nonce in __main__, a result line printed
    "nonce_from_main": "import sys, json\nm = sys.modules['__main__']\n"
                       "print(m.spec['nonce'] + json.dumps({'status': 'ok', 'tests': []}))\n",
    # a verdict printed on every descriptor, then exit status 0 before any test runs
    "print_and_exit_0": "import os, json\n"
                        "line = json.dumps({'status': 'ok', 'tests': [{'name': 'a', 'status': 'pass'}]})\n"
                        "for fd in range(1, 64):\n    try:\n        os.write(fd, (line + '\\n').encode())\n"
                        "    except OSError:\n        pass\nos._exit(0)\n",
    # exit status 0 whatever the tests do
    "atexit_exit_0": "import atexit, os\natexit.register(os._exit, 0)\n",
    # a value equal to everything
    "always_equal": "class Yes:\n    __eq__ = lambda self, other: True\n",
    # kill every process it can see (the test harness, in the old single process)
    "kill_everything": "import os, signal\nfor pid in range(1, 400):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
                       "    except (ProcessLookupError, PermissionError):\n        pass\n",
}
FORGED_TEST = "assert add(2, 2) == 5\nassert add(1, 1) == 3\n"


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
@pytest.mark.parametrize("attack", FORGERIES)
def test_forged_verdicts_are_wrong(attack, isolation):
    code = FORGERIES[attack] + "def add(a, b):\n    return Yes() if 'Yes' in globals() else a + b\n"
    if attack == "kill_everything" and isolation is UNSAFE:
        pytest.skip("without isolation it would kill this test run")
    result = run_tests(code, FORGED_TEST, None, isolation=isolation)
    # an object of the solution's class cannot cross: undecided (never correct), as for any object
    assert result.status in (("error",) if attack == "always_equal" else ("wrong", "timeout")), result
    assert not any(t["status"] == "pass" for t in result.tests)


# The harness's answer pipe is sys.argv[3] in the solution's interpreter: nonsense written
# there must make the row wrong, never undecided (`error`, which grading does not count).
NONSENSE = {
    "not_an_object": "import os, sys\nos.write(int(sys.argv[3]), b'[1]\\n')\n",
    "names_not_a_list": "import os, sys\nos.write(int(sys.argv[3]), b'{\"names\": 5}\\n')\n",
    "unknown_tag": "import os, sys\n"
                   "os.write(int(sys.argv[3]), b'{\"names\": [\"add\"]}\\n{\"value\": {\"x\": 1}}\\n')\n",
    "deep": "import os, sys\nos.write(int(sys.argv[3]), b'{\"names\": [\"add\"]}\\n' + b'[' * 100000 + b'\\n')\n",
    "no_newline": "import os, sys\nos.write(int(sys.argv[3]), b'{\"names\": [\"add\"]}')\n",
}


@pytest.mark.parametrize("attack", NONSENSE)
def test_nonsense_from_the_solution_is_wrong_not_undecided(attack):
    code = NONSENSE[attack] + "import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n"
    result = run_tests(code, FORGED_TEST, None)
    assert result.status == "wrong", result


def test_a_solution_failing_in_the_test_setup_is_wrong_not_undecided():
    test = "value = add(1, 1)\nassert value == 2\n"
    assert run_tests("def add(a, b):\n    raise ValueError('no')\n", test, None).status == "wrong"
    assert run_tests("def add(a, b):\n    return a + b\n", test, None).status == "correct"
    assert run_tests("def add(a, b):\n    return a + b\n", "value = nope()\n" + test, None).status == "error"


@pytest.mark.parametrize("attack", ["print_and_exit_0", "atexit_exit_0", "always_equal"])
def test_the_forgeries_fool_a_judge_that_shares_the_codes_interpreter(attack):
    """The control: judged by the exit status of one interpreter running code and tests
    (what a same-process harness does), each forgery passes."""
    code = FORGERIES[attack] + "def add(a, b):\n    return Yes() if 'Yes' in globals() else a + b\n"
    judged = subprocess.run([sys.executable, "-I", "-c", code + FORGED_TEST], capture_output=True, timeout=30)
    assert judged.returncode == 0


# --- Reaching outside ---------------------------------------------------------------------

@pytest.fixture
def bystander():
    """A process outside the sandbox that model code will try to kill."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def _kill(pid: int) -> str:
    return f"    import os\n    os.kill({pid}, 9)\n    return 1"


def test_the_parent_inside_the_box_is_not_curate():
    result = _run("    import os\n    os.kill(os.getppid(), 9)\n    return 1")
    assert result.status == "wrong"  # the kill was refused; and this test run is alive to check


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_signals_cannot_reach_processes_outside(isolation, bystander):
    result = _run(_kill(bystander.pid), isolation)
    time.sleep(0.2)
    if isolation is BWRAP:
        assert result.status == "wrong" and bystander.poll() is None
    elif AS_ROOT:
        assert bystander.poll() is not None  # the control: without isolation the kill lands


MARK = "31.4159"  # sleep's argument: finds the child among this machine's processes


def _survivors() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and MARK.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_a_setsid_child_does_not_outlive_the_verdict(isolation):
    body = f"    import subprocess\n    subprocess.Popen(['sleep', '{MARK}'], start_new_session=True)\n    return 1"
    try:
        assert _run(body, isolation).status == "correct"
        time.sleep(0.3)
        assert bool(_survivors()) == (isolation is UNSAFE)
    finally:
        for pid in _survivors():
            os.kill(pid, 9)


FORK_40 = ("    import subprocess\n    children = []\n    for _ in range(40):\n        try:\n"
           "            children.append(subprocess.Popen(['sleep', '5']))\n        except OSError:\n            break\n"
           "    for child in children:\n        child.kill()\n    return len(children)")


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_the_process_limit_binds_the_whole_box(isolation):
    result = _run(FORK_40, isolation, test="assert f() == 40\n", processes=4)
    if isolation is BWRAP:
        assert result.status == "wrong"
    elif AS_ROOT:
        assert result.status == "correct"  # the control: root is not held by RLIMIT_NPROC


ALLOCATE_2G = "    import mmap\n    block = mmap.mmap(-1, 2 * 1024 ** 3)\n    return 1"


def test_huge_allocation_is_stopped_and_allowed_under_a_higher_limit():
    result = _run(ALLOCATE_2G, memory_bytes=1 << 30)
    assert result.tests[0]["status"] == "error" and "Cannot allocate memory" in result.tests[0]["message"]
    assert _run(ALLOCATE_2G, memory_bytes=4 << 30).status == "correct"  # the control


WRITE_32M = "    open('/tmp/big.bin', 'wb').write(b'x' * (32 << 20))\n    return 1"


def test_file_size_limit():
    assert _run(WRITE_32M, file_bytes=16 << 20).status != "correct"
    assert _run(WRITE_32M, file_bytes=64 << 20).status == "correct"  # the control


FILL_TMP_100M = ("    for i in range(10):\n        with open(f'/tmp/f{i}', 'wb') as f:\n"
                 "            f.write(b'x' * (10 << 20))\n    return 1")


def test_the_private_tmp_is_a_small_tmpfs():
    """Many files under the file-size limit would otherwise fill the machine's memory."""
    assert _run(FILL_TMP_100M, tmp_bytes=64 << 20).status == "wrong"
    assert _run(FILL_TMP_100M, tmp_bytes=256 << 20).status == "correct"  # the control


OPEN_100 = "    handles = [open('/tmp/f%d' % i, 'w') for i in range(100)]\n    return 1"


def test_open_files_limit():
    result = _run(OPEN_100, open_files=64)
    assert result.status == "wrong" and "Too many open files" in result.tests[0]["message"]
    assert _run(OPEN_100, open_files=1024).status == "correct"  # the control


PROJECT_FILE = Path(__file__).resolve().parents[1] / "curate" / "schema.py"


@pytest.fixture
def other_run(tmp_path):
    """A file of 'another run' in the machine's temp folder."""
    path = tmp_path / "other-run" / "output.jsonl"
    path.parent.mkdir()
    path.write_text("secret rows\n")
    tmp_path.chmod(0o755)
    return path


def _read_all(paths: list[Path | str]) -> str:
    return ("    read = []\n"
            f"    for path in {[str(p) for p in paths]!r}:\n"
            "        try:\n            read.append(open(path).read()[:20])\n        except OSError:\n            pass\n"
            "    import os\n    for folder in ('/root/.ssh', '/home', '/etc', '/work', '/tmp/pytest-of-root'):\n"
            "        try:\n            read.append(os.listdir(folder))\n        except OSError:\n            pass\n"
            "    return read")


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_the_machines_files_are_not_readable(isolation, other_run):
    body = _read_all(["/etc/passwd", "/root/.bashrc", other_run, PROJECT_FILE, "/proc/1/environ"])
    result = _run(body, isolation, test="assert f() == []\n")
    assert result.status == ("correct" if isolation is BWRAP else "wrong"), result


def _write_to(target: Path) -> str:
    return f"    open({str(target)!r}, 'w').write('x')\n    return 1"


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_writes_outside_the_box_fail(isolation, tmp_path):
    target = tmp_path / "escaped.txt"
    result = _run(_write_to(target), isolation)
    assert target.exists() == (isolation is UNSAFE and AS_ROOT)
    if isolation is BWRAP:
        assert result.status == "wrong"
        assert _run("    open('/tmp/s', 'w').write('x')\n    return len(open('/tmp/s').read())").status == "correct"


@pytest.fixture
def unix_listener(tmp_path):
    path = tmp_path / "curate.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0o777)
    tmp_path.chmod(0o755)
    server.listen(1)
    server.settimeout(0.5)
    yield path, server
    server.close()


def _received(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except TimeoutError:
        return False
    connection.close()
    return True


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_a_unix_socket_in_the_temp_folder_is_unreachable(isolation, unix_listener):
    path, server = unix_listener
    body = (f"    import socket\n    s = socket.socket(socket.AF_UNIX)\n    s.connect({str(path)!r})\n"
            "    s.send(b'x')\n    return 1")
    result = _run(body, isolation)
    assert _received(server) == (isolation is UNSAFE)
    assert (result.status == "correct") == (isolation is UNSAFE)


@pytest.fixture
def tcp_listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    yield server.getsockname()[1], server
    server.close()


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_tcp_to_localhost_is_unreachable(isolation, tcp_listener):
    port, server = tcp_listener
    body = f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n    return 1"
    result = _run(body, isolation)
    assert _received(server) == (isolation is UNSAFE)
    assert (result.status == "correct") == (isolation is UNSAFE)


def test_a_flood_on_stdout_does_not_reach_curate():
    """1.5 GB on stdout grew curate by 1.2 GB: the solution's stdout now goes nowhere."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    body = ("    import sys\n    chunk = 'x' * (1 << 20)\n"
            "    for _ in range(1500):\n        sys.stdout.write(chunk)\n    return 1")
    result = _run(body, test_timeout_s=60)
    assert result.status == "correct"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_a_huge_return_value_is_wrong_not_buffered():
    result = _run("    return 'x' * (16 << 20)", test="assert f() == 'x'\n", max_answer_bytes=1 << 20,
                  test_timeout_s=60)
    assert result.status == "wrong" and "over 1048576 bytes" in result.tests[0]["message"]


# --- Secrets in curate's environment ----------------------------------------------------------

CANARY = "hf_canary_8d1f0c"
STEAL = ("    import os\n    found = [v for v in os.environ.values() if 'canary' in v]\n"
         "    for pid in ['self', '1', str(os.getppid())]:\n        try:\n"
         "            found += [v for v in open(f'/proc/{pid}/environ').read().split('\\0') if 'canary' in v]\n"
         "        except OSError:\n            pass\n"
         "    raise ValueError(' '.join(found))")


VERIFY_ONE_ROW = """
import json, sys, tempfile
from pathlib import Path
import polars as pl
from curate.core.operator import StepContext
from curate.verify.operators import Verify
row = json.loads(sys.argv[1])
frame = pl.DataFrame({k: [v] for k, v in row.items()}, schema_overrides={"reference_answer": pl.String})
with tempfile.TemporaryDirectory() as folder:
    ctx = StepContext(step_id="verify", step_dir=Path(folder), cache_dir=Path(folder, "cache"))
    verified = Verify(Verify.Config(sandbox=sys.argv[2])).apply(frame, ctx)
print(verified["verify_status"][0], verified["verify_detail"][0])
"""


@pytest.mark.parametrize("isolation", [BWRAP, UNSAFE])
def test_curates_environment_does_not_reach_verify_detail(isolation):
    """curate runs with tokens in its environment (set at its start, as a shell would)."""
    row = {"domain": "code", "problem": "p", "reference_answer": None,
           "tests": json.dumps({"test": "assert f() == 1\n", "entry_point": None}),
           "answer_text": f"```python\ndef f():\n{STEAL}\n```", "completion": ""}
    environment = {**os.environ, "HF_TOKEN": CANARY, "OPENAI_API_KEY": CANARY,
                   "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    verified = subprocess.run([sys.executable, "-c", VERIFY_ONE_ROW, json.dumps(row), isolation.value],
                              env=environment, capture_output=True, text=True, timeout=120)
    assert verified.stdout.startswith("wrong "), verified.stderr[-2000:]
    # the control: without isolation, curate's environment is read through /proc/<ppid>/environ
    assert (CANARY in verified.stdout) == (isolation is UNSAFE and AS_ROOT)


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
    detail = json.loads(verified["verify_detail"][0])
    assert detail["sandbox"] == "bwrap" and all(t["status"] == "pass" for t in detail["tests"])


def test_the_sandbox_code_is_part_of_verifys_fingerprint(monkeypatch):
    """A verdict from an older sandbox (one that could be forged) is not reused on resume."""
    import inspect

    from curate.runner import _code_version

    before = _code_version(Verify)
    source = inspect.getsource

    def edited(module):
        return source(module) + ("# edited" if module is sandbox_box else "")

    monkeypatch.setattr(inspect, "getsource", edited)
    assert _code_version(Verify) != before

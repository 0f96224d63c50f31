"""Run untrusted code against assert-style tests (HumanEval, MBPP), deciding the verdict
where the code cannot reach.

Two boxes (`sandbox_box`: bubblewrap, each with its own PID namespace and uid) joined by
two pipes:
- the *solution box* loads the model's code and then only answers calls: "call f with
  these arguments" -> the return value (or the exception's type and message);
- the *test box* runs the test program, in which every function the solution defines is a
  proxy that sends the call to the solution box and returns its answer, decoded into plain
  built-in values (no object of the solution's crosses, so no `__eq__` that always says
  yes). The test box reports each assert's outcome on its stdout, which only curate reads.

So the model's code never shares an interpreter, a process or a PID namespace with the
test program or the verdict: it can return wrong values, crash, hang or flood, and the
verdict says so, but it cannot print a verdict, patch `AssertionError` or end the tests
early with exit status 0.

What crosses the boundary: None, bool, int, float (inf and nan too), str, bytes, complex,
list, tuple, dict, set, frozenset, nested. A test that passes anything else (a lambda, an
object of a class the solution defines) is `unsupported` and the row's verdict `error`
(undecided), never a failure of the solution. Arguments are copies: a solution that is
meant to change its argument in place is not seen to.

Tests are the `assert` statements of the test program: top-level ones (MBPP) and those in
the body of `check(candidate)` (HumanEval), each run and reported on its own; statements
after the last assert of `check` (a loop of asserts) run as one last test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from curate.answers.sandbox_box import (
    BOX_DIR,
    CPU_KILLS,
    BoxLimits,
    Isolation,
    box_command,
    kill,
    python_executable,
    require,
    start,
)

# How values cross between the boxes: JSON, with tags for what JSON lacks. Shared by both harnesses.
_CODEC = r'''
import json, math

def encode(value, depth=0):
    if depth > 200:
        raise ValueError("value nested over 200 deep")
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if -2**53 < value < 2**53 else {"int": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise TypeError(f"a {kind.__name__} cannot cross the sandbox boundary")

DECODERS = {"int": int, "float": float, "bytes": bytes.fromhex, "complex": lambda p: complex(*p),
            "tuple": lambda v: tuple(map(decode, v)), "set": lambda v: set(map(decode, v)),
            "frozenset": lambda v: frozenset(map(decode, v)),
            "dict": lambda v: {decode(k): decode(x) for k, x in v}}

def decode(value):
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        (tag, payload), = value.items()
        return DECODERS[tag](payload)
    return value
'''

# The solution box: load the code, say which functions it defines, then answer calls.
_SOLUTION_HARNESS = _CODEC + r'''
import inspect, sys
calls, answers = open(int(sys.argv[2]), "rb"), open(int(sys.argv[3]), "wb")

def send(message):
    answers.write(json.dumps(message).encode() + b"\n")
    answers.flush()

namespace = {"__name__": "__main__"}
try:
    exec(compile(open(sys.argv[1]).read(), "solution.py", "exec"), namespace)
except BaseException as error:
    send({"load_error": f"{type(error).__name__}: {error}"[:300]})
    raise SystemExit(1)
send({"names": [n for n, v in namespace.items() if inspect.isfunction(v) and not n.startswith("__")]})
for line in calls:
    call = json.loads(line)
    try:
        value = namespace[call["name"]](*decode(call["args"]), **dict(decode(call["kwargs"])))
        send({"value": encode(value)})
    except BaseException as error:
        send({"raised": type(error).__name__, "message": str(error)[:300]})
'''

# The test box: run the test program with proxies for the solution's functions; print the report.
_TEST_HARNESS = _CODEC + r'''
import ast, builtins, os, signal, sys
spec = json.loads(sys.stdin.read())
calls, answers = open(int(sys.argv[1]), "wb"), open(int(sys.argv[2]), "rb")
report_out = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr = open(os.devnull, "w")
MAX_ANSWER = spec["max_answer_bytes"]

class SolutionExited(Exception):
    pass

class Unsupported(Exception):
    """The test passes something that cannot cross to the solution: not the solution's fault."""

def receive():
    line = answers.readline(MAX_ANSWER + 1)
    if not line:
        raise SolutionExited("the solution's process exited")
    if len(line) > MAX_ANSWER or not line.endswith(b"\n"):
        raise ValueError(f"the solution's answer is over {MAX_ANSWER} bytes")
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"unreadable answer from the solution: {type(error).__name__}") from None
    if not isinstance(answer, dict):
        raise ValueError("unreadable answer from the solution: not an object")
    return answer

solution_failed = False  # the last call to the solution raised, exited or answered nonsense

def proxy(name):
    def call(*args, **kwargs):
        global solution_failed
        solution_failed = True
        try:
            message = json.dumps({"name": name, "args": encode(list(args)), "kwargs": encode(kwargs)})
        except (TypeError, ValueError) as error:
            raise Unsupported(str(error)) from None
        try:
            calls.write(message.encode() + b"\n")
            calls.flush()
        except BrokenPipeError:
            raise SolutionExited("the solution's process exited") from None
        answer = receive()
        if "raised" in answer:
            kind = getattr(builtins, str(answer["raised"]), None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RuntimeError
            raise kind(str(answer.get("message")))
        try:
            value = decode(answer["value"])
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
            raise ValueError(f"unreadable value from the solution: {type(error).__name__}") from None
        solution_failed = False
        return value
    call.__name__ = name
    return call

def split_tests(program):
    """(setup statements, [assert], check body or None)."""
    setup, tests, check = [], [], None
    for node in ast.parse(program).body:
        if isinstance(node, ast.Assert):
            tests.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "check" and spec["entry_point"]:
            check = node
        else:
            setup.append(node)
    return setup, tests, check

def on_alarm(signum, frame):
    raise TimeoutError("test timed out")

results = []
def record(name, status, message=""):
    results.append({"name": name, "status": status, "message": message[:300]})

def run(nodes, namespace, name):
    exec(compile(ast.Module(body=nodes, type_ignores=[]), name, "exec"), namespace)

def run_test(name, nodes, namespace):
    signal.setitimer(signal.ITIMER_REAL, spec["test_timeout_s"])
    try:
        run(nodes, namespace, name)
        record(name, "pass")
    except AssertionError as error:
        record(name, "fail", str(error))
    except TimeoutError:
        record(name, "timeout", "over %ss" % spec["test_timeout_s"])
    except Unsupported as error:
        record(name, "unsupported", str(error))
    except SolutionExited as error:
        record(name, "exited", str(error))
    except BaseException as error:
        record(name, "error", f"{type(error).__name__}: {error}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return results[-1]["status"] not in ("timeout", "exited")  # the solution can answer no more

def main():
    try:
        setup, tests, check = split_tests(spec["test"])
    except SyntaxError as error:
        return f"test program does not parse: {error}"
    signal.setitimer(signal.ITIMER_REAL, spec["test_timeout_s"])
    try:
        hello = receive()
    except TimeoutError:
        return "timeout: loading the solution took over %ss" % spec["test_timeout_s"]
    except (SolutionExited, ValueError) as error:
        return f"error: loading the solution: {error}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if "load_error" in hello:
        return "error: loading the solution: " + str(hello["load_error"])[:300]
    names = hello.get("names")
    if not isinstance(names, list):
        return "error: loading the solution: it did not say which functions it defines"
    namespace = {"__name__": "__main__"}
    namespace.update({str(name): proxy(str(name)) for name in names})
    if check is not None and spec["entry_point"] not in namespace:
        return f"error: the solution does not define {spec['entry_point']}"
    try:
        run(setup, namespace, "test_setup")
    except BaseException as error:
        # a call to the solution in the setup failed: the solution's fault, not the tests'
        blame = "error: the solution failed in the test setup" if solution_failed else "test program setup failed"
        return f"{blame}: {type(error).__name__}: {error}"[:300]
    groups = [(f"assert_{i}", [node]) for i, node in enumerate(tests)]
    if check is not None:
        namespace["candidate"] = namespace[spec["entry_point"]]
        pending = []
        for index, node in enumerate(check.body):
            pending.append(node)
            if isinstance(node, ast.Assert):
                groups.append((f"check_{index}", pending))
                pending = []
        if any(isinstance(n, ast.Assert) for node in pending for n in ast.walk(node)):
            groups.append(("check_rest", pending))
    for name, nodes in groups:
        if not run_test(name, nodes, namespace):
            break
    return "ok"

signal.signal(signal.SIGALRM, on_alarm)
status = main()
report_out.write(json.dumps({"status": status, "tests": results}) + "\n")
report_out.flush()
'''


@dataclass
class SandboxLimits:
    wall_timeout_s: float = 10.0
    test_timeout_s: float = 3.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 4
    tmp_bytes: int = 64 << 20
    max_answer_bytes: int = 16 << 20  # one return value, as it crosses the boundary

    def box(self) -> BoxLimits:
        return BoxLimits(memory_bytes=self.memory_bytes, cpu_seconds=self.cpu_seconds, file_bytes=self.file_bytes,
                         open_files=self.open_files, processes=self.processes, tmp_bytes=self.tmp_bytes)


@dataclass
class SandboxResult:
    status: str  # correct | wrong | timeout | error
    tests: list[dict] = field(default_factory=list)
    message: str = ""
    mode: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "correct"


def run_tests(code: str, test: str, entry_point: str | None, limits: SandboxLimits | None = None,
              isolation: Isolation = Isolation.BWRAP) -> SandboxResult:
    """Run `code` in a solution box and the tests of `test` in a test box (module doc)."""
    require(isolation)
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="curate-sandbox-") as temp_dir:
        box_dir = Path(temp_dir, "box")
        box_dir.mkdir(mode=0o755)
        box_dir.chmod(0o755)  # the box's uid reads it; the 0700 parent keeps other users out
        solution = box_dir / "solution.py"
        solution.write_text(code)
        solution.chmod(0o644)
        inside = Path(BOX_DIR) if isolation is Isolation.BWRAP else box_dir
        spec = {"test": test, "entry_point": entry_point, "test_timeout_s": limits.test_timeout_s,
                "max_answer_bytes": limits.max_answer_bytes}
        report, solution_exit = _run_boxes(inside / "solution.py", box_dir, spec, limits, isolation)
    return _result(report, solution_exit, isolation.value)


def _run_boxes(solution: Path, box_dir: Path, spec: dict, limits: SandboxLimits,
               isolation: Isolation) -> tuple[dict | str, int | None]:
    """(the test box's report or why there is none, the solution box's exit status if it ended)."""
    python = [python_executable(), "-I", "-S", "-B", "-c"]
    calls_read, calls_write = os.pipe()
    answers_read, answers_write = os.pipe()
    boxes: list[subprocess.Popen] = []
    try:
        with _closing(calls_read, answers_write, also_on_error=(calls_write, answers_read)):
            boxes.append(start(
                box_command([*python, _SOLUTION_HARNESS, str(solution), str(calls_read), str(answers_write)],
                            limits.box(), isolation, box_dir),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(calls_read, answers_write)))
        with _closing(calls_write, answers_read):
            boxes.append(start(
                box_command([*python, _TEST_HARNESS, str(calls_write), str(answers_read)], limits.box(), isolation),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(calls_write, answers_read)))
        solution_box, test_box = boxes
        try:
            stdout, stderr = test_box.communicate(json.dumps(spec).encode(), timeout=limits.wall_timeout_s)
        except subprocess.TimeoutExpired:
            return f"timeout: wall time over {limits.wall_timeout_s}s", None
        lines = stdout.decode(errors="replace").splitlines()
        if test_box.returncode != 0 or not lines:
            return f"error: the test box exit {test_box.returncode}: {stderr.decode(errors='replace')[-300:]}", None
        return json.loads(lines[-1]), _exit_status(solution_box)
    finally:
        for box in boxes:
            kill(box)


@contextlib.contextmanager
def _closing(*fds: int, also_on_error: tuple[int, ...] = ()) -> Iterator[None]:
    """Close our copies of pipe ends once the box that uses them has started (or failed to:
    then `also_on_error` too, the ends no box will get)."""
    try:
        yield
    except BaseException:
        for fd in also_on_error:
            os.close(fd)
        raise
    finally:
        for fd in fds:
            os.close(fd)


def _exit_status(box: subprocess.Popen) -> int | None:
    """The solution box's exit status, if it ended (it may still be exiting when the tests saw it go)."""
    try:
        return box.wait(0.5)
    except subprocess.TimeoutExpired:
        return None


def _result(report: dict | str, solution_exit: int | None, mode: str) -> SandboxResult:
    if isinstance(report, str):
        return SandboxResult("timeout" if report.startswith("timeout") else "error", message=report, mode=mode)
    tests = report["tests"]
    if report["status"] != "ok":
        # The solution failing to load is the solution's fault; a broken test program is not.
        solution_fault = report["status"].startswith(("error: loading", "error: the solution"))
        status = "timeout" if report["status"].startswith("timeout") else "wrong" if solution_fault else "error"
        return SandboxResult(status, tests, report["status"], mode)
    if not tests:
        return SandboxResult("error", tests, "the test program has no assert statements", mode)
    statuses = {test["status"] for test in tests}
    if statuses == {"pass"}:
        return SandboxResult("correct", tests, "", mode)
    if statuses & {"fail", "error"}:
        return SandboxResult("wrong", tests, "", mode)
    if "timeout" in statuses or solution_exit in CPU_KILLS:
        return SandboxResult("timeout", tests, "", mode)
    if "exited" in statuses:
        return SandboxResult("wrong", tests, f"the solution's process exited (status {solution_exit})", mode)
    return SandboxResult("error", tests, "a test passes a value that cannot cross the sandbox boundary", mode)

"""Run untrusted code against assert-style tests (HumanEval, MBPP), deciding the verdict
where the code cannot reach.

Two boxes (`sandbox_box`: bubblewrap, each with its own PID namespace and uid) joined by
two pipes:
- the *solution box* loads the model's code and then only answers calls: "call f with
  these arguments" -> the return value (or the exception's type and message);
- the *test box* runs the test program. There the entry point, and each name the test
  program uses without defining that the solution defines, is a proxy that sends the call
  to the solution box and returns its answer, decoded into plain built-in values (no object
  of the solution's crosses, so no `__eq__` that always says yes). Builtins are never
  proxied (a solution's `abs` or `sorted` is its own business), nor are the helpers of the
  problem's prompt (`prelude`: HumanEval's `poly`), which run in the test box as the
  problem wrote them. Without an entry point (MBPP) a function named like a builtin is
  proxied only when the tests call no other function of the solution (`sum` of task 126).
  A standard module the tests use without importing (MBPP's `math`) is imported by the
  test box itself.
  The test box reports each assert's outcome on its stdout, which only curate reads.

So the model's code never shares an interpreter, a process or a PID namespace with the
test program or the verdict: it can return wrong values, crash, hang or flood, and the
verdict says so, but it cannot print a verdict, patch `AssertionError`, replace what the
tests compute with, or end the tests early with exit status 0.

What crosses the boundary: None, bool, int (any size), float (inf and nan too), str,
bytes, complex, list, tuple, dict, set, frozenset, nested; a subclass as its base
(Counter and defaultdict as dict, a namedtuple as tuple: equal to the same plain values,
though a test reading a namedtuple's field fails). Anything else (a lambda, an object of a
class the solution defines, in either direction) is `unsupported` and the row's verdict
`error` (undecided), never a verdict on the solution. Arguments are copies: a solution
that is meant to change its argument in place is not seen to.

Time is CPU time, the code's own, whatever the machine's load: each test's calls, and
loading the code, get `test_timeout_s` CPU seconds (a timer in the solution box), each box
`cpu_seconds` in all (RLIMIT_CPU); over either the verdict is `timeout`. Wall clock is only
a backstop (`SandboxLimits.backstop_factor`): a hit means the code waited or the machine
starved it, which cannot be told apart, so the row is `error` (undecided: never counted
correct, never wrong). A box that exits before its harness starts (bwrap failing to set
up) is `error` too, with bwrap's message.

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
from typing import BinaryIO

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
# A subclass crosses as its built-in base (Counter and defaultdict as dict, a namedtuple as tuple):
# equality with a plain value is the base's. Anything else is Unsendable: undecided, not wrong.
_CODEC = r'''
import json, math, sys
sys.set_int_max_str_digits(0)  # an exact answer of any size (factorial(1800)) crosses

class Unsendable(TypeError):
    pass

def encode(value, depth=0):
    if depth > 200:
        raise Unsendable("value nested over 200 deep")
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        value = int(value)
        return value if -2**53 < value < 2**53 else {"int": str(value)}
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in list(value)]
    for base in (tuple, set, frozenset):
        if isinstance(value, base):
            return {base.__name__: [encode(v, depth + 1) for v in base(value)]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(value)]}
    if isinstance(value, bytes):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    raise Unsendable(f"a {type(value).__name__} cannot cross the sandbox boundary")

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

# The solution box: say it started (before any of the model's code runs: a box that exits before
# this failed to start, which is not the code's fault), load the code, say which callables it
# defines, then answer calls. Loading and each call run under a CPU-time budget (ITIMER_PROF);
# code that catches the first expiry is killed at the next, 50 ms of CPU later, and the box's
# RLIMIT_CPU bounds the whole program whatever the code does to its timer.
_SOLUTION_HARNESS = _CODEC + r'''
import inspect, os, signal
calls, answers = open(int(sys.argv[2]), "rb"), open(int(sys.argv[3]), "wb")

def send(message):
    answers.write(json.dumps(message).encode() + b"\n")
    answers.flush()

class CpuTimeout(BaseException):
    pass

def on_cpu_timeout(signum, frame):
    on_cpu_timeout.fired += 1
    if on_cpu_timeout.fired > 1:  # the code caught the first: end the box, which reads as a CPU kill
        os.kill(os.getpid(), signal.SIGKILL)
    raise CpuTimeout()

def budgeted(seconds, work):
    """(work(), CPU seconds it used); raises CpuTimeout past `seconds`."""
    on_cpu_timeout.fired = 0
    signal.setitimer(signal.ITIMER_PROF, seconds, 0.05)
    try:
        return work()
    finally:
        left = signal.getitimer(signal.ITIMER_PROF)[0]
        signal.setitimer(signal.ITIMER_PROF, 0)
        budgeted.used = seconds - left if left else seconds
budgeted.used = 0.0

signal.signal(signal.SIGPROF, on_cpu_timeout)
quiet = os.open(os.devnull, os.O_WRONLY)
os.dup2(quiet, 1)
os.dup2(quiet, 2)  # the box's stderr (kept by curate) holds only what came before the model's code
send({"started": True})
namespace = {"__name__": "__main__"}
source = open(sys.argv[1]).read()
try:
    budgeted(float(sys.argv[4]), lambda: exec(compile(source, "solution.py", "exec"), namespace))
except CpuTimeout:
    send({"timeout": "loading the solution took over %ss of CPU" % sys.argv[4]})
    raise SystemExit(1)
except BaseException as error:
    send({"load_error": f"{type(error).__name__}: {error}"[:300]})
    raise SystemExit(1)
send({"names": [n for n, v in namespace.items() if callable(v) and not inspect.ismodule(v) and not n.startswith("__")]})
for line in calls:
    call = json.loads(line)
    budgeted.used = 0.0
    try:
        function, args, kwargs = namespace[call["name"]], decode(call["args"]), dict(decode(call["kwargs"]))
        value = budgeted(call["cpu_s"], lambda: function(*args, **kwargs))
        answer = {"value": encode(value)}
    except CpuTimeout:
        answer = {"timeout": "over %ss of CPU" % call["cpu_s"]}
    except Unsendable as error:
        answer = {"unsendable": str(error)[:300]}
    except BaseException as error:
        answer = {"raised": type(error).__name__, "message": str(error)[:300]}
    answer["cpu_used"] = budgeted.used
    send(answer)
'''

# The test box: run the test program with proxies for the solution's functions; print the report.
# Proxied are the entry point and the names the test program uses without defining, that are not
# builtins and not helpers of the problem's own prompt (`prelude`, trusted text that runs here):
# a solution defining `abs`, `sorted` or the prompt's `poly` does not change them for the tests.
_TEST_HARNESS = _CODEC + r'''
import ast, builtins, os, signal
spec = json.loads(sys.stdin.read())
calls, answers = open(int(sys.argv[1]), "wb"), open(int(sys.argv[2]), "rb")
report_out = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr = open(os.devnull, "w")
MAX_ANSWER = spec["max_answer_bytes"]

class SolutionExited(Exception):
    pass

class Unsupported(Exception):
    """The test passes or gets something that cannot cross: not the solution's fault."""

class CpuTimeLimit(Exception):
    """The solution used the test's CPU time: its fault."""

class WallBackstop(BaseException):
    """Wall clock ran out with the CPU budget left: machine load or a solution that waits; undecided."""

def on_alarm(signum, frame):
    raise WallBackstop()

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
cpu_left = spec["test_cpu_s"]  # of the current test

def proxy(name):
    def call(*args, **kwargs):
        global solution_failed, cpu_left
        solution_failed = True
        if cpu_left <= 0:
            raise CpuTimeLimit("over %ss of CPU" % spec["test_cpu_s"])
        try:
            message = json.dumps({"name": name, "args": encode(list(args)), "kwargs": encode(kwargs),
                                  "cpu_s": cpu_left})
        except (TypeError, ValueError) as error:
            raise Unsupported(str(error)) from None
        try:
            calls.write(message.encode() + b"\n")
            calls.flush()
        except BrokenPipeError:
            raise SolutionExited("the solution's process exited") from None
        answer = receive()
        used = answer.get("cpu_used")
        cpu_left -= used if isinstance(used, (int, float)) and used > 0 else 0
        if "timeout" in answer:
            raise CpuTimeLimit(str(answer["timeout"]))
        if "unsendable" in answer:
            raise Unsupported(str(answer["unsendable"]))
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

def split_tests(tree):
    """(setup statements, [assert], check body or None)."""
    setup, tests, check = [], [], None
    for node in tree.body:
        if isinstance(node, ast.Assert):
            tests.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "check" and spec["entry_point"]:
            check = node
        else:
            setup.append(node)
    return setup, tests, check

def free_names(tree):
    """Names the test program reads and never binds (anywhere: scopes are not told apart)."""
    used, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return used - bound

def inferred_entry(tree, names, free):
    """Without an entry point: the first function the tests call that the solution defines, one
    that is not a builtin if there is one (MBPP's `assert sum(10, 15) == 6` tests a `sum`)."""
    called = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id in free and n.func.id in names]
    return next((n for n in called if not hasattr(builtins, n)), called[0] if called else None)

def prelude():
    """The problem prompt's imports, functions and classes (HumanEval's `poly`), run here."""
    namespace = {"__name__": "__main__"}
    try:
        tree = ast.parse(spec["prelude"] or "")
    except (SyntaxError, ValueError):
        return namespace
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) \
                and getattr(node, "name", None) != spec["entry_point"]:
            try:
                run([node], namespace, "prompt")
            except Exception:
                pass  # a prompt import this Python lacks: the solution may still not need it
    return namespace

def standard_modules(wanted):
    """MBPP's tests use `math` without importing it (its `test_imports`, or the solution's own
    import in a shared namespace): a standard module the tests name is imported here, the real one."""
    modules = {}
    for name in wanted & sys.stdlib_module_names:
        try:
            modules[name] = __import__(name)
        except Exception:
            pass  # not built into this Python: the test fails on the name as it would anyway
    return modules

results = []
def record(name, status, message=""):
    results.append({"name": name, "status": status, "message": message[:300]})

def run(nodes, namespace, name):
    exec(compile(ast.Module(body=nodes, type_ignores=[]), name, "exec"), namespace)

def run_test(name, nodes, namespace):
    global cpu_left
    cpu_left = spec["test_cpu_s"]
    signal.setitimer(signal.ITIMER_REAL, spec["test_wall_s"])
    try:
        run(nodes, namespace, name)
        record(name, "pass")
    except AssertionError as error:
        record(name, "fail", str(error))
    except CpuTimeLimit as error:
        record(name, "timeout", str(error))
    except WallBackstop:
        record(name, "backstop", "over %ss of wall clock, CPU time left (load?)" % spec["test_wall_s"])
    except Unsupported as error:
        record(name, "unsupported", str(error))
    except SolutionExited as error:
        record(name, "exited", str(error))
    except BaseException as error:
        record(name, "error", f"{type(error).__name__}: {error}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return results[-1]["status"] not in ("timeout", "backstop", "exited")  # the solution can answer no more

def hello():
    """The solution box's first two messages: started, then the names it defines (or why not)."""
    signal.setitimer(signal.ITIMER_REAL, spec["test_wall_s"])
    try:
        try:
            started = receive()
        except SolutionExited:
            return "box: the solution's box exited before its harness started"
        if started != {"started": True}:
            return "error: loading the solution: unreadable start message"
        answer = receive()
    except WallBackstop:
        return "backstop: loading the solution took over %ss of wall clock" % spec["test_wall_s"]
    except (SolutionExited, ValueError) as error:
        return f"error: loading the solution: {error}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if "timeout" in answer:
        return "timeout: " + str(answer["timeout"])[:300]
    if "load_error" in answer:
        return "error: loading the solution: " + str(answer["load_error"])[:300]
    if not isinstance(answer.get("names"), list):
        return "error: loading the solution: it did not say which functions it defines"
    return {str(name) for name in answer["names"]}

def main():
    try:
        tree = ast.parse(spec["test"])
    except SyntaxError as error:
        return f"test program does not parse: {error}"
    setup, tests, check = split_tests(tree)
    names = hello()
    if isinstance(names, str):
        return names
    namespace = prelude()
    free = free_names(tree)
    entry = spec["entry_point"] or inferred_entry(tree, names, free)
    proxied = {n for n in free if n in names and not hasattr(builtins, n) and n not in namespace}
    if entry in names:
        proxied.add(entry)
    namespace.update({name: proxy(name) for name in proxied})
    namespace.update(standard_modules(free - set(namespace)))
    if check is not None and entry not in names:
        return f"error: the solution does not define {entry}"
    try:
        run(setup, namespace, "test_setup")
    except BaseException as error:
        # a call to the solution in the setup failed: the solution's fault, not the tests'
        blame = "error: the solution failed in the test setup" if solution_failed else "test program setup failed"
        return f"{blame}: {type(error).__name__}: {error}"[:300]
    groups = [(f"assert_{i}", [node]) for i, node in enumerate(tests)]
    if check is not None:
        namespace["candidate"] = namespace[entry]
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
    """CPU time decides `timeout` (the code's own use, whatever the machine's load); wall clock is
    only a backstop, `backstop_factor` times the CPU time (a second more per test, two for the
    boxes' starts), whose hit cannot be blamed on the code and leaves the row undecided (`error`)."""
    test_timeout_s: float = 3.0  # CPU seconds for one test's calls to the solution (and for loading it)
    cpu_seconds: int = 10  # CPU seconds for each box's whole program (RLIMIT_CPU)
    backstop_factor: float = 4.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 4
    tmp_bytes: int = 64 << 20
    max_answer_bytes: int = 16 << 20  # one return value, as it crosses the boundary

    @property
    def test_wall_s(self) -> float:
        return self.backstop_factor * (self.test_timeout_s + 1)

    @property
    def wall_s(self) -> float:
        return self.backstop_factor * (self.cpu_seconds + 2)

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


_STDERR_KEPT = 2000  # bytes of the solution box's stderr shown when the box did not start


def run_tests(code: str, test: str, entry_point: str | None, limits: SandboxLimits | None = None,
              isolation: Isolation = Isolation.BWRAP, prelude: str | None = None) -> SandboxResult:
    """Run `code` in a solution box and the tests of `test` in a test box (module doc);
    `prelude`, the problem's prompt, is trusted: its helper functions run with the tests."""
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
        spec = {"test": test, "entry_point": entry_point, "prelude": prelude, "test_cpu_s": limits.test_timeout_s,
                "test_wall_s": limits.test_wall_s, "max_answer_bytes": limits.max_answer_bytes}
        with open(Path(temp_dir, "solution.stderr"), "w+b") as stderr:
            report, solution_exit = _run_boxes(inside / "solution.py", box_dir, spec, limits, isolation, stderr)
            stderr.seek(0)
            box_errors = stderr.read(_STDERR_KEPT).decode(errors="replace").strip()
    return _result(report, solution_exit, isolation.value, box_errors)


def _run_boxes(solution: Path, box_dir: Path, spec: dict, limits: SandboxLimits,
               isolation: Isolation, stderr: BinaryIO) -> tuple[dict | str, int | None]:
    """(the test box's report or why there is none, the solution box's exit status if it ended).
    The solution box's stderr goes to `stderr` until its harness starts (then to /dev/null)."""
    python = [python_executable(), "-I", "-S", "-B", "-c"]
    calls_read, calls_write = os.pipe()
    answers_read, answers_write = os.pipe()
    boxes: list[subprocess.Popen] = []
    try:
        with _closing(calls_read, answers_write, also_on_error=(calls_write, answers_read)):
            boxes.append(start(
                box_command([*python, _SOLUTION_HARNESS, str(solution), str(calls_read), str(answers_write),
                             str(spec["test_cpu_s"])], limits.box(), isolation, box_dir),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                pass_fds=(calls_read, answers_write)))
        with _closing(calls_write, answers_read):
            boxes.append(start(
                box_command([*python, _TEST_HARNESS, str(calls_write), str(answers_read)], limits.box(), isolation),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(calls_write, answers_read)))
        solution_box, test_box = boxes
        try:
            stdout, stderr_text = test_box.communicate(json.dumps(spec).encode(), timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            return f"backstop: over {limits.wall_s}s of wall clock for the whole program", _exit_status(solution_box)
        lines = stdout.decode(errors="replace").splitlines()
        if test_box.returncode != 0 or not lines:
            return (f"error: the test box exit {test_box.returncode}: {stderr_text.decode(errors='replace')[-300:]}",
                    None)
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


def _result(report: dict | str, solution_exit: int | None, mode: str, box_errors: str) -> SandboxResult:
    if isinstance(report, str):  # no report: the test box failed or the wall-clock backstop hit
        status = "timeout" if solution_exit in CPU_KILLS else "error"
        return SandboxResult(status, message=report, mode=mode)
    tests, summary = report["tests"], report["status"]
    if summary.startswith("box:"):  # bwrap (or Python) failed before any of the code ran: not its fault
        return SandboxResult("error", tests, f"{summary}: {box_errors[-300:] or 'no message'}", mode)
    if summary != "ok":
        # The solution failing to load is the solution's fault; a broken test program, or the
        # wall clock running out while the code had CPU time left (load?), is not.
        solution_fault = summary.startswith(("error: loading", "error: the solution"))
        status = ("timeout" if summary.startswith("timeout") or solution_exit in CPU_KILLS
                  else "wrong" if solution_fault else "error")
        return SandboxResult(status, tests, summary, mode)
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
    if "backstop" in statuses:
        return SandboxResult("error", tests, "the wall-clock backstop hit with CPU time left: undecided", mode)
    return SandboxResult("error", tests, "a value that cannot cross the sandbox boundary", mode)

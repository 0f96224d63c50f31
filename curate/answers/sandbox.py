"""Run untrusted code against tests in a subprocess sandbox.

Layers, outermost first:
- Kernel isolation when the machine allows it (Linux, root or user namespaces; probed
  once): `unshare --net --mount` gives the child an empty network namespace; in its own
  mount namespace every mount is remounted read-only except the run's temp dir, the
  project checkout is hidden under an empty tmpfs, and `setpriv` drops every capability
  so the code cannot undo any of it.
- Resource limits (setrlimit): address space, CPU seconds, file size, open files,
  processes, no core dumps; plus a wall-clock timeout that kills the process group.
- The harness (`_HARNESS`, run as `python -I -S`: no site-packages, no user paths, cleared
  environment, cwd = temp dir) installs a Python audit hook that refuses sockets,
  subprocesses, ctypes, writes outside the temp dir and reads of the project. This is the
  only guard where namespaces are unavailable; it stops honest mistakes and casual
  escapes, not a determined attacker (`mode` in the result says which layers ran).

Tests are the `assert` statements of the test program: top-level ones (MBPP) and those in
the body of `check(candidate)` (HumanEval), each run and reported on its own.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Runs inside the sandbox. Reads {code, test, entry_point, nonce, ...} as JSON on stdin and
# prints one line "<nonce><json results>" on the real stdout when done.
_HARNESS = r'''
import ast, json, os, signal, sys
spec = json.loads(sys.stdin.read())
temp_dir, hidden = spec["temp_dir"], spec["hidden"]
result_out = os.fdopen(os.dup(1), "w")
devnull = open(os.devnull, "w")

def inside(path, root):
    path = os.path.realpath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")

DENIED = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
          "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
          "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "sys.addaudithook"}
WRITES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
          "os.chown", "os.truncate", "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.utime"}

def hook(event, args):
    if event in DENIED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        mode, flags = args[1] or "r", args[2] or 0
        writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and not inside(path, temp_dir) and path != os.devnull:
            raise PermissionError(f"sandbox: writing {path} outside the temp dir is not allowed")
        if any(inside(path, root) for root in hidden):
            raise PermissionError(f"sandbox: reading {path} is not allowed")
    if event in WRITES and args and isinstance(args[0], (str, bytes, os.PathLike)):
        if not inside(os.fsdecode(args[0]), temp_dir):
            raise PermissionError(f"sandbox: {event} outside the temp dir is not allowed")

def split_tests(test_program):
    """(setup statements, [(name, statement)]): the asserts of the module and of check()."""
    module = ast.parse(test_program)
    setup, tests, check_body = [], [], None
    for node in module.body:
        if isinstance(node, ast.Assert):
            tests.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "check" and spec["entry_point"]:
            check_body = node
        else:
            setup.append(node)
    return setup, tests, check_body

def on_alarm(signum, frame):
    raise TimeoutError("test timed out")

def run_statements(nodes, namespace, name):
    code = compile(ast.Module(body=nodes, type_ignores=[]), name, "exec")
    exec(code, namespace)

results = []
def record(name, status, message=""):
    results.append({"name": name, "status": status, "message": message[:300]})

def run_test(name, nodes, namespace):
    signal.setitimer(signal.ITIMER_REAL, spec["test_timeout_s"])
    try:
        run_statements(nodes, namespace, name)
        record(name, "pass")
    except AssertionError as error:
        record(name, "fail", str(error))
    except TimeoutError:
        record(name, "timeout", "over %ss" % spec["test_timeout_s"])
    except BaseException as error:
        record(name, "error", f"{type(error).__name__}: {error}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

signal.signal(signal.SIGALRM, on_alarm)
sys.addaudithook(hook)
sys.stdout = sys.stderr = devnull
namespace = {"__name__": "__main__"}
status = "ok"
try:
    setup, tests, check = split_tests(spec["test"])
except SyntaxError as error:
    status = f"test program does not parse: {error}"
if status == "ok":
    try:
        signal.setitimer(signal.ITIMER_REAL, spec["test_timeout_s"])
        exec(compile(spec["code"], "solution.py", "exec"), namespace)
        run_statements(setup, namespace, "test_setup")
    except TimeoutError:
        status = "timeout: loading the solution took over %ss" % spec["test_timeout_s"]
    except BaseException as error:
        status = f"error: loading the solution: {type(error).__name__}: {error}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
if status == "ok":
    for index, node in enumerate(tests):
        run_test(f"assert_{index}", [node], namespace)
    if check is not None:
        if spec["entry_point"] not in namespace:
            status = f"error: the solution does not define {spec['entry_point']}"
        else:
            namespace["candidate"] = namespace[spec["entry_point"]]
            body_setup = []
            for index, node in enumerate(check.body):
                if isinstance(node, ast.Assert):
                    run_test(f"check_{index}", body_setup + [node], namespace)
                    body_setup = []
                else:
                    body_setup.append(node)
result_out.write(spec["nonce"] + json.dumps({"status": status, "tests": results}) + "\n")
result_out.flush()
'''


@dataclass
class SandboxLimits:
    wall_timeout_s: float = 10.0
    test_timeout_s: float = 3.0
    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 64


@dataclass
class SandboxResult:
    status: str  # correct | wrong | timeout | error
    tests: list[dict] = field(default_factory=list)
    message: str = ""
    mode: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "correct"


def _set_limits(limits: SandboxLimits) -> None:
    os.setsid()
    for name, value in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(name, (value, value))


# Runs as root in the new namespaces, then drops all capabilities before the harness starts.
_ISOLATE = r"""
set -e
temp_dir="$1"; hide="$2"; shift 2
mount --bind "$temp_dir" "$temp_dir"
awk '{print $2}' /proc/self/mounts | while read -r point; do
  mount -o remount,bind,ro "$point" 2>/dev/null || true
done
mount -o remount,bind,rw "$temp_dir"
mount -t tmpfs -o size=4k,ro tmpfs "$hide"
cd "$temp_dir"  # the old cwd still points into the read-only mount below the bind
exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"
"""


@functools.lru_cache(maxsize=1)
def kernel_isolation_available() -> bool:
    """Whether unshare + mount + setpriv work here (they need root or user namespaces).
    No `--fork`: the sandboxed process is then our direct child, so a kill by a limit
    (SIGKILL at the CPU limit) shows in its exit status instead of unshare's exit 1."""
    if sys.platform != "linux" or not all(shutil.which(t) for t in ("unshare", "setpriv", "mount")):
        return False
    with tempfile.TemporaryDirectory(prefix="curate-probe-") as temp_dir:
        try:
            probe = subprocess.run(
                ["unshare", "--net", "--mount", "--", "sh", "-c", _ISOLATE, "sh",
                 temp_dir, str(_PROJECT_ROOT), "true"],
                capture_output=True, timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return probe.returncode == 0


def _python() -> str:
    # The base interpreter: a venv's python may live inside the (hidden) project.
    return os.path.realpath(sys.executable)


def run_tests(code: str, test: str, entry_point: str | None, limits: SandboxLimits | None = None,
              isolate: bool = True) -> SandboxResult:
    """Run `code` then the tests of `test` in a fresh sandbox; `isolate=False` skips the
    kernel layer (the audit hook and limits still apply)."""
    limits = limits or SandboxLimits()
    use_kernel = isolate and kernel_isolation_available()
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="curate-sandbox-") as temp_dir:
        temp_dir = os.path.realpath(temp_dir)
        harness = Path(temp_dir, "harness.py")
        harness.write_text(_HARNESS)
        command = [_python(), "-I", "-S", "-B", str(harness)]
        if use_kernel:
            command = ["unshare", "--net", "--mount", "--", "sh", "-c", _ISOLATE, "sh",
                       temp_dir, str(_PROJECT_ROOT), *command]
        spec = {"code": code, "test": test, "entry_point": entry_point, "nonce": nonce,
                "temp_dir": temp_dir, "hidden": [str(_PROJECT_ROOT)],
                "test_timeout_s": limits.test_timeout_s}
        env = {"PATH": "/usr/bin:/bin", "HOME": temp_dir, "TMPDIR": temp_dir, "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            command, cwd=temp_dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=functools.partial(_set_limits, limits),
        )
        mode = "namespaces+rlimits+audit" if use_kernel else "rlimits+audit"
        try:
            stdout, stderr = process.communicate(json.dumps(spec).encode(), timeout=limits.wall_timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return SandboxResult("timeout", message=f"wall time over {limits.wall_timeout_s}s", mode=mode)
    return _result(stdout.decode(errors="replace"), stderr.decode(errors="replace"), process.returncode,
                   nonce, mode)


def _result(stdout: str, stderr: str, returncode: int, nonce: str, mode: str) -> SandboxResult:
    lines = [line for line in stdout.splitlines() if line.startswith(nonce)]
    if not lines:
        killed = returncode < 0 and -returncode in (signal.SIGXCPU, signal.SIGKILL)
        status = "timeout" if killed else "error"
        return SandboxResult(status, message=f"exit {returncode}: {stderr[-300:]}", mode=mode)
    report = json.loads(lines[-1][len(nonce):])
    tests = report["tests"]
    if report["status"] != "ok":
        # The solution failing to load is the solution's fault; a broken test program is not.
        solution_fault = report["status"].startswith(("error: loading", "error: the solution"))
        status = "timeout" if report["status"].startswith("timeout") else "wrong" if solution_fault else "error"
        return SandboxResult(status, tests, report["status"], mode)
    if not tests:
        return SandboxResult("error", tests, "the test program has no assert statements", mode)
    statuses = {test["status"] for test in tests}
    status = "correct" if statuses == {"pass"} else "wrong" if statuses & {"fail", "error"} else "timeout"
    return SandboxResult(status, tests, "", mode)

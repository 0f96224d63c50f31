"""The box that model-written code runs in: bubblewrap (`bwrap`, Debian package `bubblewrap`).

Each box is a fresh bwrap with new PID, network, IPC, UTS and cgroup namespaces (it cannot
see or signal curate, and has no network, not even loopback), an empty environment, a new
session (no terminal), and a file system holding only `/usr` (with its `/bin`, `/lib`
links), the Python installation (its site-packages hidden), `/proc` of its own PID
namespace, a minimal `/dev`, a private tmpfs `/tmp`, and whatever the caller binds at
`/box`. No home folders, no `/etc`, no project, no caches, no sockets. When curate's
process (bwrap's parent) dies, the box dies with it; when the box's first process exits,
the kernel kills every process left in its PID namespace (no `setsid` child outlives it).

Inside, the code runs under an unprivileged uid, after `prlimit` set its limits:
- As root (the usual container), bwrap runs without a user namespace and `setpriv` drops
  to a uid drawn at random for this box, with no capabilities and no new privileges. The
  process limit (RLIMIT_NPROC) counts processes per uid, so it binds the whole box.
- As another user, bwrap makes a user namespace (uid 65534 inside). The kernel counts
  RLIMIT_NPROC per user namespace (Linux >= 5.14), so the limit again binds the box alone.
Memory is limited per process (RLIMIT_AS) and for `/tmp` (a tmpfs of `tmp_bytes`); with the
process limit the whole box holds at most processes x memory + tmp_bytes. CPU seconds,
file size, open files and core dumps are limited too.

`Isolation.UNSAFE` runs the same command lines without bwrap and without a uid change
(rlimits only): model code can then read the machine's files and environment, signal
curate and use the network. A recipe must ask for it by name.
"""

from __future__ import annotations

import functools
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

BOX_DIR = "/box"  # where the caller's folder appears inside the box


class Isolation(StrEnum):
    BWRAP = "bwrap"
    UNSAFE = "unsafe-no-isolation"


class IsolationUnavailable(RuntimeError):
    """bwrap cannot build a box on this machine."""


@dataclass(frozen=True)
class BoxLimits:
    memory_bytes: int = 1 << 30  # per process (RLIMIT_AS)
    cpu_seconds: int = 10
    file_bytes: int = 16 << 20
    open_files: int = 64
    processes: int = 4  # for the whole box, its own processes included
    tmp_bytes: int = 64 << 20  # the box's /tmp, a tmpfs: memory too


def python_prefix() -> Path:
    """The installation of the interpreter curate runs on (a venv's python may live in the
    project, which the box does not show)."""
    return Path(sys.base_prefix).resolve()


def python_executable() -> str:
    return os.path.realpath(sys.executable)


def _site_packages() -> list[str]:
    """Site-packages folders inside the Python installation: hidden in the box."""
    prefix = python_prefix()
    return [str(p) for p in prefix.glob("lib/python3*/site-packages") if p.is_dir()]


def _dirs_above(path: Path) -> list[str]:
    """bwrap creates a bind's missing parents with mode 0700, which the unprivileged uid
    cannot cross: create them 0755 first."""
    return [arg for parent in reversed(path.parents) if str(parent) != "/"
            for arg in ("--perms", "0755", "--dir", str(parent))]


def _bwrap_args(box_dir: Path | None, box_writable: bool, tmp_bytes: int) -> list[str]:
    as_root = os.geteuid() == 0
    namespaces = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
                  if as_root else ["--unshare-all", "--uid", "65534", "--gid", "65534"])
    prefix = python_prefix()
    mounts = ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib32", "lib64", "sbin"):
        if Path("/usr", link).is_dir():
            mounts += ["--symlink", f"usr/{link}", f"/{link}"]
    if not str(prefix).startswith("/usr/"):
        mounts += [*_dirs_above(prefix), "--ro-bind", str(prefix), str(prefix)]
    for folder in _site_packages():
        mounts += ["--tmpfs", folder]
    mounts += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    if box_dir is not None:
        mounts += ["--bind" if box_writable else "--ro-bind", str(box_dir), BOX_DIR]
    return ["bwrap", *namespaces, "--die-with-parent", "--new-session", *mounts,
            "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--"]


def _drop_to_random_uid() -> list[str]:
    uid = str(1_000_000 + secrets.randbelow(1_000_000_000))
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def _prlimit_args(limits: BoxLimits) -> list[str]:
    return ["prlimit", f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_seconds}",
            f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}",
            f"--nproc={limits.processes}", "--core=0", "--"]


def box_command(argv: list[str], limits: BoxLimits, isolation: Isolation,
                box_dir: Path | None = None, box_writable: bool = False) -> list[str]:
    """The command line that runs `argv` in a fresh box; `box_dir` shows at /box.
    Unsafe: `argv` under the limits only, and /box paths must be given as host paths."""
    if isolation is Isolation.UNSAFE:
        return [*_prlimit_args(limits), *argv]
    drop = _drop_to_random_uid() if os.geteuid() == 0 else []
    return [*_bwrap_args(box_dir, box_writable, limits.tmp_bytes), *drop, *_prlimit_args(limits), *argv]


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """Why bwrap cannot build a box here, or None when it can (probed once per process)."""
    if sys.platform != "linux":
        return f"bubblewrap needs Linux, not {sys.platform}"
    missing = [tool for tool in ("bwrap", "prlimit", "setpriv") if not shutil.which(tool)]
    if missing:
        return f"{', '.join(missing)} not found (install the 'bubblewrap' and 'util-linux' packages)"
    command = box_command([python_executable(), "-I", "-S", "-c", "pass"], BoxLimits(), Isolation.BWRAP)
    try:
        probe = subprocess.run(command, capture_output=True, timeout=30, stdin=subprocess.DEVNULL, env=_ENVIRONMENT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap did not run: {error}"
    if probe.returncode != 0:
        reason = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap failed (exit {probe.returncode}): {reason[-1] if reason else 'no message'}"
    return None


def require(isolation: Isolation) -> None:
    """Raise IsolationUnavailable when `isolation` asks for bwrap and this machine cannot
    give it; never a silent fallback to running unisolated."""
    if isolation is Isolation.BWRAP and (reason := _probe()) is not None:
        raise IsolationUnavailable(reason)


# Exit statuses of a box whose program was killed at its CPU limit: the signal itself
# (unsafe mode) or bwrap's 128 + signal.
CPU_KILLS = {-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL}


@dataclass
class BoxRun:
    returncode: int | None  # None: killed at the wall-clock limit
    stdout: bytes
    over_cap: bool  # stdout passed `output_cap` bytes; the box was killed
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None and not self.over_cap


# What a box's command starts with (bwrap clears it again inside); none of curate's variables.
_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}


def start(command: list[str], **popen) -> subprocess.Popen:
    """A box's process, in a process group of its own (killed as one at the end)."""
    return subprocess.Popen(command, start_new_session=True, env=_ENVIRONMENT, **popen)


def kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_capped(command: list[str], stdin: bytes, timeout_s: float, output_cap: int,
               merge_stderr: bool = False) -> BoxRun:
    """Run `command` feeding `stdin`, reading its stdout (and stderr with `merge_stderr`)
    incrementally: past `output_cap` bytes or `timeout_s` seconds the box is killed, so
    curate never holds more than the cap."""
    began = time.monotonic()
    stderr = subprocess.STDOUT if merge_stderr else subprocess.DEVNULL
    process = start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdin is not None and process.stdout is not None
    chunks: list[bytes] = []
    size, over_cap, pending = 0, False, memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdout, selectors.EVENT_READ)
        if pending:
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        while not over_cap and selector.get_map() and (left := began + timeout_s - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                if key.fileobj is process.stdin:
                    pending = _feed(process.stdin, pending, selector)
                    continue
                chunk = os.read(process.stdout.fileno(), 1 << 16)
                if not chunk:
                    selector.unregister(process.stdout)
                size += len(chunk)
                over_cap = size > output_cap
                if over_cap:
                    break
                chunks.append(chunk)
    finished = not over_cap and _wait(process, began + timeout_s - time.monotonic())
    returncode = process.returncode if finished else None
    kill(process)
    for stream in (process.stdin, process.stdout):
        if not stream.closed:
            stream.close()
    return BoxRun(returncode, b"".join(chunks), over_cap, time.monotonic() - began)


def _feed(stream, pending: memoryview, selector: selectors.BaseSelector) -> memoryview:
    try:
        written = os.write(stream.fileno(), pending[: 1 << 16])
    except BrokenPipeError:  # the program stopped reading its input: its business
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(stream)
        stream.close()
    return pending


def _wait(process: subprocess.Popen, left: float) -> bool:
    try:
        process.wait(max(left, 0.0))
    except subprocess.TimeoutExpired:
        return False
    return True

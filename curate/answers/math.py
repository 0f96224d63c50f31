"""Math answer checking: a fast path in the calling process, math-verify in worker processes.

Most pairs need no parser: answers equal once presentation is stripped (`presented`:
`$`, `\\text{}`, units, `\\%`, a trailing period), multiple-choice letters, text answers
(dates, times, names) and plain numbers are decided here. The rest go to math-verify in
worker processes, each pair once (`verify_pairs` drops repeats and reads and fills a
`VerdictCache`).

Workers are plain subprocesses (`python -c ...`) speaking JSON lines over pipes, not a
multiprocessing pool: they never import the caller's `__main__`, so a script without an
`if __name__ == "__main__"` guard works. Time limits are CPU time, not wall time, so a
loaded machine gives the same verdicts: a SIGPROF timer bounds each parse and comparison
(`timeout_s` CPU seconds), and RLIMIT_CPU kills a worker stuck in C code where the timer
cannot reach. A worker that dies otherwise is replaced and its pair retried once, alone;
a pair that kills its worker twice comes back as `error` with a reason starting
`CRASH_REASON`, which is never cached (a rerun retries it).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from importlib.metadata import version
from pathlib import Path

from curate.answers.cache import Verdict, VerdictCache
from curate.answers.normalise import (
    RULES_VERSION,
    bracketed_like,
    choice_of,
    is_text_answer,
    presented,
    presented_latex,
    quantity,
    text_key,
    unwrapped,
)

__all__ = ["VERIFIER", "Verdict", "decide", "verify_one", "verify_pairs"]

VERIFIER = f"curate-rules/{RULES_VERSION}+math-verify/{version('math-verify')}"
CRASH_REASON = "verifier process crashed"
# Wall-clock bound on one pair, only for a worker that hangs without using CPU (the CPU
# limits catch everything else): far above any CPU limit, so load never reaches it.
_HANG_S = 300.0
_PAIRS_PER_WORKER = 100


def decide(reference: str, answer: str, relative_tolerance: float = 0.0) -> Verdict | None:
    """The verdict when no parser is needed, else None. Numbers (with a unit after them on
    one side, or the same unit on both) are equal within `relative_tolerance` of the larger."""
    ref, got = presented(reference), presented(answer)
    if ref == got or bracketed_like(got, ref) == ref:
        return Verdict(True, "correct", "same value as presented")
    if letter := choice_of(ref):
        return Verdict(choice_of(got) == letter, "correct" if choice_of(got) == letter else "wrong",
                       "multiple-choice letter")
    if is_text_answer(ref):
        same = text_key(unwrapped(reference)) == text_key(unwrapped(answer)) or text_key(ref) == text_key(got)
        return Verdict(same, "correct" if same else "wrong", "text answer")
    if (numbers := _numbers(reference, answer)) is not None:
        same = math.isclose(*numbers, rel_tol=max(relative_tolerance, 1e-9), abs_tol=1e-12)
        return Verdict(same, "correct" if same else "wrong",
                       f"numbers within {relative_tolerance:g}" if relative_tolerance else "plain numbers")
    return None


def _numbers(reference: str, answer: str) -> tuple[float, float] | None:
    """The two values when both answers are numbers in one unit, or one of them names none
    ("6630" and "6630.65 Å"); None otherwise ("5 km" and "5 m" go to the parser)."""
    ref, got = quantity(presented_latex(reference)), quantity(presented_latex(answer))
    if ref is None or got is None or (ref[1] and got[1] and ref[1] != got[1]):
        return None
    return ref[0], got[0]


class _CpuTimeout(BaseException):
    """Raised by the SIGPROF timer; a BaseException so that no `except Exception` in
    math-verify or sympy swallows it."""


def _cpu_limited(work, seconds: float):
    def expire(signum, frame):
        raise _CpuTimeout

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        return work()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def verify_one(reference: str, answer: str, timeout_s: float) -> Verdict:
    """Compare one answer with its reference; math-verify gets `timeout_s` CPU seconds
    per parse and for the comparison. Call in a process's main thread (a worker)."""
    if (verdict := decide(reference, answer)) is not None:
        return verdict
    from math_verify import parse, verify

    # The parser gets LaTeX as written (spacing kept: "\\ -16" is not "\\-16"), less presentation.
    ref, got = presented_latex(reference), presented_latex(answer)
    got, ref = bracketed_like(got, ref), bracketed_like(ref, got)
    parsed = {}
    for side, text in (("reference", ref), ("answer", got)):
        try:
            parsed[side] = _cpu_limited(lambda t=text: parse(f"${t}$", parsing_timeout=None, raise_on_error=True),
                                        timeout_s)
        except _CpuTimeout:
            return Verdict(None, "timeout", f"parsing the {side} took over {timeout_s} CPU seconds")
        except Exception as error:  # noqa: BLE001 - any parser failure is a parse error
            return Verdict(None, "parse_error", f"{side}: {type(error).__name__}: {error}"[:300])
        if not parsed[side]:
            return Verdict(None, "parse_error", f"math-verify found no expression in the {side}")
    try:
        same = _cpu_limited(lambda: verify(parsed["reference"], parsed["answer"], timeout_seconds=None,
                                           raise_on_error=True), timeout_s)
    except _CpuTimeout:
        return Verdict(None, "timeout", f"comparison took over {timeout_s} CPU seconds")
    except Exception as error:  # noqa: BLE001
        return Verdict(None, "error", f"comparison: {type(error).__name__}: {error}"[:300])
    return Verdict(True, "correct", "math-verify equal") if same else Verdict(False, "wrong", "math-verify differ")


def serve() -> None:
    """Worker loop: one JSON [reference, answer, timeout_s] per stdin line, one verdict per stdout line."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401 - imported once, before the first pair

    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    for line in sys.stdin.buffer:
        reference, answer, timeout_s = json.loads(line)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # Hard CPU bound on this pair (parse x2 + compare): the kernel ends the worker
        # with SIGXCPU if C code keeps the SIGPROF timer from firing.
        limit = int(usage.ru_utime + usage.ru_stime + 3 * timeout_s + 2)
        resource.setrlimit(resource.RLIMIT_CPU, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
        verdict = verify_one(reference, answer, timeout_s)
        sys.stdout.write(json.dumps(list(verdict)) + "\n")
        sys.stdout.flush()


_BOOT = "import sys; sys.path.insert(0, {root!r}); from curate.answers.math import serve; serve()"


class _Worker:
    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])
        self.boot = _BOOT
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT.format(root=root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        self.task: int | None = None
        self.deadline = 0.0

    def send(self, task: int, pair: tuple[str, str], timeout_s: float) -> None:
        self.task, self.deadline = task, time.monotonic() + _HANG_S + 3 * timeout_s
        self.process.stdin.write((json.dumps([*pair, timeout_s]) + "\n").encode())
        self.process.stdin.flush()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.process.stdin.close()
        self.process.wait()
        self.process.stdout.close()


# Idle workers kept between calls (verify runs once per chunk, and the filters call it too):
# starting one costs a Python start and the sympy import.
_IDLE: list[_Worker] = []


def close_workers() -> None:
    """Stop the idle workers (also done at exit)."""
    while _IDLE:
        _IDLE.pop().stop()


atexit.register(close_workers)


def _take_worker() -> _Worker:
    while _IDLE:
        worker = _IDLE.pop()
        if worker.boot == _BOOT and worker.process.poll() is None:
            return worker
        worker.stop(kill=True)
    return _Worker()


def verify_pairs(
    pairs: list[tuple[str, str]], timeout_s: float = 5, workers: int = 2, cache: VerdictCache | None = None,
    relative_tolerance: float = 0.0,
) -> list[Verdict]:
    """Verdicts for (reference, answer) pairs, in order. Each distinct pair is decided once:
    from `cache`, by `decide` (numbers within `relative_tolerance`), or by math-verify across
    `workers` processes; decided verdicts go into `cache`."""
    distinct = list(dict.fromkeys(pairs))
    # A tolerance changes verdicts: cached ones are kept apart per tolerance.
    verifier = f"{VERIFIER}+rel_tol={relative_tolerance:g}" if relative_tolerance else VERIFIER
    known: dict[tuple[str, str], Verdict] = cache.get_many(distinct, verifier) if cache else {}
    fresh: dict[tuple[str, str], Verdict] = {}
    todo = []
    for pair in distinct:
        if pair in known:
            continue
        if (verdict := decide(*pair, relative_tolerance)) is not None:
            fresh[pair] = verdict
        else:
            todo.append(pair)
    if todo:
        fresh.update(zip(todo, _in_workers(todo, timeout_s, workers), strict=True))
    if cache:
        cache.put_many(fresh.items(), verifier)
    known.update(fresh)
    return [known[pair] for pair in pairs]


def _in_workers(pairs: list[tuple[str, str]], timeout_s: float, workers: int) -> list[Verdict]:
    if not pairs:
        return []
    results: list[Verdict | None] = [None] * len(pairs)
    queue, crashes = deque(range(len(pairs))), [0] * len(pairs)
    selector = selectors.DefaultSelector()
    pool = []

    def start() -> _Worker:
        worker = _take_worker()
        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
        pool.append(worker)
        return worker

    def lost(worker: _Worker, verdict_if_final: Verdict) -> None:
        """The worker died or hung on its task: retry the task once in a new worker."""
        task = worker.task
        assert task is not None, "lost() is only called for a worker busy on a pair"
        selector.unregister(worker.process.stdout)
        pool.remove(worker)
        worker.stop(kill=True)
        crashes[task] += 1
        if crashes[task] >= 2:
            results[task] = verdict_if_final
        else:
            queue.appendleft(task)

    # A worker costs a Python start and the sympy import (~1.5 CPU seconds): start one per
    # _PAIRS_PER_WORKER pending pairs, up to `workers`.
    workers = min(workers, math.ceil(len(pairs) / _PAIRS_PER_WORKER))
    try:
        for _ in range(workers):
            start()
        while queue or any(w.task is not None for w in pool):
            for worker in [w for w in pool if w.task is None]:
                if queue:
                    task = queue.popleft()
                    worker.send(task, pairs[task], timeout_s)
            while len(pool) < workers:
                start()
            wait = min((w.deadline for w in pool if w.task is not None), default=time.monotonic()) - time.monotonic()
            for key, _ in selector.select(timeout=max(wait, 0.01)):
                worker = key.data
                line = worker.process.stdout.readline()
                task = worker.task
                if task is None:  # a worker writes only answers: readable while idle means it ended
                    raise RuntimeError(f"a math-verify worker exited before taking a pair "
                                       f"(exit code {worker.process.wait()})")
                if line:
                    results[task] = Verdict(*json.loads(line))
                    worker.task = None
                    continue
                code = worker.process.wait()
                if code == -signal.SIGXCPU:
                    reason = f"over {3 * timeout_s + 2:.0f} CPU seconds in C code"
                    results[task] = Verdict(None, "timeout", reason)
                    crashes[task] = 2
                lost(worker, Verdict(None, "error", f"{CRASH_REASON} twice (exit code {code})"))
            for worker in [w for w in pool if w.task is not None and time.monotonic() > w.deadline]:
                lost(worker, Verdict(None, "timeout", f"worker hung for {_HANG_S:.0f}s twice"))
    finally:
        selector.close()
        for worker in pool:
            if worker.task is None and len(_IDLE) < workers:
                _IDLE.append(worker)
            else:
                worker.stop(kill=True)
    decided = [verdict for verdict in results if verdict is not None]
    assert len(decided) == len(pairs), "the loop ends once every pair has its verdict"
    return decided

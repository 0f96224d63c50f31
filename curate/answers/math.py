"""Math answer checking with math-verify, in worker processes.

math-verify bounds parsing and comparison with `signal.alarm`, which only works in a main
thread, so the work runs in a process pool (each worker runs tasks in its main thread).
A second, hard deadline in the parent covers a worker stuck where the alarm cannot reach
(C code): its chunk is recorded as timed out and the pool is replaced. Every outcome
carries a status, so a timeout or an unparsable answer is never reported as wrong.
"""

from __future__ import annotations

import multiprocessing
import re
from typing import NamedTuple

_NOISE = re.compile(r"\s+|\\!|\\,|\\;|\\left|\\right|^\$|\$$")


class Verdict(NamedTuple):
    correct: bool | None
    status: str  # correct | wrong | timeout | parse_error | error
    reason: str


def _normal_form(answer: str) -> str:
    return _NOISE.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def verify_one(reference: str, answer: str, timeout_s: int) -> Verdict:
    """Compare one answer with its reference. Call in a process's main thread."""
    if _normal_form(reference) == _normal_form(answer):
        return Verdict(True, "correct", "same normal form")
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    parsed = {}
    for side, text in (("reference", reference), ("answer", answer)):
        try:
            parsed[side] = parse(f"${text}$", parsing_timeout=timeout_s, raise_on_error=True)
        except TimeoutException:
            return Verdict(None, "timeout", f"parsing the {side} took over {timeout_s}s")
        except Exception as error:  # noqa: BLE001 - any parser failure is a parse error
            return Verdict(None, "parse_error", f"{side}: {type(error).__name__}: {error}"[:300])
        if not parsed[side]:
            return Verdict(None, "parse_error", f"math-verify found no expression in the {side}")
    try:
        same = verify(parsed["reference"], parsed["answer"], timeout_seconds=timeout_s, raise_on_error=True)
    except TimeoutException:
        return Verdict(None, "timeout", f"comparison took over {timeout_s}s")
    except Exception as error:  # noqa: BLE001
        return Verdict(None, "error", f"comparison: {type(error).__name__}: {error}"[:300])
    return Verdict(True, "correct", "math-verify equal") if same else Verdict(False, "wrong", "math-verify differ")


def _verify_chunk(pairs: list[tuple[str, str]], timeout_s: int) -> list[Verdict]:
    return [verify_one(reference, answer, timeout_s) for reference, answer in pairs]


def _new_pool(workers: int):
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    # Workers fork from a server that has math-verify (and sympy) imported already.
    context.set_forkserver_preload(["math_verify"])
    return ProcessPoolExecutor(workers, mp_context=context)


def _kill(pool) -> None:
    # The executor cannot cancel a running task; killing its workers is the only way out.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def verify_pairs(
    pairs: list[tuple[str, str]], timeout_s: int = 5, workers: int = 2, chunk_size: int = 16,
    slack_s: float = 10.0,
) -> list[Verdict]:
    """Verdicts for (reference, answer) pairs, in order, checked across `workers` processes."""
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    if not pairs:
        return []
    chunks = [pairs[i : i + chunk_size] for i in range(0, len(pairs), chunk_size)]
    verdicts: list[Verdict] = []
    pool = _new_pool(workers)
    try:
        pending = [pool.submit(_verify_chunk, chunk, timeout_s) for chunk in chunks]
        for index, chunk in enumerate(chunks):
            # Tasks start in order, so a chunk has started by the time the previous one is
            # collected: its deadline counts from then (parse x2 + compare per item).
            try:
                verdicts.extend(pending[index].result(timeout=len(chunk) * (3 * timeout_s + 1) + slack_s))
                continue
            except FutureTimeout:
                reason = "worker exceeded the hard deadline and was killed"
                verdicts.extend(Verdict(None, "timeout", reason) for _ in chunk)
            except BrokenProcessPool as error:
                verdicts.extend(Verdict(None, "error", f"verifier process died: {error}") for _ in chunk)
            _kill(pool)
            pool = _new_pool(workers)
            pending[index + 1 :] = [pool.submit(_verify_chunk, c, timeout_s) for c in chunks[index + 1 :]]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return verdicts

"""Competitive-programming tests: run a Python or C++ program on each case's stdin in a
fresh box (`sandbox_box`) and compare its stdout with the expected output here, outside
the box, with a tolerant checker: tokens split on white space; two tokens match when
equal, or when both are numbers, the expected one not an integer, within the float
tolerance (absolute or relative). An expected integer matches only a number of exactly its
value (6.000000 for 6; not 1000000.5 for 1000000, nor 1e20 for 10**20 + 1).

A case passes, fails (other output, exit status not 0, output over the cap) or times out:
its time limit is CPU seconds (RLIMIT_CPU, whole seconds, rounded up), so the machine's load
does not change a verdict; a program that waits without computing is stopped by a wall-clock
backstop, 4 x (the limit + 1 s for the box's start), and the row is undecided (`error`): load
and waiting cannot be told apart. Judging stops at the first
case that does not pass, as judges do. C++ is compiled by g++ inside a box of its own, under a
time limit; a program that does not compile is wrong.
"""

from __future__ import annotations

import decimal
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from curate.answers.extract import fence_tags
from curate.answers.sandbox import SandboxResult
from curate.answers.sandbox_box import (
    BOX_DIR,
    CPU_KILLS,
    BoxLimits,
    Isolation,
    box_command,
    python_executable,
    require,
    run_capped,
)

LANGUAGES = {"python": "main.py", "cpp": "main.cpp"}  # and their aliases (`extract.fence_tags`)
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class CaseLimits:
    time_limit_s: float = 2.0  # per case
    memory_bytes: int = 1 << 30
    output_bytes: int = 16 << 20
    float_tolerance: float = 1e-6
    compile_timeout_s: float = 60.0
    backstop_factor: float = 4.0  # wall clock per case: this times (the time limit + 1 s for the box's start)


@dataclass(frozen=True)
class Case:
    input: str
    output: str


def tokens_match(expected: str, got: str, tolerance: float) -> bool:
    """The tolerant checker (module doc)."""
    want, have = expected.split(), got.split()
    return len(want) == len(have) and all(_token_match(w, h, tolerance) for w, h in zip(want, have, strict=True))


def _token_match(want: str, have: str, tolerance: float) -> bool:
    if want == have:
        return True
    if _INTEGER.fullmatch(want):  # exact: 6.000000 is 6, but 1000000.5 is not 1000000 nor 1e20 10**20 + 1
        return _exact_number(have) == int(want)
    try:
        a, b = float(want), float(have)
    except ValueError:
        return False
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _exact_number(token: str) -> decimal.Decimal | None:
    try:
        return decimal.Decimal(token)
    except decimal.InvalidOperation:
        return None


def run_cases(code: str, language: str, cases: list[Case], limits: CaseLimits | None = None,
              isolation: Isolation = Isolation.BWRAP) -> SandboxResult:
    """Judge `code` on `cases` (module doc)."""
    require(isolation)
    limits = limits or CaseLimits()
    language = next((name for name in LANGUAGES if language.lower() in fence_tags(name) - {""}), language)
    if language not in LANGUAGES:
        return SandboxResult("error", message=f"no stdin/stdout runner for language {language!r} "
                             f"(one of {', '.join(LANGUAGES)})", mode=isolation.value)
    with tempfile.TemporaryDirectory(prefix="curate-cases-") as temp_dir:
        box_dir = Path(temp_dir, "box")
        box_dir.mkdir()
        source = box_dir / LANGUAGES[language]
        source.write_text(code)
        source.chmod(0o644)
        inside = Path(BOX_DIR) if isolation is Isolation.BWRAP else box_dir
        if language == "python":
            box_dir.chmod(0o755)  # readable by the box's uid; the 0700 parent keeps other users out
            program = [python_executable(), "-I", "-S", "-B", str(inside / source.name)]
        else:
            compiled = _compile(box_dir, inside, limits, isolation)
            if isinstance(compiled, SandboxResult):
                return compiled
            program = compiled
        return _judge(program, box_dir, cases, limits, isolation)


def _compile(box_dir: Path, inside: Path, limits: CaseLimits, isolation: Isolation) -> list[str] | SandboxResult:
    """The compiled program's command, or the verdict when it does not compile."""
    box_dir.chmod(0o777)  # the compiler's uid writes the program here; the 0700 parent keeps others out
    compile_limits = BoxLimits(memory_bytes=4 << 30, cpu_seconds=int(limits.compile_timeout_s) + 1,
                               file_bytes=256 << 20, open_files=256, processes=16,
                               tmp_bytes=256 << 20)
    command = ["g++", "-O2", "-std=gnu++17", "-pipe", "-o", str(inside / "program"), str(inside / "main.cpp")]
    run = run_capped(box_command(command, compile_limits, isolation, box_dir, box_writable=True),
                     b"", limits.compile_timeout_s, 1 << 16, merge_stderr=True)
    box_dir.chmod(0o755)
    if run.timed_out:
        return SandboxResult("timeout", message=f"compiling took over {limits.compile_timeout_s}s",
                             mode=isolation.value)
    if run.returncode != 0:
        errors = run.stdout.decode(errors="replace")
        return SandboxResult("wrong", message=f"does not compile: {errors[-300:]}", mode=isolation.value)
    return [str(inside / "program")]


def _judge(program: list[str], box_dir: Path, cases: list[Case], limits: CaseLimits,
           isolation: Isolation) -> SandboxResult:
    cpu_seconds = math.ceil(limits.time_limit_s)
    command = box_command(program, BoxLimits(memory_bytes=limits.memory_bytes, cpu_seconds=cpu_seconds),
                          isolation, box_dir)
    wall_s = limits.backstop_factor * (limits.time_limit_s + 1)
    results = []
    for index, case in enumerate(cases):
        run = run_capped(command, case.input.encode(), wall_s, limits.output_bytes)
        name = f"case_{index}"
        if run.over_cap:
            results.append({"name": name, "status": "fail", "message": f"output over {limits.output_bytes} bytes"})
        elif run.timed_out:
            results.append({"name": name, "status": "backstop", "message": f"over {wall_s}s of wall clock"})
        elif run.returncode in CPU_KILLS:
            results.append({"name": name, "status": "timeout", "message": f"over {cpu_seconds} CPU seconds"})
        elif run.returncode != 0:
            results.append({"name": name, "status": "error", "message": f"exit status {run.returncode}"})
        elif not tokens_match(case.output, run.stdout.decode(errors="replace"), limits.float_tolerance):
            results.append({"name": name, "status": "fail", "message": "output differs from the expected output"})
        else:
            results.append({"name": name, "status": "pass", "message": ""})
            continue
        break
    statuses = {r["status"] for r in results}
    status = ("correct" if statuses == {"pass"} else "timeout" if "timeout" in statuses
              else "error" if "backstop" in statuses else "wrong")
    return SandboxResult(status, results, "" if status == "correct" else results[-1]["message"], isolation.value)

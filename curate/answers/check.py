"""Check completions: extract each one's final answer and compare it with the reference
(math, by math-verify in worker processes) or run it against the problem's tests (code, in
the sandbox). The `verify` operator wraps `AnswerChecker`; `adaptive_generate` and `evals`
use it too, so a stage can check answers without importing another stage.

Every row gets a `verify_status`; `correct` is null when the verifier could not decide (a
math timeout, an unparsable answer, a missing reference), so grading never counts those as
failures. Code that runs past its CPU-time limit counts as failed (HumanEval's convention);
hitting the wall-clock backstop, which load can cause, leaves the row undecided.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from curate.answers.cache import VerdictCache
from curate.answers.extract import DEFAULT_METHODS, ExtractionMethod, answer_extractor, extract_code
from curate.answers.sandbox_box import Isolation, IsolationUnavailable, require
from curate.answers.sandbox_stdio import Case
from curate.core.operator import OperatorConfig

log = logging.getLogger(__name__)

VERIFY_COLUMNS: dict[str, pl.DataType] = {
    "extracted_answer": pl.String(), "extraction_method": pl.String(), "correct": pl.Boolean(),
    "verify_status": pl.String(), "verify_detail": pl.String(),
}


class VerifyConfig(OperatorConfig):
    text_columns: list[str] = Field(
        ["answer_text", "completion"],
        description="Columns to take the answer from, in order: the first that yields one wins.",
    )
    methods: list[ExtractionMethod] = Field(
        list(DEFAULT_METHODS),
        description="Math answer extractors tried in order: boxed, gsm8k ('#### N'), answer_is "
        "('the answer is ...'), choice (multiple-choice letter), regex (answer_regex), last_number.",
    )
    answer_regex: str | None = Field(
        None, description="Pattern for the 'regex' method: its first group (or the match) is the answer."
    )
    timeout_s: int = Field(5, ge=1, description="Math: seconds allowed to parse or compare one answer.")
    relative_tolerance: float = Field(
        0.0, ge=0, lt=1,
        description="Math: a numeric answer within this fraction of the reference counts as correct "
        "(e.g. 0.01 for physical quantities: '6630.65 Å' for 6630); 0 (default): equal values only.",
    )
    workers: int = Field(2, ge=1, description="Worker processes for math-verify and parallel sandboxes.")
    truncated_as_no_answer: bool = Field(
        True,
        description="Rows with finish_reason 'length', or whose reasoning block opens and never "
        "closes, get status no_answer (counted as failed): a truncated trace did not finish its answer. "
        "False judges them by the answer they state, from inside an open reasoning block if need be "
        "(how evaluation harnesses that ignore truncation grade, e.g. to re-check a dump's labels).",
    )
    reasoning_tags: list[tuple[str, str]] = Field(
        [("<think>", "</think>"), ("<|begin_of_thought|>", "<|end_of_thought|>")],
        description="(open, close) reasoning markers: an answer is never taken from inside a reasoning block.",
    )
    code_language: str = Field(
        "python", description="Code: language of the fenced block to run: python, or cpp (stdin/stdout cases only).")
    code_timeout_s: float = Field(
        10.0, gt=0, description="Code: CPU seconds for one program and its tests (wall clock is only a backstop, "
        "4x this: its hit, which load can cause, leaves the row undecided).")
    test_timeout_s: float = Field(3.0, gt=0, description="Code: CPU seconds allowed per test assertion.")
    case_timeout_s: float = Field(
        2.0, gt=0, description="Code: seconds per stdin/stdout case when the tests give no time_limit_s.")
    float_tolerance: float = Field(
        1e-6, ge=0, description="Code: stdin/stdout cases: absolute or relative tolerance between numbers.")
    code_output_mb: int = Field(16, ge=1, description="Code: stdout cap per case (over it the case fails).")
    code_memory_mb: int = Field(1024, ge=64, description="Code: address-space limit per sandboxed process.")
    sandbox: Literal["bwrap", "unsafe-no-isolation"] = Field(
        "bwrap",
        description="Code: bwrap runs model code in bubblewrap boxes (see curate/answers/sandbox_box.py) and "
        "refuses to run where bwrap cannot; unsafe-no-isolation runs it with resource limits only (it can "
        "read this machine's files and environment, signal curate, use the network).",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_isolate(cls, data: object) -> object:
        """Recipes written before the bubblewrap sandbox say `isolate:`; point them to `sandbox:`."""
        if isinstance(data, dict) and "isolate" in data:
            raise ValueError("`isolate:` is now `sandbox:`: write `sandbox: bwrap` (the default) or "
                             "`sandbox: unsafe-no-isolation`")
        return data


def checked_columns(config: VerifyConfig) -> set[str]:
    """The columns `AnswerChecker(config).check` reads."""
    return {"domain", "reference_answer", "tests", *config.text_columns}


class AnswerChecker:
    """Adds extracted_answer, extraction_method, correct, verify_status and verify_detail."""

    def __init__(self, config: VerifyConfig, cache: VerdictCache | None = None):
        self.config = config
        self.cache = cache
        self._extract = answer_extractor(tuple(config.methods), config.answer_regex)
        self._extract_choice = answer_extractor(("boxed", "answer_is", "choice"))

    def check(self, frame: pl.DataFrame, count: Callable[[str], None] = lambda name: None) -> pl.DataFrame:
        """`frame` with VERIFY_COLUMNS added; `count(name)` is called once per row with
        `verify_<status>`."""
        rows = frame.select(
            "domain", "reference_answer", "tests", *self.config.text_columns,
            problem=pl.col("problem") if "problem" in frame.columns else pl.lit(None, pl.String),
            finish_reason=pl.col("finish_reason") if "finish_reason" in frame.columns else pl.lit(None, pl.String),
        ).rows(named=True)
        outcomes = [self._extract_row(row) for row in rows]
        self._verify_math(outcomes)
        self._verify_code(outcomes, rows)
        for outcome in outcomes:
            count(f"verify_{outcome['verify_status']}")
        return frame.with_columns(
            pl.Series(name, [o[name] for o in outcomes], dtype=dtype)
            for name, dtype in VERIFY_COLUMNS.items()
        )

    def _extract_row(self, row: dict) -> dict:
        """Answer and method, or a final status where nothing is left to check."""
        texts = [row[c] for c in self.config.text_columns]
        domain = row["domain"]
        outcome = {"extracted_answer": None, "extraction_method": None, "correct": None,
                   "verify_status": None, "verify_detail": None, "_reference": row["reference_answer"],
                   "_domain": domain}
        texts, unclosed = self._outside_reasoning(texts, read_open_block=not self.config.truncated_as_no_answer)
        if domain == "code":
            answer, method = next((found for t in texts if (found := extract_code(t, self.config.code_language))[0]),
                                  (None, None))
        elif domain in ("math", "choice"):
            extract = self._extract if domain == "math" else self._extract_choice
            answer, method = next((found for t in texts if (found := extract(t))[0] is not None),
                                  (None, None))
        else:
            return _final(outcome, None, "error", f"unknown domain {domain!r} (expected 'math', 'choice' or 'code')")
        outcome.update(extracted_answer=answer, extraction_method=method)
        if self.config.truncated_as_no_answer and row["finish_reason"] == "length":
            return _final(outcome, False, "no_answer", "truncated: finish_reason is 'length'")
        if unclosed and self.config.truncated_as_no_answer:
            return _final(outcome, False, "no_answer", f"truncated: {unclosed} never closes")
        if answer is None:
            return _final(outcome, False, "no_answer", f"no answer found in {', '.join(self.config.text_columns)}")
        if domain != "code" and not row["reference_answer"]:
            return _final(outcome, None, "error", "the problem has no reference_answer")
        if domain == "code" and not row["tests"]:
            return _final(outcome, None, "error", "the problem has no tests")
        return outcome

    def _outside_reasoning(
        self, texts: list[str | None], read_open_block: bool
    ) -> tuple[list[str | None], str | None]:
        """Each text after its last closed reasoning block; and the open marker of a block
        that never closes (the trace was cut off inside its reasoning), if any. With
        `read_open_block` such a text is kept from its open marker on, as a last resort after
        the other texts, since whatever it states was never concluded."""
        outside: list[str | None] = []
        cut_off: list[str | None] = []
        unclosed = None
        for text in texts:
            for open_tag, close_tag in self.config.reasoning_tags:
                if not text:
                    break
                if close_tag in text:
                    text = text.rsplit(close_tag, 1)[1]
                elif open_tag in text:
                    unclosed = unclosed or open_tag
                    cut_off.append(text.split(open_tag, 1)[1])
                    text = None
                    break
            if text is not None:
                outside.append(text)
        if unclosed and not read_open_block:
            return [], unclosed
        return outside + cut_off, unclosed

    def _verify_math(self, outcomes: list[dict]) -> None:
        from curate.answers.math import CRASH_REASON, verify_pairs

        todo = [o for o in outcomes if o["verify_status"] is None and o["_domain"] in ("math", "choice")]
        pairs = [(o["_reference"], o["extracted_answer"]) for o in todo]
        verdicts = verify_pairs(pairs, self.config.timeout_s, self.config.workers, cache=self.cache,
                                relative_tolerance=self.config.relative_tolerance)
        for outcome, verdict in zip(todo, verdicts, strict=True):
            _final(outcome, verdict.correct, verdict.status, verdict.reason)
        crashed = [pair for pair, v in zip(pairs, verdicts, strict=True) if v.reason.startswith(CRASH_REASON)]
        if crashed:
            # Not saved as a verdict: the step fails, and a rerun (the other verdicts cached) retries it.
            raise RuntimeError(f"verify: {CRASH_REASON} twice on {len(crashed)} pair(s), first: reference "
                               f"{crashed[0][0]!r}, answer {crashed[0][1]!r}; rerun to retry them")

    def _verify_code(self, outcomes: list[dict], rows: list[dict]) -> None:
        todo = [(o, row) for o, row in zip(outcomes, rows, strict=True)
                if o["verify_status"] is None and o["_domain"] == "code"]
        if not todo:
            return
        isolation = _isolation(self.config.sandbox)
        with ThreadPoolExecutor(self.config.workers) as pool:
            list(pool.map(lambda item: self._run_code(item[0], item[1], isolation), todo))

    def _run_code(self, outcome: dict, row: dict, isolation: Isolation) -> dict:
        from curate.answers.sandbox import SandboxLimits, run_tests
        from curate.answers.sandbox_stdio import CaseLimits, run_cases

        config = self.config
        tests = parse_tests(row["tests"])
        if isinstance(tests, str):
            return _final(outcome, None, "error", tests)
        code = outcome["extracted_answer"]
        if isinstance(tests, CodeCases):
            case_limits = CaseLimits(time_limit_s=tests.time_limit_s or config.case_timeout_s,
                                     memory_bytes=config.code_memory_mb << 20,
                                     output_bytes=config.code_output_mb << 20, float_tolerance=config.float_tolerance)
            result = run_cases(code, config.code_language, tests.cases, case_limits, isolation)
        elif config.code_language != "python":
            return _final(outcome, None, "error", f"assert-style tests run python, not {config.code_language}")
        else:
            # Completion-style answers continue the prompt's signature instead of repeating it.
            if tests.entry_point and f"def {tests.entry_point}" not in code:
                code = (row.get("problem") or "") + code
            limits = SandboxLimits(test_timeout_s=config.test_timeout_s, cpu_seconds=math.ceil(config.code_timeout_s),
                                   memory_bytes=config.code_memory_mb << 20)
            result = run_tests(code, tests.test, tests.entry_point, limits, isolation, prelude=row.get("problem"))
        detail = {"tests": result.tests, "message": result.message, "sandbox": result.mode}
        correct = None if result.status == "error" else result.status == "correct"
        return _final(outcome, correct, result.status, detail)


def _isolation(sandbox: str) -> Isolation:
    """The sandbox the recipe asked for; where bwrap cannot run, a refusal, never a fallback."""
    isolation = Isolation(sandbox)
    if isolation is Isolation.UNSAFE:
        log.warning("verify: sandbox: unsafe-no-isolation: model-written code runs WITHOUT isolation; it can read "
                    "this machine's files and environment, signal curate and use the network")
        return isolation
    try:
        require(isolation)
    except IsolationUnavailable as error:
        raise IsolationUnavailable(  # curate.errors adds what to do: install bwrap or name the unsafe mode
            f"verify: code rows need the bubblewrap sandbox, which this machine cannot give ({error})") from None
    return isolation


@dataclass(frozen=True)
class AssertTests:
    test: str
    entry_point: str | None


@dataclass(frozen=True)
class CodeCases:
    cases: list[Case]
    time_limit_s: float | None


def parse_tests(tests: str) -> AssertTests | CodeCases | str:
    """A code problem's `tests` (README, **Code verification**), or what is wrong with it:
    {"test": program, "entry_point": name} (asserts), {"cases": [{"input", "output"}, ...],
    "time_limit_s"?} or APPS' {"inputs": [...], "outputs": [...]} (stdin/stdout)."""
    try:
        parsed = json.loads(tests)
    except json.JSONDecodeError as error:
        return f"tests is not valid JSON: {error}"
    if not isinstance(parsed, dict):
        return "tests must be a JSON object"
    if isinstance(parsed.get("test"), str):
        entry_point = parsed.get("entry_point")
        return AssertTests(parsed["test"], entry_point if isinstance(entry_point, str) else None)
    if "inputs" in parsed and "outputs" in parsed:
        inputs, outputs = parsed["inputs"], parsed["outputs"]
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
            return "tests: 'inputs' and 'outputs' must be lists of the same length"
        parsed["cases"] = [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]
    cases = parsed.get("cases")
    if not isinstance(cases, list) or not cases or not all(
            isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str)
            for c in cases):
        return ("tests must be a JSON object with a 'test' program (and an 'entry_point'), or with 'cases': "
                "a non-empty list of {'input': text, 'output': text}")
    time_limit = parsed.get("time_limit_s")
    if time_limit is not None and (not isinstance(time_limit, (int, float)) or not 0 < time_limit <= 60):
        return f"tests: time_limit_s must be a number of seconds in (0, 60], not {time_limit!r}"
    return CodeCases([Case(c["input"], c["output"]) for c in cases], time_limit)


def _final(outcome: dict, correct: bool | None, status: str, detail: str | dict) -> dict:
    outcome.update(correct=correct, verify_status=status,
                   verify_detail=json.dumps(detail if isinstance(detail, dict) else {"reason": detail}))
    return outcome

"""The LLM judge: a teacher asked a versioned yes/no question, its reply parsed strictly.

Any teacher backend works (transformers, vLLM, an OpenAI-compatible server, llama.cpp):
the judge runs through the teacher engine (`curate.llm.engine`), so its requests share
generation's response cache, budgets, metrics and `curate plan`; a rerun or a resumed run
sends nothing twice.

A reply must hold one `VERDICT: yes|no` line and one `REASON: ...` line (after the
judge's own reasoning, if it writes `<think>`); anything else is `unparseable`, never a
guess. Outcomes per row:

- `judge_verdict`: true / false, null unless the status is `ok`;
- `judge_reason`: the judge's one-line reason (at most 300 characters);
- `judge_status`: `ok`, `unparseable`, `truncated` (cut at max_tokens before a verdict),
  `generation_error`, `over_budget`, or `skipped` (the caller did not ask).

Each task has its own prompt, and `PROMPT_VERSION` names the wording: changing a prompt
changes its text and so its cache keys; bump the version so that results can be told apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator

from curate.core.operator import OperatorConfig, StepContext
from curate.llm.config import GenerateConfig, TeacherConfig
from curate.schema import PROBLEM_COLUMNS

PROMPT_VERSION = 1
JUDGE_COLUMNS = ("judge_verdict", "judge_reason", "judge_status")
STATUSES = ("ok", "unparseable", "truncated", "generation_error", "over_budget", "skipped")
MAX_REASON_CHARS = 300

_REPLY_FORMAT = (
    "Reply in exactly this format, nothing else:\n"
    "VERDICT: yes or no\n"
    "REASON: one short sentence"
)


@dataclass(frozen=True)
class JudgeTask:
    """One question: the prompt's system and user templates (`{field}` placeholders) and the
    fields the caller fills."""

    system: str
    user: str
    fields: tuple[str, ...]


TASKS: dict[str, JudgeTask] = {
    # Verify fallback: is a final answer that the rules rejected or could not read the reference's?
    "answer": JudgeTask(
        system=f"[curate judge: answer, v{PROMPT_VERSION}] You check a student's final answer against the "
        "reference answer of a math problem. Say yes only if the student's final answer is mathematically "
        "equivalent to the reference (other notation, units or formatting are fine); say no if it differs, "
        f"is missing, or is ambiguous. Do not solve the problem yourself.\n{_REPLY_FORMAT}",
        user="Problem:\n{judge_problem}\n\nReference answer:\n{judge_reference}\n\n"
        "Student's solution (end):\n{judge_response}\n\nIs the student's final answer equivalent to the reference?",
        fields=("judge_problem", "judge_reference", "judge_response"),
    ),
    # Process check: does each step of a (correct) solution follow?
    "process": JudgeTask(
        system=f"[curate judge: process, v{PROMPT_VERSION}] You check the reasoning of a worked solution. "
        "Say yes if every step follows from the problem and the steps before it. Say no if any step "
        "contradicts itself or an earlier step, states false arithmetic, or reaches a result the steps do "
        f"not support, even when the final answer is right; quote the faulty step in the reason.\n{_REPLY_FORMAT}",
        user="Problem:\n{judge_problem}\n\nSolution:\n{judge_response}\n\nDoes every step of this solution follow?",
        fields=("judge_problem", "judge_response"),
    ),
    # Decontamination confirmation: are two problem statements the same problem?
    "same_problem": JudgeTask(
        system=f"[curate judge: same_problem, v{PROMPT_VERSION}] You compare two math problem statements. "
        "Say yes if they are the same problem: same question and same numbers, even if reworded, "
        "reformatted or with other names. Say no if they ask different things or any given number differs "
        f"(then they are different problems, even from one template).\n{_REPLY_FORMAT}",
        user="Problem A:\n{judge_problem}\n\nProblem B:\n{judge_other}\n\nAre A and B the same problem?",
        fields=("judge_problem", "judge_other"),
    ),
}
TaskName = Literal["answer", "process", "same_problem"]

_VERDICT = re.compile(r"^[\s*#>_-]*verdict[\s*_]*:[\s*_]*(yes|no)\b[\s*_.]*$", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(r"^[\s*#>_-]*reason[\s*_]*:[\s*_]*(\S.*)$", re.IGNORECASE | re.MULTILINE)


def parse_reply(text: str | None) -> tuple[bool | None, str | None]:
    """(verdict, reason) from a reply, or (None, None) unless it has exactly one verdict
    line (yes/no; repeated identical lines allowed) and a non-empty reason line."""
    if not text:
        return None, None
    verdicts = {m.group(1).lower() for m in _VERDICT.finditer(text)}
    reason = _REASON.search(text)
    if len(verdicts) != 1 or reason is None:
        return None, None
    return verdicts.pop() == "yes", reason.group(1).strip()[:MAX_REASON_CHARS]


# New tokens per reply by default: room for a reasoning judge's thinking before its verdict
# (the verdict is read after the reasoning end marker); a plain judge stops after two lines.
JUDGE_MAX_TOKENS = 4096
# Options naming the context length (prompt + reply) of backends that take one.
_CONTEXT_OPTIONS = ("max_model_len", "n_ctx")


def default_max_tokens(teacher: dict[str, Any]) -> int:
    """JUDGE_MAX_TOKENS, or half the context where the teacher's options cap it lower (the
    other half is for the prompt)."""
    options = teacher.get("options") or {}
    contexts = [options[name] for name in _CONTEXT_OPTIONS if isinstance(options.get(name), int)]
    return min([JUDGE_MAX_TOKENS, *(context // 2 for context in contexts)])


def judge_teacher(task: TaskName, teacher: dict[str, Any] | TeacherConfig) -> TeacherConfig:
    """The task's prompt and judge defaults (name 'judge', greedy, `default_max_tokens`) under
    a recipe's teacher settings. The prompt is the task's own and cannot be replaced: its
    wording is what PROMPT_VERSION names."""
    if isinstance(teacher, TeacherConfig):
        teacher = teacher.model_dump()
    spec = TASKS[task]
    sampling = {"temperature": 0.0, "max_tokens": default_max_tokens(teacher), **teacher.get("sampling", {})}
    merged = {"name": "judge", **teacher, "sampling": sampling,
              "prompt": {"system": spec.system, "user": spec.user}}
    return TeacherConfig.model_validate(merged)


class JudgeConfig(OperatorConfig):
    """How an operator's judge runs: a teacher (any backend) without its prompt."""

    teacher: dict[str, Any] = Field(
        description="The judge model: a `generate` teacher without `prompt` (name defaults to 'judge', "
        "temperature to 0, max_tokens to 4096, or half of options.max_model_len/n_ctx when lower: room for a "
        "reasoning judge's thinking; sampling.n must be 1). Shares generation's response cache."
    )
    max_chars: int = Field(
        6000, ge=200, description="Longest text put in the prompt per field; longer texts keep their end."
    )

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        if "prompt" in self.teacher:
            raise ValueError("judge.teacher: 'prompt' is set by the judge (a versioned prompt per task); remove it")
        teacher = judge_teacher("answer", self.teacher)
        if teacher.sampling.n != 1:
            raise ValueError(f"judge.teacher: sampling.n must be 1 (one verdict per item), got {teacher.sampling.n}")
        return self


def judge_resources(config: JudgeConfig) -> dict[str, float]:
    """What one Ray actor running this judge needs (its teacher's GPUs, as for `generate`),
    so that each actor's vLLM judge gets a GPU of its own instead of all starting on GPU 0."""
    from curate.llm.engine import ray_resources

    return ray_resources([judge_teacher("answer", config.teacher)])


class Judge:
    """Asks one task's question for each row of a frame holding the task's fields."""

    def __init__(self, config: JudgeConfig, task: TaskName):
        self.config = config
        self.task = task
        self.teacher = judge_teacher(task, config.teacher)

    def setup(self, ctx: StepContext) -> None:
        from curate.llm.engine import Engine

        self._engine = Engine([self.teacher])
        self._engine.setup(ctx)
        ctx.metrics["judge.prompt_version"] = PROMPT_VERSION

    def teardown(self) -> None:
        if hasattr(self, "_engine"):
            self._engine.teardown()

    def requests_frame(self, items: pl.DataFrame) -> pl.DataFrame:
        """The engine's input: one 'problem' row per item (the prompt fields, cut to
        max_chars from the end) with the problem columns the engine carries along."""
        fields = TASKS[self.task].fields
        missing = [f for f in fields if f not in items.columns]
        if missing:
            raise ValueError(f"judge ({self.task}): missing field column(s) {missing}")
        limit = self.config.max_chars
        cut = [pl.col(f).cast(pl.String).fill_null("").str.slice(-limit).alias(f) for f in fields]
        nulls = [pl.lit(None, c.dtype).alias(c.name) for c in PROBLEM_COLUMNS if c.name != "problem_id"]
        return items.select(cut).with_columns(
            *nulls, problem_id=pl.format("judge-{}", pl.int_range(pl.len())),
        )

    def judge(self, items: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """judge_verdict, judge_reason, judge_status for each row of `items`, in order."""
        if items.is_empty():
            return empty_verdicts()
        replies = self._engine.generate(self.requests_frame(items), ctx)
        rows = replies.select("answer_text", "finish_reason", "reject_reason").iter_rows()
        verdicts, reasons, statuses = [], [], []
        for answer, finish, failure in rows:
            verdict, reason = parse_reply(answer)
            if failure is not None:
                status = failure
            elif verdict is not None:
                status = "ok"
            else:
                status = "truncated" if finish == "length" else "unparseable"
            verdicts.append(verdict)
            reasons.append(reason)
            statuses.append(status)
            ctx.count(f"judge.{status}")
        return pl.DataFrame({"judge_verdict": verdicts, "judge_reason": reasons, "judge_status": statuses},
                            schema=empty_verdicts().schema)

    def plan(self, items: pl.DataFrame, cache_dir: Path) -> pl.DataFrame:
        """What `judge` would request (for `curate plan`), without sending anything."""
        from curate.llm.engine import plan_requests

        return plan_requests(self.requests_frame(items), GenerateConfig(teachers=[self.teacher]), cache_dir)


def empty_verdicts() -> pl.DataFrame:
    return pl.DataFrame(schema={"judge_verdict": pl.Boolean, "judge_reason": pl.String, "judge_status": pl.String})

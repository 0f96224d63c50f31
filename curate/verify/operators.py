"""The `verify` operator: extract each trace's final answer and check it (see
`curate.answers.check`, which does the work), with an optional LLM judge beside the rules.

Math rows are compared with `reference_answer` by math-verify in worker processes; code
rows are run against the problem's `tests` in the sandbox. Every row gets a
`verify_status`; `correct` is null when the verifier could not decide (a math timeout,
an unparsable answer, a missing reference), so grading never counts those as failures.
Code that runs past its CPU-time limit counts as failed (HumanEval's convention);
hitting the wall-clock backstop, which load can cause, leaves the row undecided.

`judge: on-failure` asks an LLM judge (`curate.llm.judge`, task 'answer') about the math
rows the rules found wrong or could not decide (an answer right but in a form the rules
miss), `judge: always` about every math row with a reference. Its verdict goes into
`judge_verdict`, `judge_reason` and `judge_status`, never into `correct`: the audit shows
where judge and rules disagree, and a recipe decides what to trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from curate.answers.check import VERIFY_COLUMNS, AnswerChecker, VerifyConfig, checked_columns
from curate.core.operator import Operator, StepContext, register
from curate.llm.judge import JUDGE_COLUMNS, Judge, JudgeConfig, empty_verdicts, judge_resources

__all__ = ["Verify", "VerifyConfig", "VerifyWithJudgeConfig"]

_ROW = "__verify_row"


class VerifyWithJudgeConfig(VerifyConfig):
    judge: Literal["off", "on-failure", "always"] = Field(
        "off",
        description="LLM judge beside the rules: off; on-failure (math rows the rules found wrong or could "
        "not decide); always (every math row with a reference). Writes judge_verdict/judge_reason/"
        "judge_status, never `correct`.",
    )
    judge_model: JudgeConfig | None = Field(
        None, description="The judge (`teacher`: any backend, without `prompt`); required unless judge is off."
    )

    @model_validator(mode="after")
    def _judge_needs_a_model(self) -> VerifyWithJudgeConfig:
        if self.judge != "off" and self.judge_model is None:
            raise ValueError(f"verify: judge: {self.judge} needs judge_model: {{teacher: {{...}}}}")
        return self


@register
class Verify(Operator[VerifyWithJudgeConfig]):
    """Extract the final answer of each trace and check it against the reference (math)
    or the tests (code); adds extracted_answer, extraction_method, correct, verify_status
    and verify_detail. With `judge`, also asks an LLM judge (judge_verdict, judge_reason,
    judge_status)."""

    name = "verify"
    Config = VerifyWithJudgeConfig
    scope = "batch"
    default_chunk_size = 20_000
    adds = tuple(VERIFY_COLUMNS)
    # the checker and the code sandbox decide the verdicts: editing them invalidates verify's checkpoints
    code_modules = ("curate.llm.judge", "curate.llm.engine", "curate.answers.check", "curate.answers.sandbox",
                    "curate.answers.sandbox_box", "curate.answers.sandbox_stdio")

    def input_columns(self) -> set[str]:
        columns = checked_columns(self.config)
        return columns | ({"problem"} if self.config.judge != "off" else set())

    def output_columns(self) -> set[str]:
        return set(self.adds) | (set(JUDGE_COLUMNS) if self.config.judge != "off" else set())

    def __init__(self, config: VerifyConfig):
        # A plain VerifyConfig (as in eval configs) is a judge-less verify config.
        if not isinstance(config, VerifyWithJudgeConfig):
            config = VerifyWithJudgeConfig.model_validate(config.model_dump())
        super().__init__(config)
        self.can_plan = config.judge != "off"  # `curate plan` shows the judge's requests

    def resources(self) -> dict[str, float]:
        """The judge's GPUs on a Ray actor (none without a judge)."""
        return judge_resources(self._judge_model()) if self.config.judge != "off" else {}

    def setup(self, ctx: StepContext) -> None:
        from curate.answers.cache import VerdictCache

        self._checker = AnswerChecker(self.config, VerdictCache.in_dir(ctx.cache_dir))
        self._judge: Judge | None = None
        if self.config.judge != "off":
            self._judge = Judge(self._judge_model(), "answer")
            self._judge.setup(ctx)

    def teardown(self) -> None:
        judge = getattr(self, "_judge", None)
        if judge is not None:
            judge.teardown()

    def _judge_model(self) -> JudgeConfig:
        assert self.config.judge_model is not None, "VerifyWithJudgeConfig._judge_needs_a_model: judge is on"
        return self.config.judge_model

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        if not hasattr(self, "_checker"):
            self.setup(ctx)
        checked = self._checker.check(frame, ctx.count)
        if self._judge is not None:
            checked = self._with_judge(self._judge, checked, ctx)
        ctx.on_progress(len(frame))
        return checked

    def _asked(self) -> pl.Expr:
        asked = (pl.col("domain") == "math") & pl.col("reference_answer").is_not_null()
        if self.config.judge == "on-failure":
            asked &= ~pl.col("correct").fill_null(False)
        return asked.fill_null(False)

    def _items(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The judge's fields: the problem, the reference, and the end of the response."""
        response = pl.coalesce(
            pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c)) for c in self.config.text_columns
        )
        return frame.select(_ROW, judge_problem="problem", judge_reference="reference_answer",
                            judge_response=response)

    def _with_judge(self, judge: Judge, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        frame = frame.with_row_index(_ROW)
        asked = frame.filter(self._asked())
        verdicts = judge.judge(self._items(asked), ctx) if asked.height else empty_verdicts()
        judged = pl.concat([asked.select(_ROW), verdicts], how="horizontal")
        result = frame.drop([c for c in JUDGE_COLUMNS if c in frame.columns]).join(
            judged, on=_ROW, how="left", maintain_order="left")
        disagree = result.filter(pl.col("judge_status") == "ok").select(
            judge_yes_rules_no=(pl.col("judge_verdict") & (pl.col("correct") == False)).sum(),  # noqa: E712
            judge_yes_rules_undecided=(pl.col("judge_verdict") & pl.col("correct").is_null()).sum(),
            judge_no_rules_yes=(~pl.col("judge_verdict") & pl.col("correct")).sum(),
        ).row(0, named=True)
        for name, count in disagree.items():
            ctx.count(f"judge.{name}", int(count or 0))
        return result.with_columns(judge_status=pl.col("judge_status").fill_null("skipped")).drop(_ROW)

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, str]:
        checked = frame
        if self.config.judge == "on-failure":
            checked = AnswerChecker(self.config).check(frame, lambda *a: None)
        if "correct" not in checked.columns:
            checked = checked.with_columns(correct=pl.lit(None, pl.Boolean))
        asked = checked.with_row_index(_ROW).filter(self._asked())
        return Judge(self._judge_model(), "answer").plan(self._items(asked), cache_dir), " (verify's judge)"

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        asked = sum(v for k, v in metrics.items() if k.startswith("judge.") and k.split(".")[1] in
                    ("ok", "unparseable", "truncated", "generation_error", "over_budget"))
        if not asked:
            return None
        return (f"judge: {int(asked)} asked, {int(metrics.get('judge.ok', 0))} verdicts, "
                f"{int(metrics.get('judge.unparseable', 0))} unparseable; disagrees with the rules on "
                f"{int(metrics.get('judge.judge_yes_rules_no', 0) + metrics.get('judge.judge_no_rules_yes', 0))}")

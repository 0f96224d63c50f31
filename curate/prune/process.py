"""`process_check`: an LLM judge reads a trace and says whether each step follows.

A trace can reach the right final answer through reasoning that contradicts itself
("the sum of 3 and 5, which is 10 ... 3 + 5 = 8"); a student trained on it learns the
form of the reasoning without its logic. The judge (`curate.llm.judge`, task 'process',
any teacher backend, cached like generation) is asked about every trace verified correct
(or every trace, `only_correct: false`); a 'no' rejects the trace as 'flawed_reasoning'
with the judge's reason as evidence. An unparseable or failed reply never rejects: the
row is kept and `process_status` says what happened.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import Field

from curate.core.operator import Filter, StepContext, register
from curate.llm.judge import Judge, JudgeConfig, empty_verdicts, judge_resources

_ROW = "__process_row"
PROCESS_COLUMNS = ("process_verdict", "process_reason", "process_status")


class ProcessCheckConfig(JudgeConfig):
    column: str = Field("completion", description="The text the judge reads (reasoning and answer).")
    only_correct: bool = Field(True, description="Ask only about traces verified correct (`correct` true).")


@register
class ProcessCheck(Filter[ProcessCheckConfig]):
    """Ask an LLM judge whether each step of a trace follows; reject 'flawed_reasoning'
    when it says no (its reason in reject_detail). Adds process_verdict, process_reason,
    process_status (ok, unparseable, truncated, generation_error, over_budget, skipped)."""

    name = "process_check"
    Config = ProcessCheckConfig
    adds = ("reject_reason", "reject_detail", *PROCESS_COLUMNS)
    reject_reasons = ("flawed_reasoning",)
    default_chunk_size = 512  # as generate: each chunk's checkpoint comes often
    can_plan = True
    code_modules = ("curate.llm.judge", "curate.llm.engine")

    def input_columns(self) -> set[str]:
        return {"problem", self.config.column} | ({"correct"} if self.config.only_correct else set())

    def resources(self) -> dict[str, float]:
        """The judge's GPUs on a Ray actor."""
        return judge_resources(self.config)

    def setup(self, ctx: StepContext) -> None:
        self._judge = Judge(self.config, "process")
        self._judge.setup(ctx)

    def teardown(self) -> None:
        if hasattr(self, "_judge"):
            self._judge.teardown()

    def _asked(self) -> pl.Expr:
        asked = pl.col(self.config.column).str.len_chars().fill_null(0) > 0
        if self.config.only_correct:
            asked &= pl.col("correct").fill_null(False)
        return asked

    def _items(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(judge_problem="problem", judge_response=self.config.column)

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        frame = frame.with_row_index(_ROW)
        asked = frame.filter(self._asked())
        verdicts = self._judge.judge(self._items(asked), ctx) if asked.height else empty_verdicts()
        judged = pl.concat([asked.select(_ROW), verdicts], how="horizontal").rename({
            "judge_verdict": "process_verdict", "judge_reason": "process_reason", "judge_status": "process_status"})
        result = frame.drop([c for c in PROCESS_COLUMNS if c in frame.columns]).join(
            judged, on=_ROW, how="left", maintain_order="left")
        flawed = pl.col("process_verdict").not_() & (pl.col("process_status") == "ok")
        earlier = pl.col("reject_reason") if "reject_reason" in frame.columns else pl.lit(None, pl.String)
        earlier_detail = pl.col("reject_detail") if "reject_detail" in frame.columns else pl.lit(None, pl.String)
        result = result.with_columns(
            reject_reason=pl.when(flawed.fill_null(False)).then(pl.lit("flawed_reasoning")).otherwise(earlier),
            reject_detail=pl.when(flawed.fill_null(False)).then(
                pl.struct(judge_reason="process_reason").struct.json_encode()).otherwise(earlier_detail),
            process_status=pl.col("process_status").fill_null("skipped"),
        ).drop(_ROW)
        ctx.count("rejected", int(result.select(flawed.fill_null(False).sum()).item()))
        ctx.on_progress(frame.height)
        return result

    def plan(self, frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, str]:
        if self.config.only_correct and "correct" not in frame.columns:
            frame = frame.with_columns(correct=pl.lit(True))  # before verify has run: at most every trace
        asked = frame.filter(self._asked())
        return Judge(self.config, "process").plan(self._items(asked), cache_dir), " (process_check's judge)"

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        if not metrics.get("judge.ok") and not metrics.get("judge.unparseable"):
            return None
        return (f"process judge: {int(metrics.get('rejected', 0))} flawed of {int(metrics.get('judge.ok', 0))} "
                f"judged, {int(metrics.get('judge.unparseable', 0))} unparseable")


__all__ = ["ProcessCheck", "ProcessCheckConfig"]

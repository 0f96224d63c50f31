"""`review_filter`: the reviewers' verdicts as columns, and the traces they judged wrong out."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import polars as pl
from pydantic import Field

from curate.core.operator import Filter, OperatorConfig, StepContext, register
from curate.review.labelstudio import VERDICTS, read_verdicts

REVIEW_COLUMNS = ("review_verdict", "review_note")


class ReviewFilterConfig(OperatorConfig):
    file: Path = Field(description="Label Studio JSON export of the tasks `curate review` wrote (a relative path "
                                   "is from the current folder). The step's cache key is its config: give each "
                                   "review round's export its own file name.")
    drop: list[str] = Field(["wrong"], description=f"Verdicts whose traces are rejected ({', '.join(VERDICTS)}).")
    keep_unreviewed: bool = Field(True, description="Keep traces nobody reviewed (their review_verdict is null).")


@register
class ReviewFilter(Filter[ReviewFilterConfig]):
    """Join human verdicts (Label Studio export) by trace_id as review_verdict and review_note;
    reject the traces whose verdict is in `drop` ('review_rejected') and, unless
    keep_unreviewed, those without one ('review_missing')."""

    name = "review_filter"
    Config = ReviewFilterConfig
    reads: ClassVar[tuple[str, ...]] = ("trace_id",)
    adds: ClassVar[tuple[str, ...]] = ("reject_reason", *REVIEW_COLUMNS)
    reject_reasons = ("review_rejected", "review_missing")

    def check_config(self, recipe_dir: Path) -> list[str]:
        unknown = sorted(set(self.config.drop) - set(VERDICTS))
        problems = []
        if unknown:
            problems.append(f"drop: unknown verdict(s) {', '.join(unknown)}; verdicts are {', '.join(VERDICTS)}")
        if not self.config.file.is_file():
            problems.append(f"file: {self.config.file} does not exist (export the project from Label Studio as JSON)")
        return problems

    def setup(self, ctx: StepContext) -> None:
        self.verdicts = read_verdicts(self.config.file)

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        reviewed = frame.drop([c for c in REVIEW_COLUMNS if c in frame.columns]).join(
            self.verdicts, on="trace_id", how="left", maintain_order="left")
        verdict = pl.col("review_verdict")
        reason = (pl.when(verdict.is_in(self.config.drop)).then(pl.lit("review_rejected"))
                  .when(verdict.is_null() & (not self.config.keep_unreviewed)).then(pl.lit("review_missing")))
        ctx.count("reviewed", reviewed.select(verdict.is_not_null().sum()).item())
        return reviewed.with_columns(reject_reason=reason)

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        return f"{int(metrics.get('reviewed', 0))} traces reviewed, {int(metrics.get('rejected', 0))} rejected"

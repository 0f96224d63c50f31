"""`grade`: per-problem difficulty from verified traces (`select_difficulty` is in select/).

Grading aggregates the trace table twice (problem x teacher, then problem) and joins the
per-problem columns back onto every trace row, so later stages and audits can read a
trace's difficulty next to it. Rows whose `correct` is null (the verifier could not
decide) are not samples: they count in neither the numerator nor the denominator.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field

from curate.core.operator import Operator, StepContext, register
from curate.passrate import BandConfig, band_expr, interval

GRADE_COLUMNS = (
    "n_samples", "n_correct", "pass_rate", "wilson_low", "wilson_high", "n_teachers",
    "teacher_pass_rates", "teacher_variance", "teacher_cv", "teacher_disagreement", "band",
)


class GradeConfig(BandConfig):
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the pass-rate interval.")
    interval: Literal["wilson", "jeffreys"] = Field(
        "wilson", description="Interval for wilson_low/wilson_high: Wilson score or Jeffreys (Beta)."
    )
    teacher_column: str = Field("teacher", description="Column naming who produced each trace.")


@register
class Grade(Operator[GradeConfig]):
    """Per problem: samples, pass rate (overall and per teacher), its confidence interval,
    variance and coefficient of variation of the teachers' pass rates, whether teachers
    disagree (one never solves what another does), and a difficulty band; broadcast onto
    every trace row."""

    name = "grade"
    Config = GradeConfig
    scope = "global"
    adds = GRADE_COLUMNS

    def input_columns(self) -> set[str]:
        return {"problem_id", "correct", self.config.teacher_column}

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        grades = grade_problems(frame, self.config)
        ctx.count("problems_graded", grades.height)
        for band, count in grades.group_by("band").len().iter_rows():
            ctx.count(f"band_{band or 'ungraded'}", count)
        ctx.on_progress(frame.height)
        return frame.drop([c for c in GRADE_COLUMNS if c in frame.columns]).join(
            grades, on="problem_id", how="left", maintain_order="left"
        )


def grade_problems(frame: pl.DataFrame, config: GradeConfig) -> pl.DataFrame:
    """One row per problem with the GRADE_COLUMNS."""
    correct = pl.col("correct")
    per_teacher = (
        frame.lazy()
        .group_by("problem_id", pl.col(config.teacher_column).alias("teacher"))
        .agg(n_samples=correct.count().cast(pl.Int64), n_correct=correct.sum().cast(pl.Int64))
        .with_columns(
            pass_rate=pl.when(pl.col("n_samples") > 0).then(pl.col("n_correct") / pl.col("n_samples"))
        )
    )
    # Sorted inside each group: float sums must not depend on the order group_by happens to
    # produce (same input, same bits, whichever executor or thread count made the input).
    teacher_rate = pl.col("pass_rate").sort()
    low, high = interval(pl.col("n_correct"), pl.col("n_samples"), config.confidence, config.interval)
    teacher_json = pl.struct("teacher", "pass_rate", "n_samples").sort_by("teacher").struct.json_encode()
    return (
        per_teacher.group_by("problem_id")
        .agg(
            pl.col("n_samples").sum(),
            pl.col("n_correct").sum(),
            n_teachers=teacher_rate.count().cast(pl.Int32),
            teacher_pass_rates=pl.lit("[") + teacher_json.str.join(",") + pl.lit("]"),
            # Spelled out: polars' var() can differ in the last bit with the input's memory layout.
            teacher_variance=((teacher_rate - teacher_rate.mean()) ** 2).mean(),
            teacher_mean=teacher_rate.mean(),
            teacher_min=teacher_rate.min(),
            teacher_max=teacher_rate.max(),
        )
        .with_columns(
            pass_rate=pl.when(pl.col("n_samples") > 0).then(pl.col("n_correct") / pl.col("n_samples"))
        )
        .with_columns(
            wilson_low=low,
            wilson_high=high,
            teacher_cv=pl.when(pl.col("teacher_mean") > 0).then(
                pl.col("teacher_variance").sqrt() / pl.col("teacher_mean")
            ),
            teacher_disagreement=(pl.col("n_teachers") >= 2)
            & (pl.col("teacher_min") == 0)
            & (pl.col("teacher_max") > 0),
            band=band_expr(pl.col("pass_rate"), config.band_edges, config.band_names),
        )
        .select("problem_id", *GRADE_COLUMNS)
        .collect()
    )

"""Operators for runner tests: slow enough to be killed mid-step, and they log each call."""

from __future__ import annotations

import time

import polars as pl
from pydantic import Field

from curate.core.operator import Filter, Operator, OperatorConfig, register


class SlowCopyConfig(OperatorConfig):
    log: str = Field(description="File that gets one line per processed chunk.")
    seconds: float = Field(0.0, description="Sleep per chunk.")


@register
class SlowCopy(Operator):
    """Adds `length` = len(problem), one chunk at a time, logging each chunk it processes."""

    name = "slow_copy"
    Config = SlowCopyConfig
    reads = ("problem",)
    adds = ("length",)

    def apply(self, frame: pl.DataFrame, ctx) -> pl.DataFrame:
        time.sleep(self.config.seconds)
        with open(self.config.log, "a") as handle:
            handle.write(f"{ctx.step_id} {frame.height} {frame['problem_id'][0] if frame.height else '-'}\n")
        return frame.with_columns(length=pl.col("problem").str.len_chars())


class DropLongConfig(OperatorConfig):
    max_length: int = Field(description="Longest problem kept, in characters.")


@register
class DropLong(Filter):
    """Rejects problems longer than max_length, with reason 'too_long'."""

    name = "drop_long"
    Config = DropLongConfig
    reads = ("length",)

    def reason(self) -> pl.Expr:
        return pl.when(pl.col("length") > self.config.max_length).then(pl.lit("too_long"))

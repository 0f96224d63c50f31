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
        ctx.count("requests", frame.height)  # stands for generation cost: run.json sums it per attempt
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

    def rejects(self, measures) -> pl.Expr:
        return pl.when(pl.col("length") > self.config.max_length).then(pl.lit("too_long"))


class CachedLengthConfig(OperatorConfig):
    compute_log: str = Field(description="File that gets one line per row actually computed.")
    seconds_per_row: float = Field(0.0, description="Sleep per computed row.")


@register
class CachedLength(Operator):
    """Like a generation step: each row's result is stored in a durable per-row cache the
    moment it is computed, and a cached row is never computed again."""

    name = "cached_length"
    Config = CachedLengthConfig
    reads = ("problem",)
    adds = ("length",)

    def apply(self, frame: pl.DataFrame, ctx) -> pl.DataFrame:
        import os

        cache = ctx.cache_dir / "cached_length"
        cache.mkdir(parents=True, exist_ok=True)
        lengths = []
        for problem_id, problem in zip(frame["problem_id"], frame["problem"], strict=True):
            entry = cache / problem_id
            if not entry.exists():
                time.sleep(self.config.seconds_per_row)
                # Stored first (atomically), then logged: a worker killed in between loses
                # the log line, never the result, so no row is ever computed twice.
                partial = cache / f".{problem_id}.{os.getpid()}"
                partial.write_text(str(len(problem)))
                os.replace(partial, entry)
                with open(self.config.compute_log, "a") as handle:
                    handle.write(f"{problem_id}\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            lengths.append(int(entry.read_text()))
        return frame.with_columns(length=pl.Series(lengths, dtype=pl.Int64))

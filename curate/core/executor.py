"""Executors run a batch operator over a frame, one checkpointed chunk at a time.

Both executors cut the frame into the same chunks and write each finished chunk to the
same part file (`rows-START-END.parquet`, atomically), so a step interrupted under one
executor resumes under either, and the assembled output is identical: parts are read
back in row order. Global operators always run in the driver process (see the runner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.core.io import write_parquet
from curate.core.operator import Operator, StepContext


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    part: Path


def plan_chunks(rows: int, chunk_size: int, parts_dir: Path) -> list[Chunk]:
    # An empty input is still one (empty) chunk, so the operator fixes the output schema.
    starts = range(0, max(rows, 1), chunk_size)
    return [Chunk(s, min(s + chunk_size, rows), parts_dir / f"rows-{s:012d}-{min(s + chunk_size, rows):012d}.parquet")
            for s in starts]


def assemble(chunks: list[Chunk]) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(c.part) for c in chunks], how="diagonal_relaxed")


RowsDone = Callable[[int], None]


class LocalExecutor:
    """Chunks in order, in this process."""

    name = "local"

    def run_batch(self, operator: Operator, frame: pl.DataFrame, chunk_size: int, ctx: StepContext,
                  rows_done: RowsDone) -> pl.DataFrame:
        operator.setup(ctx)
        chunks = plan_chunks(frame.height, chunk_size, ctx.step_dir / "parts")
        try:
            for chunk in chunks:
                if not chunk.part.exists():
                    write_parquet(operator.apply(frame.slice(chunk.start, chunk.end - chunk.start), ctx), chunk.part)
                rows_done(chunk.end - chunk.start)
        finally:
            operator.teardown()  # GPU engines go before the next step (or training) needs the memory
        return assemble(chunks)


def make_executor(name: str, address: str | None = None, workers: int | None = None):
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from curate.core.ray_executor import RayExecutor

        return RayExecutor(address=address, workers=workers)
    raise ValueError(f"unknown executor {name!r} (known: local, ray)")

"""Run batch operators on Ray Data: one block per chunk, a pool of actors per step.

Each actor builds the operator once (`setup`: a model per actor for generation and
embedding) and turns a block into its part file. The part files, the response cache and
the embedding cache live on a filesystem every node can see (the run and cache
directories), which is what makes a restarted actor or job skip finished work: a block
whose part exists is not recomputed, and a request whose response is cached is not resent.
Actors are restarted and their blocks retried when a worker process dies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import polars as pl

from curate.core.executor import Chunk, RowsDone, assemble, plan_chunks
from curate.core.io import write_parquet
from curate.core.operator import Operator, StepContext

PART_COLUMN = "__curate_part"


class _ChunkWorker:
    """A Ray Data actor: one operator instance, many chunks."""

    def __init__(self, operator_class: type[Operator], config_json: str, step_id: str, step_dir: str,
                 cache_dir: str):
        self.operator = operator_class(operator_class.Config.model_validate_json(config_json))
        self.ctx = StepContext(step_id=step_id, step_dir=Path(step_dir), cache_dir=Path(cache_dir))
        self.operator.setup(self.ctx)

    def __call__(self, block):
        frame = pl.from_arrow(block)
        results = []
        for (part,), chunk in frame.group_by(PART_COLUMN, maintain_order=True):
            part = Path(part)
            self.ctx.metrics.clear()
            if not part.exists():  # a retried block may have finished before its actor died
                write_parquet(self.operator.apply(chunk.drop(PART_COLUMN), self.ctx), part)
            results.append({"part": str(part), "rows": chunk.height, "metrics": json.dumps(dict(self.ctx.metrics))})
        return pl.DataFrame(results, schema={"part": pl.String, "rows": pl.Int64, "metrics": pl.String}).to_arrow()


def pool_size(needs: dict[str, float], cluster: dict[str, float], chunks: int) -> int:
    """Actors per step: as many as the cluster can host at once (GPU operators: its GPUs
    divided by the GPUs one actor needs, not its CPU count), and no more than chunks."""
    gpus = needs.get("num_gpus", 0)
    if gpus:
        fit = int(cluster.get("GPU", 0) // gpus)
        if fit < 1:
            raise RuntimeError(f"this step needs {gpus:g} GPU(s) per worker; the Ray cluster has "
                               f"{cluster.get('GPU', 0):g}")
    else:
        fit = int(cluster.get("CPU", 1) // max(needs.get("num_cpus", 1), 1e-9))
    return max(1, min(chunks, fit))


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address
        self.workers = workers

    def _init(self):
        import ray

        if not ray.is_initialized():
            # address=None starts a local instance; "auto" or "ray://..." joins a cluster.
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        return ray

    def run_batch(self, operator: Operator, frame: pl.DataFrame, chunk_size: int, ctx: StepContext,
                  rows_done: RowsDone) -> pl.DataFrame:
        chunks = plan_chunks(frame.height, chunk_size, ctx.step_dir / "parts")
        pending = [c for c in chunks if not c.part.exists()]
        rows_done(sum(c.end - c.start for c in chunks if c not in pending))
        if pending:
            self._run_pending(operator, frame, pending, ctx, rows_done)
        return assemble(chunks)

    def _run_pending(self, operator: Operator, frame: pl.DataFrame, pending: list[Chunk], ctx: StepContext,
                     rows_done: RowsDone) -> None:
        ray = self._init()
        blocks = [
            frame.slice(c.start, c.end - c.start).with_columns(pl.lit(str(c.part)).alias(PART_COLUMN)).to_arrow()
            for c in pending
        ]
        workers = self.workers or pool_size(operator.resources(), ray.cluster_resources(), len(pending))
        results = ray.data.from_arrow(blocks).map_batches(
            _ChunkWorker,
            fn_constructor_kwargs={
                "operator_class": type(operator),
                "config_json": operator.config.model_dump_json(),
                "step_id": ctx.step_id,
                "step_dir": str(ctx.step_dir),
                "cache_dir": str(ctx.cache_dir),
            },
            batch_size=None,  # a whole block, i.e. exactly one chunk, per call
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=operator.resources().get("num_cpus", 1),
            num_gpus=operator.resources().get("num_gpus", 0),
            # Ray Data restarts dead actors and retries their blocks by default
            # (max_restarts=-1, max_task_retries=-1); test_ray's kill test relies on it.
        )
        for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in cast(pl.DataFrame, pl.from_arrow(batch)).iter_rows(named=True):  # a Table: a DataFrame
                for name, value in json.loads(row["metrics"]).items():
                    ctx.count(name, value)
                rows_done(row["rows"])

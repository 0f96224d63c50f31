"""Overhead of the Ray executor against the local one, on a CPU-only trace pipeline.

    python bench/ray.py [--rows 100000] [--chunk 10000]

Both executors run the same batch filters (truncation, repetition, hesitation) chunk by
chunk with part-file checkpoints, then the global `grade` step, which runs in the driver
under either executor. Ray's start-up (ray.init) is reported separately from the step
time. Global stages, embedding for dedup among them, cost the same under both.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

# This file is named ray.py: keep its folder off sys.path so `import ray` finds Ray.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import polars as pl  # noqa: E402
import ray  # noqa: E402

_spec = importlib.util.spec_from_file_location("prune_bench", HERE / "prune.py")
_prune_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_prune_bench)
synthetic_chunk = _prune_bench.synthetic_chunk  # the prune bench's realistic synthetic traces

from curate.catalogue import registry  # noqa: E402
from curate.core.executor import LocalExecutor  # noqa: E402
from curate.core.operator import StepContext, split_rejections  # noqa: E402
from curate.core.ray_executor import RayExecutor  # noqa: E402

BATCH_STEPS = ("truncation_filter", "repetition_filter", "hesitation_filter")


def pipeline(executor, frame: pl.DataFrame, chunk: int, workdir: Path) -> tuple[pl.DataFrame, float]:
    operators = registry()
    started = time.perf_counter()
    for name in BATCH_STEPS:
        cls = operators[name]
        ctx = StepContext(step_id=name, step_dir=workdir / name, cache_dir=workdir / "cache")
        frame, _ = split_rejections(executor.run_batch(cls(cls.Config()), frame, chunk, ctx, lambda rows: None))
    grade = operators["grade"]
    ctx = StepContext(step_id="grade", step_dir=workdir / "grade", cache_dir=workdir / "cache")
    frame = grade(grade.Config()).apply(frame, ctx)
    return frame, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    frame = synthetic_chunk(args.rows, seed=0, start=0)
    with tempfile.TemporaryDirectory() as tmp:
        local_out, local_s = pipeline(LocalExecutor(), frame, args.chunk, Path(tmp) / "local")
        init_started = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - init_started
        ray_out, ray_s = pipeline(RayExecutor(workers=args.workers), frame, args.chunk, Path(tmp) / "ray")
        ray.shutdown()
    assert ray_out.equals(local_out), "the Ray executor changed the output"
    print(f"rows: {args.rows:,}, chunk: {args.chunk:,}, Ray workers: {args.workers}")
    print(f"local executor : {local_s:7.2f} s  {args.rows / local_s:10,.0f} rows/s (baseline)")
    print(f"ray executor   : {ray_s:7.2f} s  {args.rows / ray_s:10,.0f} rows/s  ({ray_s / local_s:.2f}x local)")
    print(f"ray.init       : {init_s:7.2f} s  (once per job)")
    print("outputs identical: yes")


if __name__ == "__main__":
    main()

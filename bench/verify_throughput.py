"""Verify throughput on a scaled set of real outputs (issue 19), for whichever `curate` is
on PYTHONPATH (so the same script measures the old and the new code on the same rows).

    python bench/realdata/scale_verify.py /path/to/shared/data --rows 20000 --out /tmp/verify_20k.parquet
    PYTHONPATH=. python bench/verify_throughput.py /tmp/verify_20k.parquet --teacher skyt1_27b \
        --rows 4000 --cache-dir /tmp/vcache [--json out.json]

Prints rows, wall seconds and rows/s (on the machine as loaded), CPU seconds of this
process and all its descendants (psutil, sampled), and `rows_per_cpu_s_x2`: the rows/s two idle cores would give
(2 x rows / CPU seconds; the figure load does not distort), agreement with the careful
label (an output cut off inside its thought or solution block counted as not correct) and the verdict
counts. A fresh --cache-dir measures a cold cache; the same one again a warm cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil

from curate.core.operator import StepContext
from curate.verify.operators import Verify

try:
    from curate.answers.math import close_workers
except ImportError:  # the old code path: its pool is shut down inside verify_pairs

    def close_workers() -> None:
        pass


class DescendantCpu:
    """CPU seconds of every descendant process (workers, a forkserver's children), sampled
    every 0.1 s: the old code's pool workers are not our children, so RUSAGE_CHILDREN
    misses them. A process that ends between samples loses at most 0.1 s."""

    def __init__(self):
        self.seen: dict[int, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            for child in psutil.Process().children(recursive=True):
                try:
                    self.seen[child.pid] = sum(child.cpu_times()[:2])
                except psutil.Error:
                    continue

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return sum(self.seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parquet", type=Path)
    parser.add_argument("--teacher", help="only this teacher's rows (skyt1_27b: long CoT)")
    parser.add_argument("--rows", type=int, help="first N rows (after --teacher)")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    frame = pl.read_parquet(args.parquet)
    if args.teacher:
        frame = frame.filter(pl.col("teacher") == args.teacher)
    if args.rows:
        frame = frame.head(args.rows)
    ctx = StepContext(step_id="verify", step_dir=Path(tempfile.mkdtemp(prefix="vbench-")), cache_dir=args.cache_dir)
    op = Verify(Verify.Config(workers=args.workers))
    sampler = DescendantCpu()
    cpu_before = sum(psutil.Process().cpu_times()[:2])
    started = time.perf_counter()
    op.setup(ctx)
    out = op.apply(frame, ctx)
    close_workers()
    seconds = time.perf_counter() - started
    cpu = sum(psutil.Process().cpu_times()[:2]) - cpu_before + sampler.stop()
    # Careful label, with an output cut off inside its thought or its solution block counted
    # as not correct (truncated), as in set C.
    text = pl.col("completion")
    unclosed = pl.any_horizontal(
        text.str.contains(f"<|begin_of_{part}|>", literal=True) & ~text.str.contains(f"<|end_of_{part}|>", literal=True)
        for part in ("thought", "solution")
    )
    label = pl.col("label") & ~unclosed
    agree = out.select(pl.col("correct").fill_null(False).eq(label).sum()).item()
    result = {"label": args.label, "rows": out.height, "seconds": round(seconds, 2),
              "rows_per_s": round(out.height / seconds, 1), "cpu_seconds": round(cpu, 2),
              "rows_per_cpu_s_x2": round(2 * out.height / cpu, 1), "agreement": f"{agree}/{out.height}",
              "statuses": dict(sorted(out["verify_status"].value_counts().rows()))}
    print(json.dumps(result), flush=True)
    if args.json:
        with args.json.open("a") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

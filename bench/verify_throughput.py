"""Verify throughput on a scaled set of real outputs (issue 19), for whichever `curate` is
on PYTHONPATH (so the same script measures the old and the new code on the same rows).

    python bench/realdata/scale_verify.py /path/to/shared/data --rows 20000 --out /tmp/verify_20k.parquet
    PYTHONPATH=. python bench/verify_throughput.py /tmp/verify_20k.parquet --teacher skyt1_27b \
        --rows 4000 --cache-dir /tmp/vcache [--json out.json]

Prints rows, wall seconds and rows/s (on the machine as loaded), CPU seconds of this
process and its workers, and `rows_per_cpu_s_x2`: the rows/s two idle cores would give
(2 x rows / CPU seconds; the figure load does not distort), agreement with the careful
label (an unclosed reasoning block counted as not correct, as in set C) and the verdict
counts. A fresh --cache-dir measures a cold cache; the same one again a warm cache.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

from curate.core.operator import StepContext
from curate.verify.operators import Verify

try:
    from curate.answers.math import close_workers
except ImportError:  # the old code path: its pool is shut down inside verify_pairs

    def close_workers() -> None:
        pass


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
    started = time.perf_counter()
    op.setup(ctx)
    out = op.apply(frame, ctx)
    close_workers()  # so that the workers' CPU time is counted (RUSAGE_CHILDREN)
    seconds = time.perf_counter() - started
    cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    # Careful label, with an output whose reasoning never closes counted as not correct
    # (truncated), as in set C.
    unclosed = pl.col("completion").str.contains("<|begin_of_thought|>", literal=True) & ~pl.col(
        "completion").str.contains("<|end_of_thought|>", literal=True)
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

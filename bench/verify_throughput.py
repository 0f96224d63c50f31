"""Verify throughput on a scaled set of real outputs (issue 19), for whichever `curate` is
on PYTHONPATH (so the same script measures the old and the new code on the same rows).

    python bench/realdata/scale_verify.py /path/to/shared/data --rows 20000 --out /tmp/verify_20k.parquet
    PYTHONPATH=. python bench/verify_throughput.py /tmp/verify_20k.parquet --teacher skyt1_27b \
        --rows 4000 --cache-dir /tmp/vcache [--json out.json]

Prints rows, seconds, rows/s, agreement with the careful label and the verdict counts.
A fresh --cache-dir measures a cold cache; the same one again measures a warm cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from curate.core.operator import StepContext
from curate.verify.operators import Verify


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
    seconds = time.perf_counter() - started
    agree = out.select(pl.col("correct").eq_missing(pl.col("label")).sum()).item()
    result = {"label": args.label, "rows": out.height, "seconds": round(seconds, 2),
              "rows_per_s": round(out.height / seconds, 1), "agreement": f"{agree}/{out.height}",
              "statuses": dict(sorted(out["verify_status"].value_counts().rows()))}
    print(json.dumps(result), flush=True)
    if args.json:
        with args.json.open("a") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

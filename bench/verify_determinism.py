"""Are verify's verdicts the same across runs on a loaded machine? (issue 19)

    PYTHONPATH=. python bench/verify_determinism.py /tmp/verify_20k.parquet --rows 3000 --runs 2

Runs `verify` on the same rows `--runs` times, each with a fresh (empty) verdict cache, so
every pair is decided again, and counts rows whose verify_status or correct differ.
Run it while the machine is loaded (other jobs, or `bench/verify_throughput.py` alongside).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from common import load  # noqa: E402
from evaluate import trace_frame  # noqa: E402

from curate.core.operator import StepContext  # noqa: E402
from curate.verify.operators import Verify  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parquet", type=Path, help="scaled set (scale_verify.py); the set C heldout rows are added")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    scaled = pl.read_parquet(args.parquet).head(args.rows).select("domain", "reference_answer", "tests", "answer_text",
                                                                   "completion", "problem", "finish_reason")
    set_c = trace_frame(load("verify_rows", "heldout"), "completion", "reference").select(scaled.columns)
    frame = pl.concat([scaled, set_c.cast(scaled.schema)])
    outcomes = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            ctx = StepContext(step_id="verify", step_dir=Path(cache), cache_dir=Path(cache))
            op = Verify(Verify.Config())
            started = time.perf_counter()
            op.setup(ctx)
            out = op.apply(frame, ctx)
            seconds = time.perf_counter() - started
        outcomes.append(out.select("verify_status", "correct"))
        print(json.dumps({"run": run + 1, "rows": out.height, "seconds": round(seconds, 1),
                          "statuses": dict(sorted(out["verify_status"].value_counts().rows()))}), flush=True)
    first = outcomes[0]
    differ = [int((~(o["verify_status"].eq_missing(first["verify_status"])
                     & o["correct"].eq_missing(first["correct"]))).sum()) for o in outcomes[1:]]
    print(json.dumps({"rows_differing_from_run_1": differ}))


if __name__ == "__main__":
    main()

"""Throughput of `arithmetic_check` (rows/s) on real traces tiled to N rows.

    PYTHONPATH=. python bench/arith_throughput.py --rows 200000 --repeats 3 [--traces ../shared/data/traces/*.jsonl]

Rows: bench/realdata set B (GSM8K reference solutions and Qwen2.5-14B MATH-500 short-CoT
outputs, clean and planted), repeated until N. Each repeat starts with cold memo caches
(a fresh process would), so distinct-chain reuse comes only from the tiling itself; a
second figure makes every copy distinct (copy k appends the digits of k to every integer
of the text, so every equation of every copy is a new string to evaluate: a worst case,
since real pools repeat many small equations). With --traces, also every output of SkyThought-format
trace files as it is (long chains of thought: the realistic case)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from common import load  # noqa: E402

from curate.core.operator import StepContext  # noqa: E402
from curate.prune import arithmetic  # noqa: E402


def frame(rows: int, distinct: bool) -> pl.DataFrame:
    texts = [r["text"] for split in ("dev", "heldout") for r in load("arith_traces", split)]
    tiled = pl.Series("completion", texts * (rows // len(texts) + 1))[:rows].to_frame()
    if distinct:
        copies = [re.sub(r"(?<![\d.])(\d+)(?![\d.])", rf"\g<1>{n}", text)
                  for n, text in enumerate(tiled["completion"].to_list())]
        tiled = pl.DataFrame({"completion": copies})
    return tiled


def once(data: pl.DataFrame) -> float:
    for memo in vars(arithmetic).values():  # every memo cache of the module, as a fresh process has them
        if hasattr(memo, "cache_clear"):
            memo.cache_clear()
    op = arithmetic.ArithmeticCheck(arithmetic.ArithmeticCheck.Config())
    with tempfile.TemporaryDirectory() as work:
        ctx = StepContext(step_id="arith", step_dir=Path(work) / "step", cache_dir=Path(work) / "cache")
        started = time.perf_counter()
        out = op.apply(data, ctx)
        seconds = time.perf_counter() - started
    assert out.height == data.height
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--distinct-rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--traces", nargs="*", type=Path, default=[], help="SkyThought-format trace files")
    args = parser.parse_args()
    if args.traces:
        outputs = [text for path in args.traces for line in path.read_text().splitlines()
                   for text in json.loads(line)["code"]]
        data = pl.DataFrame({"completion": outputs})
        times = [once(data) for _ in range(args.repeats)]
        names = ", ".join(p.name for p in args.traces)
        print(f"rows={data.height:,} real trace outputs ({names}), "
              f"mean {data['completion'].str.len_chars().mean():,.0f} characters, "
              f"seconds={[round(t, 2) for t in times]} "
              f"rows/s median={data.height / statistics.median(times):,.0f}", flush=True)
    real = pl.DataFrame({"completion": [r["text"] for s in ("dev", "heldout") for r in load("arith_traces", s)]})
    times = [once(real) for _ in range(args.repeats)]
    print(f"rows={real.height:,} real set-B traces as they are, seconds={[round(t, 2) for t in times]} "
          f"rows/s median={real.height / statistics.median(times):,.0f}", flush=True)
    for distinct in (False, True):
        rows = args.distinct_rows if distinct else args.rows
        data = frame(rows, distinct)
        times = [once(data) for _ in range(args.repeats)]
        rates = [rows / t for t in times]
        print(f"rows={rows:,} tiled={'distinct-copies' if distinct else 'repeated'} "
              f"seconds={[round(t, 2) for t in times]} rows/s median={statistics.median(rates):,.0f} "
              f"min={min(rates):,.0f} max={max(rates):,.0f}", flush=True)


if __name__ == "__main__":
    main()

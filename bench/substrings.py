"""Stripped substrings cut two ways: shared (views into the texts) or copied.

curate.substrings copies a column's substrings when they are short on average
(SHARE_ABOVE_BYTES) and shares them otherwise; both give the same text. This measures the
cut alone, for 1 M texts whose substring (after ~1 KB of other text, with white space at
its end) has a lognormal length around each mean. The two ways alternate, 5 repeats each,
in one process; the median is printed, with min and max.

    python bench/substrings.py --rows 1000000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

import curate.substrings as substrings_module


def texts_with_parts(rows: int, mean: int, rng: np.random.Generator) -> tuple[pl.Series, pl.Series, pl.Series]:
    sizes = np.clip(rng.lognormal(np.log(mean), 0.5, size=rows).astype(int), 1, 5000)
    before = rng.integers(200, 2000, size=rows)
    texts = pl.Series(["w" * b + "\n</think>\n\n" + "z" * s + " \n"
                       for b, s in zip(before.tolist(), sizes.tolist(), strict=True)])
    return texts, pl.Series(before + len("\n</think>\n\n")), texts.str.len_bytes().cast(pl.Int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    share_above = substrings_module.SHARE_ABOVE_BYTES
    for mean in (50, 100, 200, 300, 400, 600):
        texts, start, end = texts_with_parts(args.rows, mean, rng)
        seconds: dict[str, list[float]] = {"copied": [], "shared": []}
        for repeat in range(args.repeats):
            for way in ("copied", "shared") if repeat % 2 == 0 else ("shared", "copied"):
                substrings_module.SHARE_ABOVE_BYTES = 0 if way == "shared" else 10**9
                started = time.perf_counter()
                substrings_module.stripped_substrings(texts, start, end)
                seconds[way].append(time.perf_counter() - started)
        print(f"mean {mean:4} bytes: " + "  ".join(
            f"{way} {statistics.median(s):.3f}s ({min(s):.3f}-{max(s):.3f})" for way, s in seconds.items()))
    substrings_module.SHARE_ABOVE_BYTES = share_above


if __name__ == "__main__":
    main()

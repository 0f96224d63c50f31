"""`arithmetic_check` on real, verified-correct traces: how many does it flag (false alarms or
real slips of the teacher), per split, with every flag quoted in context for reading by hand.

    PYTHONPATH=. python bench/arith_longcot.py ../shared/data/traces/*.jsonl --split dev [--show 40]

Traces: SkyThought evaluation outputs (`code` = list of outputs, `score` = correctness labels).
Only outputs labelled correct are checked. The split is bench/realdata's (a hash of the
MATH-500 index): read the dev flags, and measure the heldout split only at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent / "realdata"))
from common import math500_key, split_of  # noqa: E402

from curate.prune.arithmetic import find_false_equations  # noqa: E402


def correct_traces(path: Path, split: str) -> pl.DataFrame:
    rows = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if split != "all" and split_of(math500_key(record["idx"])) != split:
            continue
        rows += [{"idx": record["idx"], "sample": i, "text": text}
                 for i, (text, label) in enumerate(zip(record["code"], record["score"], strict=True)) if label]
    return pl.DataFrame(rows, schema={"idx": pl.Int64, "sample": pl.Int64, "text": pl.String})


def context(text: str, equation: str, width: int = 90) -> str:
    """The equation where the text states it, with `width` characters around it."""
    sides = [re.escape(side.strip()) for side in equation.split(" = ", 1)]  # a worded flag has no " = "
    found = re.search(r"\s*&?=&?\s*".join(sides), text)
    at, end = (found.start(), found.end()) if found else (0, 0)
    return text[max(0, at - width): end + width].replace("\n", "⏎")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    parser.add_argument("--show", type=int, default=0, help="print up to this many flags per file, in context")
    args = parser.parse_args()
    for path in args.traces:
        traces = correct_traces(path, args.split)
        started = time.perf_counter()
        flags = find_false_equations(traces["text"])
        seconds = time.perf_counter() - started
        flagged = traces.with_columns(flags=flags).filter(pl.col("flags").list.len() > 0)
        print(f"{path.name} [{args.split}]: {flagged.height}/{traces.height} correct traces flagged "
              f"({flagged.height / max(traces.height, 1):.2%}), {seconds:.2f}s")
        for row in flagged.head(args.show).iter_rows(named=True):
            for equation in row["flags"]:
                print(f"  idx={row['idx']}.{row['sample']}: {equation!r}\n      … {context(row['text'], equation)} …")


if __name__ == "__main__":
    main()

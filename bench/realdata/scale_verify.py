"""Scale the real teacher outputs (the two MATH-500 trace files: 1,000 outputs, 500 short
CoT + 500 long CoT) up to N verify rows, for a verify throughput bench (issue 19).

    python bench/realdata/scale_verify.py /path/to/shared/data --rows 1000000 --out /tmp/verify_1m.parquet

Writes a parquet with the columns `verify` reads (domain, reference_answer, tests,
answer_text, completion, problem, finish_reason) plus `label` (the careful label),
`teacher`, `source_index` and `copy`. Copy 0 is the real data as is. In later copies,
when both the reference and the last boxed answer are plain numbers, both are shifted by
the same amount (x -> x + 1000*copy), so the (reference, answer) pair is new but its
verdict is unchanged (a = b iff a + k = b + k); other rows repeat as they are.
`--distinct-only` keeps only rows whose pair is new in every copy (then every pair is
distinct, i.e. no dedup of identical pairs helps). Not committed: rebuild it where needed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import careful_label_corrections, last_boxed  # noqa: E402
from common import read_jsonl  # noqa: E402

PLAIN_INT = re.compile(r"^-?\d+$")
FILES = (("qwen25_14b", "math500_qwen25_14b_shortcot"), ("skyt1_27b", "math500_skyt1_27b_longcot"))


def split(completion: str) -> str:
    """answer_text as generate's reasoning split gives it: after the end-of-thought marker,
    nothing when the thought never closes, the whole output when untagged."""
    if "<|end_of_thought|>" in completion:
        return completion.split("<|end_of_thought|>", 1)[1].replace("<|begin_of_solution|>", "").replace(
            "<|end_of_solution|>", "").strip()
    if "<|begin_of_thought|>" in completion:
        return ""
    return completion.strip()


def base_rows(shared: Path) -> list[dict]:
    math500 = read_jsonl(shared / "math500" / "test.jsonl")
    corrections = careful_label_corrections()
    rows = []
    for teacher, name in FILES:
        for record in read_jsonl(shared / "traces" / f"{name}.jsonl"):
            idx = int(record["idx"])
            for output, score in zip(record["code"], record["score"], strict=True):
                rows.append({"teacher": teacher, "source_index": idx, "problem": math500[idx]["problem"],
                             "reference_answer": math500[idx]["answer"], "completion": output,
                             "label": corrections[teacher].get(idx, bool(score))})
    return rows


def shifted(row: dict, copy: int) -> dict | None:
    """The row with reference and boxed answer both shifted, or None if they are not plain integers."""
    box = last_boxed(row["completion"])
    reference = row["reference_answer"].strip()
    if box is None or not PLAIN_INT.match(reference) or not PLAIN_INT.match(box[2].strip()):
        return None
    k = 1000 * copy
    start, end, content = box
    completion = row["completion"][:start] + "\\boxed{" + str(int(content) + k) + "}" + row["completion"][end:]
    return {**row, "reference_answer": str(int(reference) + k), "completion": completion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shared", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--distinct-only", action="store_true")
    args = parser.parse_args()
    base = base_rows(args.shared)
    pool = [r for r in base if shifted(r, 1) is not None] if args.distinct_only else base
    out, copy = [], 0
    while len(out) < args.rows:
        for row in pool:
            if len(out) >= args.rows:
                break
            new = row if copy == 0 else (shifted(row, copy) or row)
            out.append({**new, "copy": copy})
        copy += 1
    frame = pl.DataFrame(out).with_columns(
        domain=pl.lit("math"), tests=pl.lit(None, pl.String), finish_reason=pl.lit(None, pl.String),
        answer_text=pl.col("completion").map_elements(split, return_dtype=pl.String),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(args.out)
    pairs = frame.select("reference_answer", "answer_text").n_unique()
    print(f"{frame.height} rows from {len(pool)} real outputs ({copy} copies); "
          f"distinct (reference, answer_text): {pairs}; -> {args.out}")


if __name__ == "__main__":
    main()

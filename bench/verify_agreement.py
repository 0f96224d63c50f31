"""Agreement of `verify` with graded labels on real traces, plus reference-parsing coverage.

Traces: SkyThought evaluation outputs (one JSON record per problem: `code` = list of model
outputs, `score` = their correctness labels, `solution` / `gt` = the reference). Every
output becomes one trace row, is verified by the `verify` operator, and is compared with
its label. Prints the confusion matrix and every disagreement.

    python bench/verify_agreement.py ../shared/data/traces/*.jsonl \
        --math500 ../shared/data/math500/test.jsonl --gsm8k ../shared/data/gsm8k/*.jsonl

Defaults: the trace samples and reference copies in tests/fixtures/verify.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

from curate.answers.extract import gsm8k_reference, math_reference
from curate.answers.math import verify_pairs
from curate.core.operator import StepContext
from curate.verify.operators import Verify

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "verify"
MATH500 = Path(__file__).resolve().parents[1] / "curate" / "data" / "math500" / "test.jsonl"
SOLUTION_START = "<|begin_of_solution|>"


def load_traces(paths: list[Path], reference: str) -> pl.DataFrame:
    """One row per (record, output). The answer text of a Sky-T1 style output is its
    solution part; other outputs are all answer."""
    rows = []
    for path in paths:
        teacher = path.name.split(".")[0]
        for line_number, line in enumerate(path.read_text().splitlines(), 1):
            record = json.loads(line)
            if reference == "solution":
                reference_answer = math_reference(record["solution"])
            else:
                reference_answer = record[reference]
            if reference_answer is None:
                sys.exit(f"{path}:{line_number}: no reference answer in field {reference!r}")
            for index, (completion, label) in enumerate(zip(record["code"], record["score"], strict=True)):
                answer_text = completion.split(SOLUTION_START, 1)[1] if SOLUTION_START in completion else completion
                rows.append({
                    "problem_id": str(record["idx"]), "teacher": teacher, "sample_index": index,
                    "domain": "math", "reference_answer": reference_answer, "tests": None,
                    "completion": completion, "answer_text": answer_text, "label": bool(label),
                    "their_answer": (record.get("pred") or [None] * (index + 1))[index],
                })
    return pl.DataFrame(rows)


def agreement(paths: list[Path], reference: str, workers: int) -> float:
    traces = load_traces(paths, reference)
    ctx = StepContext(step_id="verify", step_dir=Path("."), cache_dir=Path("."))
    operator = Verify(Verify.Config(workers=workers))
    started = time.perf_counter()
    verified = operator.apply(traces, ctx)
    seconds = time.perf_counter() - started
    ours = pl.when(pl.col("correct").is_null()).then(pl.lit("undecided")).otherwise(
        pl.when(pl.col("correct")).then(pl.lit("correct")).otherwise(pl.lit("wrong"))
    )
    verified = verified.with_columns(ours=ours)
    agree = verified.filter(pl.col("correct").eq_missing(pl.col("label"))).height
    print(f"traces: {verified.height} from {len(paths)} files; verified in {seconds:.1f}s "
          f"({verified.height / seconds:.0f} traces/s, {workers} workers)")
    print(f"agreement with labels: {agree}/{verified.height} = {agree / verified.height:.2%}\n")
    print("confusion (rows: label, columns: ours):")
    matrix = verified.pivot(on="ours", index="label", values="problem_id", aggregate_function="len").fill_null(0)
    print(matrix.sort("label"))
    print("\nextraction methods:", dict(verified.group_by("extraction_method").len().iter_rows()))
    print("verify statuses:", dict(verified.group_by("verify_status").len().iter_rows()))
    disagreements = verified.filter(~pl.col("correct").eq_missing(pl.col("label"))).sort("teacher", "problem_id")
    print(f"\ndisagreements ({disagreements.height}):")
    for row in disagreements.iter_rows(named=True):
        print(f"- {row['teacher']} idx={row['problem_id']}: label={row['label']} ours={row['ours']} "
              f"({row['verify_status']}) reference={row['reference_answer']!r} ours_extracted="
              f"{row['extracted_answer']!r} via {row['extraction_method']}; their_pred={row['their_answer']!r}")
    return agree / verified.height


def reference_coverage(math500: list[Path], gsm8k: list[Path], workers: int) -> None:
    """Every record must yield a reference; MATH's boxed answer must equal its `answer` field."""
    pairs = []
    for path in math500:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        boxed = [math_reference(r["solution"]) for r in records]
        missing = sum(b is None for b in boxed)
        pairs += [(r["answer"], b) for r, b in zip(records, boxed, strict=True) if b is not None]
        print(f"{path.name}: {len(records) - missing}/{len(records)} records have a boxed reference")
    if pairs:
        verdicts = verify_pairs(pairs, workers=workers)
        same = sum(v.correct is True for v in verdicts)
        print(f"  boxed reference equals the `answer` field (math-verify): {same}/{len(pairs)}")
        for (answer, boxed), verdict in zip(pairs, verdicts, strict=True):
            if verdict.correct is not True:
                print(f"  differs: answer={answer!r} boxed={boxed!r} ({verdict.status}: {verdict.reason})")
    for path in gsm8k:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        finals = [gsm8k_reference(r["answer"]) for r in records]
        numeric = sum(f is not None and _is_number(f) for f in finals)
        print(f"{path.name}: {numeric}/{len(records)} records have a numeric '####' reference")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="*", type=Path, help="SkyThought-format trace files")
    parser.add_argument("--reference", default="solution", choices=["solution", "gt", "answer"],
                        help="reference: the boxed answer of `solution` (default), or the gt/answer field")
    parser.add_argument("--math500", nargs="*", type=Path, default=[MATH500])
    parser.add_argument("--gsm8k", nargs="*", type=Path, default=[FIXTURES / "gsm8k_test_300.jsonl"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    traces = args.traces or sorted((FIXTURES / "traces").glob("*.jsonl"))
    agreement(traces, args.reference, args.workers)
    print()
    reference_coverage(args.math500, args.gsm8k, args.workers)


if __name__ == "__main__":
    main()

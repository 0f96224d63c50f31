"""Import + verify of a large trace dump, side by side with polars reading the same file.

Writes a synthetic one-trace-per-row JSON Lines dump (problem, numeric reference answer,
completion with <think> reasoning and a \\boxed{} answer, model, finish_reason, usage
token counts, a 0/1 label), then, each in a fresh process so peak memory is its own:

- `polars`: `pl.read_ndjson(path)` (the peer: reading the file, nothing else);
- `import`: the trace source (`load_traces`): read, type checks, reasoning split, labels,
  ids, token counts from the usage fields;
- `import+verify`: the same, then the `verify` operator on every row.

polars and import alternate, `--repeats` times each; verify runs once (it dominates).
`--tokenizer` counts the tokens the dump does not give (the synthetic dump gives them all).
`--skythought PATH` imports a real SkyThought-format file (`code` = generations, `score` =
labels) instead, `--copies` times over (problems renamed per copy), with no token counts
of its own: the tokenizer counts every part.

    python bench/import.py --rows 1000000 --repeats 3
    python bench/import.py --skythought math500_skyt1_27b_longcot.jsonl --copies 9 --tokenizer bundled:smollm2
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["Let me compute {a} + {b} first.", "So the total is {c}.", "Wait, let me double-check that.",
             "Multiplying by {a} gives {d}.", "Hmm, that does not look right; recount the terms.",
             "The remaining part is {b}, which leaves {c}.", "Therefore the result should be {c}."]


def write_dump(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` traces over rows/8 problems; reasoning lengths lognormal (median ~900
    characters, p99 ~6,000), answers ~60 characters, 3 % cut off mid-thought."""
    rng = random.Random(seed)
    problems = max(rows // 8, 1)
    pool = []
    for _ in range(4096):  # distinct reasoning texts, reused with a per-row prefix
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        words = int(min(rng.lognormvariate(5.1, 0.8), 4000))
        text = []
        while sum(len(s) for s in text) < words * 6:
            text.append(rng.choice(SENTENCES).format(a=a, b=b, c=a + b, d=a * b))
        pool.append(" ".join(text))
    frame = pl.DataFrame({"row": range(rows)}).with_columns(
        problem_index=pl.col("row") % problems, pool_index=(pl.col("row") * 7919) % len(pool))
    frame = frame.with_columns(
        question=pl.format("Problem {}: a shop sells {} apples a day. How many apples does it sell in {} days?",
                           "problem_index", pl.col("problem_index") % 97 + 3, pl.col("problem_index") % 13 + 2),
        reference=(pl.col("problem_index") % 97 + 3) * (pl.col("problem_index") % 13 + 2),
        reasoning=pl.format("Trace {}. {}", "row", pl.Series(pool).gather(frame["pool_index"])),
        truncated=(pl.col("row") % 33) == 0,
        wrong=(pl.col("row") % 5) == 0,
    ).with_columns(
        answer=pl.col("reference") + pl.col("wrong").cast(pl.Int64),
    ).with_columns(
        output=pl.when(pl.col("truncated")).then(pl.format("<think>\n{}", "reasoning"))
        .otherwise(pl.concat_str(pl.lit("<think>\n"), "reasoning", pl.lit("\n</think>\n\nThe shop sells $\\boxed{"),
                                 pl.col("answer").cast(pl.String), pl.lit("}$ apples."))),
        model=pl.format("teacher-{}", pl.col("row") % 4),
        finish_reason=pl.when(pl.col("truncated")).then(pl.lit("length")).otherwise(pl.lit("stop")),
        prompt_tokens=pl.col("question").str.len_chars() // 4,
        completion_tokens=pl.col("reasoning").str.len_chars() // 4 + 12,
        is_correct=(~pl.col("wrong") & ~pl.col("truncated")).cast(pl.Int64),
    )
    frame.select("question", "reference", "output", "model", "finish_reason", "prompt_tokens",
                 "completion_tokens", "is_correct").write_ndjson(path)


SOURCE = {"name": "bench", "kind": "traces", "fields": {"problem": "question", "answer": "reference"},
          "traces": {"completion": "output", "label": "is_correct", "finish_reason": "finish_reason",
                     "teacher": {"field": "model"}, "prompt_tokens": "prompt_tokens",
                     "completion_tokens": "completion_tokens"}}
SKYTHOUGHT = {"name": "bench", "kind": "traces", "fields": {"problem": "question", "answer": "gt"},
              "traces": {"shape": "generations", "completion": "code", "label": "score", "teacher": "sky"}}


def write_copies(path: Path, original: Path, copies: int) -> None:
    """`copies` copies of a SkyThought file, each problem renamed per copy (distinct ids)."""
    records = [json.loads(line) for line in original.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        for copy in range(copies):
            for record in records:
                out.write(json.dumps({**record, "question": f"{record['question']} (copy {copy})"}) + "\n")


def child(task: str, path: str, workers: int, tokenizer: str, skythought: bool) -> None:
    """Run one task in this process; print seconds (after imports), rows and peak RSS as JSON."""
    if task == "polars":
        started = time.perf_counter()
        rows = pl.read_ndjson(path).height
        phases = {}
    else:
        from curate.sources.config import Source
        from curate.sources.traces import load_traces

        config = SKYTHOUGHT if skythought else SOURCE
        source = Source.model_validate({**config, "path": path, "traces": {**config["traces"], "tokenizer": tokenizer}})
        started = time.perf_counter()
        traces = load_traces(source, Path(path).parent)
        rows, phases = traces.height, {"import": time.perf_counter() - started}
        if task == "import+verify":
            from curate.core.operator import StepContext
            from curate.verify.operators import Verify

            verify_started = time.perf_counter()
            ctx = StepContext(step_id="verify", step_dir=Path(path).parent, cache_dir=Path(path).parent)
            verified = Verify(Verify.Config(workers=workers)).apply(traces, ctx)
            phases["verify"] = time.perf_counter() - verify_started
            agree = verified.select(pl.col("correct").eq_missing(pl.col("source_correct")).mean()).item()
            phases["label_agreement"] = agree
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"task": task, "rows": rows, "seconds": seconds, "peak_mib": peak_mib, **phases}))


def measure(task: str, path: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", task, str(path), "--workers", str(args.workers),
               "--tokenizer", args.tokenizer] + (["--skythought", args.skythought] if args.skythought else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="verify's math-verify worker processes")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--tokenizer", default="chars/4", help="counts the tokens the dump does not give")
    parser.add_argument("--skythought", metavar="PATH", help="import this SkyThought-format file instead")
    parser.add_argument("--copies", type=int, default=1, help="with --skythought: copies of the file")
    parser.add_argument("--child", nargs=2, metavar=("TASK", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, workers=args.workers, tokenizer=args.tokenizer, skythought=bool(args.skythought))
    if args.write:
        return write_dump(Path(args.write), args.rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dump.jsonl"
        started = time.perf_counter()
        # In a child process: a child's peak memory counts its parent's at the fork, and
        # building the dump takes gigabytes.
        if args.skythought:
            write_copies(path, Path(args.skythought), args.copies)
            args.rows = sum(1 for _ in open(path, encoding="utf-8"))
        else:
            subprocess.run([sys.executable, __file__, "--write", str(path), "--rows", str(args.rows)], check=True,
                           cwd=ROOT)
        print(f"dump: {args.rows:,} records, {path.stat().st_size / 2**20:,.0f} MiB, written in "
              f"{time.perf_counter() - started:.1f}s")
        results: dict[str, list[dict]] = {"polars": [], "import": []}
        for repeat in range(args.repeats):
            order = ("polars", "import") if repeat % 2 == 0 else ("import", "polars")
            for task in order:
                results[task].append(measure(task, path, args))
        for task, runs in results.items():
            seconds = [r["seconds"] for r in runs]
            print(f"{task:14} {statistics.median(seconds):7.2f}s (min {min(seconds):.2f}, max {max(seconds):.2f}) "
                  f"{args.rows / statistics.median(seconds) / 1e3:8.0f}k rows/s  "
                  f"peak {max(r['peak_mib'] for r in runs):,.0f} MiB")
        ratio = statistics.median(r["seconds"] for r in results["import"]) / statistics.median(
            r["seconds"] for r in results["polars"])
        print(f"import / polars read: {ratio:.2f}x")
        if not args.no_verify:
            run = measure("import+verify", path, args)
            print(f"import+verify  {run['seconds']:7.2f}s (import {run['import']:.1f}s, verify {run['verify']:.1f}s) "
                  f"{args.rows / run['seconds'] / 1e3:8.1f}k rows/s  peak {run['peak_mib']:,.0f} MiB  "
                  f"label agreement {run['label_agreement']:.4f}")


if __name__ == "__main__":
    main()

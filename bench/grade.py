"""Grade + select_difficulty on synthetic trace rows, and adaptive vs fixed-k sampling.

    python bench/grade.py --rows 1000000 --teachers 4 --samples 8

Trace rows: problems x teachers x samples, each problem with a random true success rate
(a quarter never solved, a quarter always solved, the rest uniform), 2 % of rows
unverified (correct = null). Prints rows/s of `grade`, of `select_difficulty`, and of a
plain polars group_by/join over the same rows as a baseline for the floor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

from curate.core.operator import StepContext, split_rejections
from curate.grade.operators import Grade
from curate.passrate import AdaptiveConfig, band_expr, run_adaptive
from curate.select.operators import SelectDifficulty


def true_rates(problems: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.random(problems)
    return np.where(kind < 0.25, 0.0, np.where(kind < 0.5, 1.0, rng.random(problems)))


def synthetic_traces(rows: int, teachers: int, samples: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    problems = rows // (teachers * samples)
    rates = true_rates(problems, rng)
    problem_index = np.repeat(np.arange(problems), teachers * samples)
    teacher_skill = rng.uniform(-0.2, 0.2, teachers)
    teacher_index = np.tile(np.repeat(np.arange(teachers), samples), problems)
    p = np.clip(rates[problem_index] + teacher_skill[teacher_index] * (rates[problem_index] % 1 > 0), 0, 1)
    correct = rng.random(len(p)) < p
    unverified = rng.random(len(p)) < 0.02
    return pl.DataFrame({
        "problem_id": pl.Series(problem_index).cast(pl.String),
        "teacher": pl.Series(teacher_index).cast(pl.String).str.replace(r"^", "teacher_"),
        "correct": pl.Series(correct).set(pl.Series(unverified), None),
    })


def timed(label: str, rows: int, work):
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"{label:<42} {seconds:7.2f}s  {rows / seconds:>12,.0f} rows/s")
    return result


def bench_grade(rows: int, teachers: int, samples: int) -> None:
    traces = synthetic_traces(rows, teachers, samples, seed=0)
    print(f"{traces.height:,} trace rows, {traces['problem_id'].n_unique():,} problems, {teachers} teachers")
    ctx = StepContext(step_id="grade", step_dir=Path("."), cache_dir=Path("."))
    timed("baseline: group_by(problem).agg(mean)+join", traces.height, lambda: traces.join(
        traces.group_by("problem_id").agg(pass_rate=pl.col("correct").mean()), on="problem_id", how="left"))
    graded = timed("grade", traces.height, lambda: Grade(Grade.Config()).apply(traces, ctx))
    selector = SelectDifficulty(SelectDifficulty.Config(bands=["hard", "medium"], min_samples=8))
    marked = timed("select_difficulty (bands hard, medium)", traces.height, lambda: selector.apply(graded, ctx))
    kept, rejected = split_rejections(marked)
    timed("grade + select_difficulty", traces.height,
          lambda: selector.apply(Grade(Grade.Config()).apply(traces, ctx), ctx))
    reasons = dict(rejected.group_by("reject_reason").len().sort("len").iter_rows())
    print(f"kept {kept.height:,} rows; rejected: {reasons}")


def bench_adaptive(problems: int, k: int, confidence: float, seed: int, band_edges: list[float],
                   correction: str) -> None:
    """Adaptive vs fixed-k with a simulated teacher: samples drawn, and how often the band
    differs from the band of the true rate (fixed-k included, for comparison)."""
    rng = np.random.default_rng(seed)
    rates = dict(zip(map(str, range(problems)), true_rates(problems, rng), strict=True))

    def teacher(plan: pl.DataFrame) -> pl.DataFrame:
        ids, counts = plan["problem_id"].to_list(), plan["n"].to_list()
        p = np.repeat([rates[i] for i in ids], counts)
        return pl.DataFrame({"problem_id": np.repeat(ids, counts), "correct": rng.random(len(p)) < p})

    names = [f"band{i}" for i in range(len(band_edges) + 1)]
    config = AdaptiveConfig(max_samples_per_problem=k, confidence=confidence, band_edges=band_edges,
                            band_names=names, correction=correction)
    started = time.perf_counter()
    adaptive = run_adaptive(pl.DataFrame({"problem_id": list(rates)}), teacher, config)
    seconds = time.perf_counter() - started
    fixed = run_adaptive(pl.DataFrame({"problem_id": list(rates)}), teacher,
                         config.model_copy(update={"initial_samples": k, "max_rounds": 1}))
    truth = pl.DataFrame({"problem_id": list(rates), "p": list(rates.values())}).with_columns(
        truth=band_expr(pl.col("p"), config.band_edges, config.band_names))
    mismatch = lambda result: result.problems.join(truth, on="problem_id").select(  # noqa: E731
        (pl.col("band") != pl.col("truth")).mean()).item()
    summary = adaptive.summary()
    print(f"\nadaptive sampling, {problems:,} problems, cap / fixed k = {k}, band edges {band_edges}, "
          f"confidence {confidence}, correction {correction} ({seconds:.1f}s, {summary['rounds']} rounds)")
    print(f"  samples drawn: adaptive {adaptive.samples_drawn:,} vs fixed-k {fixed.samples_drawn:,} "
          f"-> saved {summary['samples_saved']:,} ({summary['saved_fraction']:.1%})")
    print(f"  band differs from the true rate's band: adaptive {mismatch(adaptive):.1%}, fixed-k {mismatch(fixed):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--teachers", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8, help="samples per teacher per problem")
    parser.add_argument("--adaptive-problems", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=32, help="fixed-k baseline / adaptive cap")
    parser.add_argument("--confidence", type=float, nargs="*", default=[0.95, 0.99])
    parser.add_argument("--band-edges", type=float, nargs="+", default=[0.3, 0.7])
    parser.add_argument("--correction", choices=["bonferroni", "none"], default="bonferroni")
    parser.add_argument("--skip-grade", action="store_true", help="only the adaptive sampling part")
    args = parser.parse_args()
    if not args.skip_grade:
        bench_grade(args.rows, args.teachers, args.samples)
    for confidence in args.confidence:
        bench_adaptive(args.adaptive_problems, args.k, confidence, seed=1, band_edges=args.band_edges,
                       correction=args.correction)


if __name__ == "__main__":
    main()

"""Pass-rate statistics, shared by grading and adaptive sampling: binomial intervals
(Wilson, Jeffreys) as polars expressions, difficulty bands, and the adaptive round planner.

Adaptive sampling spends generation on the problems whose difficulty is still unclear.
Sampling runs in rounds. After each round a problem is *settled* once the confidence
interval of its pass rate lies inside one slice of the band edges (e.g. 0/12 correct puts
the 95 % Wilson interval below 0.3: hard or unsolved, whatever more samples say), and it
gets no more samples; the rest get the next round's samples, fewest-sampled first, until
the total budget or the per-problem cap (the fixed-k baseline) is reached. The final band
is the grading band of the observed pass rate, which lies inside the settled slice, so
`grade` later agrees with what sampling decided.

The policy knows nothing about teachers: `run_adaptive` takes a `sample_fn(plan) -> rows`
where `plan` has columns problem_id, n and the rows have problem_id and correct (plus
anything else the caller wants back, e.g. whole traces).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import polars as pl
from polars.expr.whenthen import ChainedThen, Then
from pydantic import Field, model_validator

from curate.core.operator import OperatorConfig

UNSOLVED, TRIVIAL = "unsolved", "trivial"


def z_score(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    return NormalDist().inv_cdf((1 + confidence) / 2)


def wilson_bounds(successes: pl.Expr, samples: pl.Expr, confidence: float) -> tuple[pl.Expr, pl.Expr]:
    """Wilson score interval of a binomial proportion; null where there are no samples.
    Unlike the normal interval it stays inside [0, 1] and is sensible at 0/n and n/n."""
    z = z_score(confidence)
    n = samples.cast(pl.Float64)
    rate = successes.cast(pl.Float64) / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half_width = z * ((rate * (1 - rate) / n) + z * z / (4 * n * n)).sqrt() / denominator
    valid = samples > 0
    low = pl.when(valid).then((centre - half_width).clip(0.0, 1.0))
    high = pl.when(valid).then((centre + half_width).clip(0.0, 1.0))
    return low, high


def jeffreys_bounds(successes: pl.Expr, samples: pl.Expr, confidence: float) -> tuple[pl.Expr, pl.Expr]:
    """Equal-tailed Jeffreys interval (Beta(k + 1/2, n - k + 1/2) quantiles), with the
    usual ends: 0 when k = 0, 1 when k = n."""
    from scipy.stats import beta

    tail = (1 - confidence) / 2

    def quantile(q: float):
        def compute(counts: pl.Series) -> pl.Series:
            k = counts.struct.field("k").cast(pl.Float64).to_numpy()
            n = counts.struct.field("n").cast(pl.Float64).to_numpy()
            return pl.Series(beta.ppf(q, k + 0.5, n - k + 0.5), dtype=pl.Float64)

        return pl.struct(k=successes, n=samples).map_batches(compute, return_dtype=pl.Float64)

    valid = samples > 0
    low = pl.when(valid).then(pl.when(successes == 0).then(0.0).otherwise(quantile(tail)))
    high = pl.when(valid).then(pl.when(successes == samples).then(1.0).otherwise(quantile(1 - tail)))
    return low, high


def interval(successes: pl.Expr, samples: pl.Expr, confidence: float, method: str) -> tuple[pl.Expr, pl.Expr]:
    if method == "wilson":
        return wilson_bounds(successes, samples, confidence)
    if method == "jeffreys":
        return jeffreys_bounds(successes, samples, confidence)
    raise ValueError(f"unknown interval {method!r}: use 'wilson' or 'jeffreys'")


def band_expr(pass_rate: pl.Expr, edges: list[float], names: list[str]) -> pl.Expr:
    """'unsolved' at 0, 'trivial' at 1; between, names[i] for the i-th slice of (0, 1) cut
    at `edges` (upper edge inclusive: with edges [0.3, 0.7], 0.3 is the first name)."""
    expression: Then | ChainedThen = pl.when(pass_rate.is_null()).then(pl.lit(None, pl.String))
    expression = expression.when(pass_rate <= 0).then(pl.lit(UNSOLVED))
    expression = expression.when(pass_rate >= 1).then(pl.lit(TRIVIAL))
    for edge, name in zip(edges, names[:-1], strict=True):
        expression = expression.when(pass_rate <= edge).then(pl.lit(name))
    return expression.otherwise(pl.lit(names[-1]))


def check_bands(edges: list[float], names: list[str]) -> None:
    if len(names) != len(edges) + 1:
        raise ValueError(f"band_names needs one name more than band_edges ({len(edges) + 1}), got {len(names)}")
    if any(not 0 < e < 1 for e in edges) or edges != sorted(set(edges)):
        raise ValueError(f"band_edges must be increasing and strictly between 0 and 1, got {edges}")
    if len(set(names) | {UNSOLVED, TRIVIAL}) != len(names) + 2:
        raise ValueError(f"band names must be distinct and not '{UNSOLVED}'/'{TRIVIAL}', got {names}")


def band_names(names: list[str]) -> list[str]:
    """All bands, easiest last."""
    return [UNSOLVED, *names, TRIVIAL]


class BandConfig(OperatorConfig):
    band_edges: list[float] = Field(
        [0.3, 0.7], description="Pass-rate cut points inside (0, 1); 0 is 'unsolved', 1 is 'trivial'."
    )
    band_names: list[str] = Field(
        ["hard", "medium", "easy"], description="Names of the slices between the edges, hardest first."
    )

    @model_validator(mode="after")
    def _bands(self):
        check_bands(self.band_edges, self.band_names)
        return self


class AdaptiveConfig(BandConfig):
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence that a settled band is right.")
    interval: Literal["wilson", "jeffreys"] = Field("wilson", description="Interval used to settle a band.")
    correction: Literal["bonferroni", "none"] = Field(
        "bonferroni",
        description="bonferroni: split 1 - confidence over the rounds a problem can be checked, so the "
        "whole procedure keeps `confidence`; none: each round's check at `confidence` (settles sooner, "
        "e.g. 4/4 correct -> easy at 0.8, but mis-bands more often).",
    )
    initial_samples: int = Field(4, ge=1, description="Samples per problem in the first round.")
    samples_per_round: int = Field(4, ge=1, description="Samples per unsettled problem in later rounds.")
    max_samples_per_problem: int = Field(
        32, ge=1, description="Cap per problem; also the k of the fixed-k baseline it is compared with."
    )
    total_budget: int | None = Field(
        None, ge=1, description="Samples for all problems together (default: problems x the cap)."
    )
    max_rounds: int = Field(100, ge=1, description="Stop after this many rounds.")


SampleFn = Callable[[pl.DataFrame], pl.DataFrame]


def looks(config: AdaptiveConfig) -> int:
    """How many times at most a problem's interval is checked (once per round it is sampled)."""
    later = -(-(config.max_samples_per_problem - config.initial_samples) // config.samples_per_round)
    return min(config.max_rounds, 1 + max(later, 0))


def assess(counts: pl.DataFrame, config: AdaptiveConfig) -> pl.DataFrame:
    """Add pass_rate, low/high bounds, settled, capped and band to per-problem counts
    (problem_id, successes, samples, drawn)."""
    # Checking the interval after every round is a sequential test: the error rates of the
    # looks add up. Bonferroni over the looks keeps the whole procedure at `confidence`;
    # correction 'none' trades that guarantee for earlier stops.
    per_look = 1 - (1 - config.confidence) / (looks(config) if config.correction == "bonferroni" else 1)
    low, high = interval(pl.col("successes"), pl.col("samples"), per_look, config.interval)
    slice_of = lambda bound: pl.sum_horizontal([(bound > edge).cast(pl.Int32) for edge in config.band_edges])  # noqa: E731
    return counts.with_columns(
        pass_rate=pl.when(pl.col("samples") > 0).then(pl.col("successes") / pl.col("samples")),
        low=low,
        high=high,
    ).with_columns(
        settled=(pl.col("samples") > 0) & (slice_of(pl.col("low")) == slice_of(pl.col("high"))),
        capped=pl.col("drawn") >= config.max_samples_per_problem,
        band=band_expr(pl.col("pass_rate"), config.band_edges, config.band_names),
    )


def plan_round(assessed: pl.DataFrame, config: AdaptiveConfig, budget_left: int) -> pl.DataFrame:
    """(problem_id, n) for the next round: unsettled, uncapped problems, least sampled first."""
    first_round = assessed.get_column("drawn").max() == 0
    per_problem = config.initial_samples if first_round else config.samples_per_round
    want = pl.min_horizontal(pl.lit(per_problem), config.max_samples_per_problem - pl.col("drawn"))
    return (
        assessed.filter(~pl.col("settled") & ~pl.col("capped"))
        .sort("drawn", "problem_id")
        .with_columns(want=want)
        .with_columns(n=(budget_left - (pl.col("want").cum_sum() - pl.col("want"))).clip(0, None))
        .with_columns(n=pl.min_horizontal("want", "n").cast(pl.Int64))
        .filter(pl.col("n") > 0)
        .select("problem_id", "n")
    )


@dataclass
class AdaptiveResult:
    problems: pl.DataFrame  # one row per problem: counts, bounds, settled, band, rounds
    samples: pl.DataFrame  # every row sample_fn returned, with a `round` column
    samples_drawn: int
    fixed_k_samples: int
    rounds: int

    @property
    def samples_saved(self) -> int:
        return self.fixed_k_samples - self.samples_drawn

    def summary(self) -> dict:
        return {
            "problems": self.problems.height,
            "rounds": self.rounds,
            "samples_drawn": self.samples_drawn,
            "fixed_k_samples": self.fixed_k_samples,
            "samples_saved": self.samples_saved,
            "saved_fraction": round(self.samples_saved / max(self.fixed_k_samples, 1), 4),
            "settled": int(self.problems.get_column("settled").sum()),
        }


def run_adaptive(problems: pl.DataFrame, sample_fn: SampleFn, config: AdaptiveConfig) -> AdaptiveResult:
    """Sample `problems` (a frame with problem_id) in rounds until every band is settled,
    every problem is capped, or the budget is spent."""
    problem_ids = problems.get_column("problem_id").unique(maintain_order=True)
    fixed_k = problem_ids.len() * config.max_samples_per_problem
    budget = config.total_budget if config.total_budget is not None else fixed_k
    counts = pl.DataFrame({"problem_id": problem_ids}).with_columns(
        successes=pl.lit(0, pl.Int64), samples=pl.lit(0, pl.Int64), drawn=pl.lit(0, pl.Int64),
        rounds=pl.lit(0, pl.Int32),
    )
    returned: list[pl.DataFrame] = []
    spent = 0
    round_index = 0
    for round_index in range(1, config.max_rounds + 1):
        plan = plan_round(assess(counts, config), config, budget - spent)
        if plan.is_empty():
            round_index -= 1
            break
        rows = _checked(sample_fn(plan), plan)
        returned.append(rows.with_columns(round=pl.lit(round_index, pl.Int32)))
        spent += int(plan.get_column("n").sum())
        counts = _add_round(counts, plan, rows)
    samples = pl.concat(returned, how="diagonal_relaxed") if returned else pl.DataFrame()
    return AdaptiveResult(assess(counts, config), samples, spent, fixed_k, round_index)


def _checked(rows: pl.DataFrame, plan: pl.DataFrame) -> pl.DataFrame:
    missing = {"problem_id", "correct"} - set(rows.columns)
    if missing:
        raise ValueError(f"sample_fn must return problem_id and correct columns; missing {sorted(missing)}")
    unknown = rows.filter(~pl.col("problem_id").is_in(plan.get_column("problem_id").implode()))
    if not unknown.is_empty():
        raise ValueError(f"sample_fn returned rows for problems not in the plan, e.g. {unknown['problem_id'][0]!r}")
    return rows


def _add_round(counts: pl.DataFrame, plan: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    # `drawn` counts what was asked for, so a problem whose samples all fail to verify
    # (correct = null) still reaches its cap and the loop ends.
    got = rows.group_by("problem_id").agg(
        new_successes=pl.col("correct").sum().cast(pl.Int64), new_samples=pl.col("correct").count().cast(pl.Int64)
    )
    return (
        counts.join(plan, on="problem_id", how="left", maintain_order="left")
        .join(got, on="problem_id", how="left", maintain_order="left")
        .with_columns(
            successes=pl.col("successes") + pl.col("new_successes").fill_null(0),
            samples=pl.col("samples") + pl.col("new_samples").fill_null(0),
            drawn=pl.col("drawn") + pl.col("n").fill_null(0),
            rounds=pl.col("rounds") + pl.col("n").is_not_null().cast(pl.Int32),
        )
        .drop("n", "new_successes", "new_samples")
    )

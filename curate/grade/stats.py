"""Pass-rate statistics as polars expressions, shared by grading and adaptive sampling."""

from __future__ import annotations

from statistics import NormalDist

import polars as pl

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
    expression = pl.when(pass_rate.is_null()).then(pl.lit(None, pl.String))
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

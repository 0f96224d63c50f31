"""Scores of verified samples: pass@k (unbiased), mean tokens, truncation, per group."""

from __future__ import annotations

from math import comb

import polars as pl

UNGRADED = "ungraded"


def pass_at_k(samples: int, correct: int, k: int) -> float | None:
    """Chance that at least one of k samples drawn from `samples` is correct.

    The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k). None when
    fewer than k samples exist.
    """
    if samples < k:
        return None
    return 1.0 - comb(samples - correct, k) / comb(samples, k)


def per_problem(traces: pl.DataFrame) -> pl.DataFrame:
    """One row per problem: samples, correct samples, undecided ones, tokens, truncations."""
    band = pl.col("band").fill_null(UNGRADED) if "band" in traces.columns else pl.lit(UNGRADED)
    return (
        traces.with_columns(band=band.cast(pl.String))
        .group_by("problem_id", maintain_order=True)
        .agg(
            pl.col("source").first(),
            pl.col("band").first(),
            samples=pl.len(),
            correct=(pl.col("correct") == True).sum(),  # noqa: E712 - null (undecided) is not correct
            undecided=pl.col("correct").is_null().sum(),
            completion_tokens=(pl.col("reasoning_tokens") + pl.col("answer_tokens")).sum(),
            truncated=(pl.col("finish_reason") == "length").sum(),
        )
    )


def summarise(traces: pl.DataFrame, k_values: list[int]) -> pl.DataFrame:
    """Rows for all problems, then per source, then per band (when the set has several)."""
    problems = per_problem(traces)
    for k in k_values:
        # A Python call per problem (not per sample): eval sets are thousands of problems at most.
        scores = [pass_at_k(n, c, k) for n, c in problems.select("samples", "correct").iter_rows()]
        problems = problems.with_columns(pl.Series(f"pass@{k}", scores, dtype=pl.Float64))
    groups = [_group(problems, "all", pl.lit("all"), k_values)]
    for column in ("source", "band"):
        if problems[column].n_unique() > 1:
            groups.append(_group(problems, column, pl.col(column), k_values))
    return pl.concat(groups)


def _group(problems: pl.DataFrame, scope: str, key: pl.Expr, k_values: list[int]) -> pl.DataFrame:
    samples = pl.col("samples").sum()
    return (
        problems.group_by(group=key.cast(pl.String), maintain_order=True)
        .agg(
            problems=pl.len(),
            samples=samples,
            **{f"pass@{k}": pl.col(f"pass@{k}").mean() for k in k_values},
            # Standard error over problems: the unit a held-out set samples.
            pass1_stderr=pl.col("pass@1").std() / pl.len().sqrt() if 1 in k_values else pl.lit(None, pl.Float64),
            mean_tokens=pl.col("completion_tokens").sum() / samples,
            truncation_rate=pl.col("truncated").sum() / samples,
            undecided_rate=pl.col("undecided").sum() / samples,
        )
        .select(pl.lit(scope).alias("scope"), pl.all())
    )

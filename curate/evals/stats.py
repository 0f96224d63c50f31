"""Intervals for students measured on the same problems: bootstrap over problems and seeds.

A student's score on a held-out set varies with the problems drawn and with its training
seed. Each arm is a matrix of per-problem pass@1, one row per seed, every row on the same
problems, so two arms are compared problem by problem (difficulty cancels out): a
bootstrap draw resamples the problems once for both arms and each arm's seeds on their own
(seeds of different arms are separate runs, not pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_json(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high}

    def text(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _resampled_means(scores: np.ndarray, problems: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean score of each bootstrap draw: `problems` (draws x problems) picks the problems,
    the seeds are drawn here."""
    seeds = rng.integers(0, scores.shape[0], size=(problems.shape[0], scores.shape[0]))
    # per draw: the average over the drawn seeds of each seed's mean over the drawn problems
    per_seed = scores[:, problems].mean(axis=2)  # seeds x draws
    return np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1)


def bootstrap_mean(scores: np.ndarray, confidence: float = 0.95, draws: int = 2000, seed: int = 0) -> Interval:
    """Interval on an arm's pass@1; `scores` is seeds x problems."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    rng = np.random.default_rng(seed)
    problems = rng.integers(0, scores.shape[1], size=(draws, scores.shape[1]))
    means = _resampled_means(scores, problems, rng)
    return _interval(float(scores.mean()), means, confidence)


def paired_bootstrap(first: np.ndarray, second: np.ndarray, confidence: float = 0.95, draws: int = 2000,
                     seed: int = 0) -> Interval:
    """Interval on mean(first) - mean(second); both are seeds x problems on the same problems."""
    first = np.atleast_2d(np.asarray(first, dtype=float))
    second = np.atleast_2d(np.asarray(second, dtype=float))
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"paired arms need the same problems: {first.shape[1]} vs {second.shape[1]}")
    if first.shape[1] < 2:
        raise ValueError("a paired interval needs at least 2 problems")
    rng = np.random.default_rng(seed)
    problems = rng.integers(0, first.shape[1], size=(draws, first.shape[1]))
    deltas = _resampled_means(first, problems, rng) - _resampled_means(second, problems, rng)
    return _interval(float(first.mean() - second.mean()), deltas, confidence)


def _interval(mean: float, draws: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(mean, float(low), float(high))


def problems_needed(first: np.ndarray, second: np.ndarray, difference: float, confidence: float = 0.95,
                    power: float = 0.8) -> int | None:
    """Held-out problems needed for a true `difference` in pass@1 to give an interval that
    excludes 0 with probability `power`, at these arms' seed counts: from the measured
    variance of the per-problem paired difference (seed-averaged) plus the seed-to-seed
    variance of each arm's mean, which more problems cannot remove (None: not reachable)."""
    first = np.atleast_2d(np.asarray(first, dtype=float))
    second = np.atleast_2d(np.asarray(second, dtype=float))
    z = NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)
    per_problem = float(np.var(first.mean(axis=0) - second.mean(axis=0), ddof=1))
    seed_floor = sum(float(np.var(a.mean(axis=1), ddof=1)) / a.shape[0] if a.shape[0] > 1 else 0.0
                     for a in (first, second))
    # The seed term measured on n problems already holds part of the problem noise; it is the
    # part that does not shrink with more problems only at large n, so this is conservative.
    budget = (difference / z) ** 2 - seed_floor
    if budget <= 0:
        return None
    return int(np.ceil(per_problem / budget))

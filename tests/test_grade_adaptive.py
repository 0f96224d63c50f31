"""Adaptive sampling against a deterministic fake teacher with known success rates."""

import math

import polars as pl
import pytest

from curate.passrate import AdaptiveConfig, band_expr, run_adaptive

# Known per-problem success probabilities, away from the band edges 0.3 / 0.7.
TRUTH = {"p0": 0.0, "p1": 0.1, "p2": 0.15, "p3": 0.45, "p4": 0.55, "p5": 0.85, "p6": 0.9, "p7": 1.0,
         "p8": 1.0, "p9": 0.0}
GOLDEN = (math.sqrt(5) - 1) / 2


class FakeTeacher:
    """Sample i of a problem is correct iff frac((i + 1) * golden + offset) < p: deterministic,
    and its running success rate stays within ~2/n of p (a low-discrepancy sequence)."""

    def __init__(self, truth):
        self.truth = truth
        self.drawn = {problem: 0 for problem in truth}

    def __call__(self, plan: pl.DataFrame) -> pl.DataFrame:
        rows = []
        for problem, n in plan.iter_rows():
            offset = int(problem[1:]) / len(self.truth)
            for _ in range(n):
                index = self.drawn[problem]
                self.drawn[problem] += 1
                rows.append((problem, ((index + 1) * GOLDEN + offset) % 1 < self.truth[problem]))
        return pl.DataFrame(rows, schema=["problem_id", "correct"], orient="row")


def test_bands_match_the_truth_with_fewer_samples_than_fixed_k():
    config = AdaptiveConfig(max_samples_per_problem=32)
    teacher = FakeTeacher(TRUTH)
    result = run_adaptive(pl.DataFrame({"problem_id": list(TRUTH)}), teacher, config)

    truth = pl.DataFrame({"problem_id": list(TRUTH), "p": list(TRUTH.values())}).with_columns(
        truth=band_expr(pl.col("p"), config.band_edges, config.band_names)
    )
    compared = result.problems.join(truth, on="problem_id")
    assert compared.filter(pl.col("band") != pl.col("truth")).is_empty(), compared
    assert result.samples_drawn == sum(teacher.drawn.values()) == result.samples.height
    assert result.samples_drawn < result.fixed_k_samples
    # The clear cases stop early: never solved / always solved settle well before the cap.
    settled_early = compared.filter(pl.col("p").is_in([0.0, 1.0]))
    assert (settled_early["settled"] & (settled_early["drawn"] < 32)).all()
    assert result.summary()["samples_saved"] == result.fixed_k_samples - result.samples_drawn


def test_total_budget_and_cap_are_respected():
    config = AdaptiveConfig(max_samples_per_problem=16, total_budget=50)
    teacher = FakeTeacher(TRUTH)
    result = run_adaptive(pl.DataFrame({"problem_id": list(TRUTH)}), teacher, config)
    assert result.samples_drawn == 50
    assert max(teacher.drawn.values()) <= 16
    # Breadth first: every problem got its first round before any got a second.
    assert min(teacher.drawn.values()) >= config.initial_samples


def test_unverifiable_samples_still_end_the_loop():
    def never_verified(plan):
        return plan.select("problem_id", pl.col("n").alias("k")).with_columns(correct=pl.lit(None, pl.Boolean))

    result = run_adaptive(pl.DataFrame({"problem_id": ["a"]}), never_verified,
                          AdaptiveConfig(max_samples_per_problem=8))
    row = result.problems.row(0, named=True)
    assert row["drawn"] == 8 and row["samples"] == 0 and row["band"] is None and not row["settled"]


def test_sample_fn_contract_is_checked():
    with pytest.raises(ValueError, match="problem_id and correct"):
        run_adaptive(pl.DataFrame({"problem_id": ["a"]}), lambda plan: plan, AdaptiveConfig())


@pytest.mark.parametrize(("correction", "first_round_settles"), [("none", True), ("bonferroni", False)])
def test_four_of_four_settles_easy_only_without_the_correction(correction, first_round_settles):
    """The classic early stop, 4/4 correct -> settled in the top slice (graded 'trivial' at
    pass rate 1), holds for one look at 0.8 (Wilson low bound 0.709 > 0.7); with 0.8 spread
    over the 8 looks of a 32 cap it does not."""
    always = lambda plan: plan.select("problem_id", pl.col("n").repeat_by("n")).explode("n").select(  # noqa: E731
        "problem_id", correct=pl.lit(True))
    config = AdaptiveConfig(confidence=0.8, correction=correction, max_samples_per_problem=32)
    result = run_adaptive(pl.DataFrame({"problem_id": ["a"]}), always, config)
    assert (result.samples_drawn == 4) is first_round_settles
    assert result.problems["band"].to_list() == ["trivial"]

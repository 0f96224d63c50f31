"""When to think (issue 37): reasoning modes chosen by difficulty, carried by publish into
the training data (system prompt or column), read by the trainer, asked for by eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from curate.core.operator import StepContext
from curate.evals.suite import EvalSet, ProblemSet, evaluate_model, problem_sets
from curate.llm.config import PromptConfig
from curate.publish import PublishConfig, publish_run
from curate.publish.rows import messages_expr
from curate.select.modes import ReasoningModes, ReasoningModesConfig
from curate.train.data import read_conversations

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "publish" / "run"

# Problems of the fixture run (real traces with <think> reasoning), by the part of the id tests name.
EASY_MIXED, UNGRADED, UNVERIFIED, EASY, HARD = "69adff", "78ffb6", "d49b68", "fab97f", "ff8330"


def traces() -> pl.DataFrame:
    """The fixture's traces, graded and verified so that every rule is exercised: one trace
    written without <think> (the whole solution as its answer text), one wrong, one unverified,
    one problem ungraded, one hard."""
    frame = pl.read_parquet(FIXTURE_RUN / "output.parquet")
    trace = pl.col("trace_id").str.head(4)
    problem = pl.col("problem_id").str.head(6)
    no_think_style = trace == "1cf7"
    return frame.with_columns(
        reasoning=pl.when(no_think_style).then(pl.lit("")).otherwise(pl.col("reasoning")),
        answer_text=pl.when(no_think_style).then(pl.concat_str("reasoning", pl.lit("\n\n"), "answer_text"))
        .otherwise(pl.col("answer_text")),
        reasoning_tokens=pl.when(no_think_style).then(0).otherwise(pl.col("reasoning_tokens")).cast(pl.Int32),
        answer_tokens=pl.when(no_think_style).then(262).otherwise(pl.col("answer_tokens")).cast(pl.Int32),
        correct=pl.when(trace == "8503").then(False).when(problem == UNVERIFIED).then(None)
        .otherwise(pl.col("correct")),
        pass_rate=pl.when(problem == UNGRADED).then(None).when(problem == HARD).then(0.25)
        .otherwise(pl.col("pass_rate")),
        band=pl.when(problem == UNGRADED).then(None).when(problem == HARD).then(pl.lit("hard"))
        .otherwise(pl.col("band")),
    )


def run_modes(frame: pl.DataFrame, **config) -> tuple[dict[str, tuple[str | None, str | None]], StepContext]:
    """trace_id prefix -> (reject_reason, reasoning_mode), through the filter's apply."""
    ctx = StepContext(step_id="modes", step_dir=Path("."), cache_dir=Path("."))
    marked = ReasoningModes(ReasoningModesConfig(**config)).apply(frame, ctx)
    rows = marked.select(pl.col("trace_id").str.head(4), "reject_reason", "reasoning_mode").rows()
    return {trace: (reason, mode) for trace, reason, mode in rows}, ctx


def test_matched_gives_easy_problems_short_traces_and_hard_ones_long():
    outcome, ctx = run_modes(traces(), policy="matched")
    assert outcome == {
        "1cf7": (None, "short"), "9979": ("not_selected:short", "short"),  # easy: the shortest (no <think>)
        "2f01": (None, "short"), "d71d": ("not_selected:short", "short"),
        "9b54": ("not_selected:long", "long"), "e77d": (None, "long"),  # hard: the longest
        "3386": ("ungraded", None), "8503": ("incorrect", None),
        "0114": ("unverified", "long"),  # medium (0.5): long, but no verified trace
    }
    assert ctx.metrics["mode_short"] == 2 and ctx.metrics["mode_long"] == 1
    assert ctx.metrics["rejected"] == 6
    assert ReasoningModes.summary(dict(ctx.metrics)) == "modes: long 1, short 2"


def test_one_mode_for_all_takes_opposite_ends():
    long, _ = run_modes(traces(), policy="long")
    short, _ = run_modes(traces(), policy="short")
    kept = {policy: {t for t, (reason, _) in outcome.items() if reason is None}
            for policy, outcome in (("long", long), ("short", short))}
    assert kept == {"long": {"9979", "d71d", "e77d", "3386"}, "short": {"1cf7", "2f01", "9b54", "3386"}}
    assert long["3386"] == (None, "long")  # one mode for all needs no grade


def test_budgets_reject_with_the_reason_and_the_evidence():
    frame = traces()
    ctx = StepContext(step_id="modes", step_dir=Path("."), cache_dir=Path("."))
    config = ReasoningModesConfig(policy="matched", short_max_tokens=200, long_max_tokens=1000)
    marked = ReasoningModes(config).apply(frame, ctx)
    reasons = dict(marked.select(pl.col("trace_id").str.head(4), "reject_reason").rows())
    # Easy 69ad has traces of 262 and 817 tokens: none fits the short budget of 200.
    assert reasons["1cf7"] == reasons["9979"] == "no_fit:short"
    # Easy fab9: 179 fits, 641 is over budget. Hard ff83: 1911 is over the long budget, 279 is kept.
    assert (reasons["2f01"], reasons["d71d"]) == (None, "outside_budget:short")
    assert (reasons["9b54"], reasons["e77d"]) == (None, "outside_budget:long")
    detail = json.loads(marked.filter(pl.col("trace_id").str.starts_with("e77d"))["reject_detail"].item())
    assert detail == {"mode": "long", "tokens": 1911, "budget": 1000, "pass_rate": 0.25}


def test_no_think_keeps_a_trace_with_an_answer_and_publish_drops_its_reasoning():
    frame = traces()
    outcome, _ = run_modes(frame, policy="matched", band_modes={"easy": "no_think"})
    # fab9's longer trace ends at </think> with no answer text: it cannot be answered without thinking.
    assert outcome["2f01"] == (None, "no_think") and outcome["d71d"] == ("outside_budget:no_think", "no_think")
    assert outcome["e77d"] == (None, "long")  # bands not listed follow the pass-rate rule
    marked = ReasoningModes(ReasoningModesConfig(policy="matched", band_modes={"easy": "no_think"})).apply(
        frame, StepContext(step_id="m", step_dir=Path("."), cache_dir=Path(".")))
    kept = marked.filter(pl.col("reject_reason").is_null())
    messages = kept.select(pl.col("trace_id").str.head(4), "answer_text",
                           messages_expr(kept.columns, PublishConfig(), "test").alias("messages"))
    assistant = {t: m[-1]["content"] for t, _, m in messages.rows()}
    answers = {t: a for t, a, _ in messages.rows()}
    assert assistant["2f01"] == answers["2f01"].strip() and "<think>" not in assistant["2f01"]
    assert assistant["e77d"].startswith("<think>\n")


def mix_frame(problems: int = 10) -> pl.DataFrame:
    """One correct trace per problem, problem i with pass rate i/problems."""
    return pl.DataFrame({
        "problem_id": [f"p{i:02d}" for i in range(problems)], "trace_id": [f"t{i:02d}" for i in range(problems)],
        "correct": [True] * problems, "reasoning_tokens": [100] * problems, "answer_tokens": [10] * problems,
        "answer_text": ["The answer is 4."] * problems, "pass_rate": [i / problems for i in range(problems)],
        "band": ["medium"] * problems,
    })


def long_problems(frame: pl.DataFrame, **config) -> set[str]:
    marked = ReasoningModes(ReasoningModesConfig(policy="mix", **config)).apply(
        frame, StepContext(step_id="m", step_dir=Path("."), cache_dir=Path(".")))
    return set(marked.filter(pl.col("reasoning_mode") == "long")["problem_id"])


def test_mix_gives_a_fixed_share_long_whatever_the_row_order():
    frame = mix_frame()
    drawn = long_problems(frame, long_share=0.2)
    assert len(drawn) == 2
    assert long_problems(frame.reverse(), long_share=0.2) == drawn
    assert long_problems(frame, long_share=0.2, seed=1) != drawn
    assert long_problems(frame, long_share=0.2, mix_by="difficulty") == {"p00", "p01"}
    # A problem no trace of which is correct does not count toward the share.
    wrong = frame.with_columns(correct=pl.col("problem_id").is_in(["p00", "p01", "p02", "p03", "p04"]).not_())
    assert len(long_problems(wrong, long_share=0.2)) == 1


def test_difficulty_rules_need_grade_and_say_so():
    frame = traces().drop("pass_rate", "band")
    with pytest.raises(ValueError, match=r"pass_rate.*run `grade` first"):
        run_modes(frame, policy="matched")
    assert run_modes(frame, policy="short")[0]["2f01"] == (None, "short")
    with pytest.raises(ValidationError, match="long_max_tokens is below"):
        ReasoningModesConfig(long_min_tokens=500, long_max_tokens=100)


# ---------------------------------------------------------------- publish, train, eval

def moded_run(tmp_path: Path) -> Path:
    """The fixture run with the matched policy's kept rows as its output."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run_dir)
    marked = ReasoningModes(ReasoningModesConfig(policy="matched")).apply(
        traces(), StepContext(step_id="m", step_dir=Path("."), cache_dir=Path(".")))
    marked.filter(pl.col("reject_reason").is_null()).drop("reject_reason", "reject_detail").write_parquet(
        run_dir / "output.parquet")
    return run_dir


def test_publish_puts_the_mode_in_the_system_prompt_and_the_trainer_keeps_it(tmp_path):
    config = PublishConfig(output_dir=tmp_path / "published", mode_prompt=True,
                           mode_prompts={"long": "detailed thinking on", "short": "think briefly"},
                           system_prompt="Answer in \\boxed{}.")
    run_dir = moded_run(tmp_path)
    folder = publish_run(run_dir, config).folder
    published = pl.read_parquet(folder / "data")
    assert "reasoning_mode" not in published.columns  # the mode is in the messages: not twice
    modes = dict(pl.read_parquet(run_dir / "output.parquet").select("trace_id", "reasoning_mode").rows())
    systems = {modes[trace]: messages[0] for trace, messages in published.select("trace_id", "messages").rows()}
    assert systems["long"] == {"role": "system", "content": "detailed thinking on\nAnswer in \\boxed{}."}
    assert systems["short"] == {"role": "system", "content": "think briefly\nAnswer in \\boxed{}."}
    # The trainer reads the same prompts.
    prompts = read_conversations(str(folder))["prompt"].to_list()
    assert sorted(p[0]["content"] for p in prompts) == sorted(
        m[0]["content"] for m in published["messages"].to_list())


def test_mode_prompt_without_a_system_prompt_is_the_mode_alone_and_no_turn_without_a_mode():
    frame = pl.DataFrame({"problem": ["2+2?", "3+3?"], "reasoning": ["2 and 2 make 4.", ""],
                          "answer_text": ["4", "6"], "reasoning_mode": ["long", None]})
    messages = frame.select(messages_expr(frame.columns, PublishConfig(mode_prompt=True), "test"))
    first, second = messages.to_series().to_list()
    assert first[0] == {"role": "system", "content": "detailed thinking on"}
    assert [turn["role"] for turn in second] == ["user", "assistant"]


def test_publish_without_a_mode_column_refuses_mode_prompt(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run_dir)
    with pytest.raises(Exception, match="mode_prompt needs the 'reasoning_mode' column"):
        publish_run(run_dir, PublishConfig(output_dir=tmp_path / "out", mode_prompt=True))


def test_publish_carries_the_mode_as_a_column_and_the_trainer_turns_it_into_the_prompt(tmp_path):
    folder = publish_run(moded_run(tmp_path), PublishConfig(output_dir=tmp_path / "published")).folder
    published = pl.read_parquet(folder / "data")
    assert sorted(published["reasoning_mode"]) == ["long", "short", "short"]
    assert all(m[0]["role"] == "user" for m in published["messages"])  # no mode in the messages themselves
    conversations = read_conversations(str(folder))
    systems = sorted(p[0]["content"] for p in conversations["prompt"])
    assert systems == ["detailed thinking on"] * 3  # long and short both think (the defaults)
    assert all(p[1]["role"] == "user" for p in conversations["prompt"])


def test_trainer_puts_the_mode_before_an_existing_system_turn_and_skips_rows_without_one(tmp_path):
    file = tmp_path / "train.parquet"
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
             {"role": "assistant", "content": "4"}]
    tagged = [{"role": "system", "content": "detailed thinking on"}, *turns[1:]]
    pl.DataFrame({"messages": [turns, turns[1:], tagged], "reasoning_mode": ["no_think", None, "long"]}).write_parquet(
        file)
    prompts = read_conversations(str(file))["prompt"].to_list()
    assert prompts[0] == [{"role": "system", "content": "detailed thinking off\nBe brief."},
                          {"role": "user", "content": "2+2?"}]
    assert prompts[1] == [{"role": "user", "content": "2+2?"}]
    assert prompts[2] == tagged[:2]  # already asks for its mode: not tagged twice


def test_eval_set_mode_sets_the_system_prompt(tmp_path, monkeypatch):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text('{"question": "What is 2+2?", "answer": "4"}\n')
    sources = [{"name": "h", "path": str(heldout), "fields": {"problem": "question", "answer": "answer"}}]
    sets = [EvalSet(name="off", kind="prompt_variant", mode="no_think"),
            EvalSet(name="custom", kind="prompt_variant", mode="long", mode_text="think hard",
                    prompt=PromptConfig(user="{problem}"))]
    from curate.sources.config import Source

    loaded = problem_sets([Source.model_validate(s) for s in sources], sets, tmp_path)
    asked: dict[str, str | None] = {}

    def fake_evaluate(config, problems):
        asked[str(config.output_dir)] = config.model.prompt.system
        return None

    monkeypatch.setattr("curate.evals.suite.evaluate", fake_evaluate)
    from curate.evals.evaluate import EvalConfig

    config = EvalConfig.model_validate({"model": {"name": "s", "backend": "transformers", "model": "m", "prompt": {
        "system": "Answer with #### N.", "user": "{problem}"}}})
    for problem_set in loaded:
        evaluate_model(config, "student", problem_set, tmp_path / problem_set.name)
    assert asked == {str(tmp_path / "heldout"): "Answer with #### N.",
                     str(tmp_path / "off"): "detailed thinking off\nAnswer with #### N.",
                     str(tmp_path / "custom"): "think hard"}
    completion = ProblemSet("c", "prompt_variant", loaded[0].problems, PromptConfig(completion="Q: {problem}"),
                            mode_text="detailed thinking on")
    with pytest.raises(ValueError, match="completion template"):
        evaluate_model(config, "student", completion, None)
    with pytest.raises(ValidationError, match="set mode too"):
        EvalSet(name="x", kind="prompt_variant", mode_text="think")

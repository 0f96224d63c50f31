"""The static-embedding option: a model2vec model distilled offline from the bundled
MiniLM (about 20 s once), then used by semantic_dedup and decontaminate."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import StepContext, split_rejections
from curate.dedup.operators import Decontaminate, SemanticDedup
from curate.schema import problem_id_expr

pytest.importorskip("model2vec.distill", reason="needs model2vec's distill extra (model2vec, skeletoken)")

FIXTURES = Path(__file__).parent / "fixtures" / "dedup"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("static-cache")


def frame_of(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"problem": texts}).with_columns(problem_id=problem_id_expr(pl.col("problem")))


@pytest.mark.slow
def test_static_model_is_distilled_offline_and_finds_duplicates(shared_cache, tmp_path):
    train = [json.loads(line)["problem"] for line in (FIXTURES / "gsm8k_train_150.jsonl").read_text().splitlines()]
    paraphrases = [json.loads(line) for line in (FIXTURES / "paraphrases.jsonl").read_text().splitlines()]
    # Light perturbations: what a static model is for (large scraped pools).
    planted = [train[5] + " Explain.", "Question: " + train[6], train[7].replace(".", " .")]
    # A static model separates paraphrases less sharply than MiniLM: one close paraphrase.
    planted.append(paraphrases[3]["paraphrase"])
    ctx = StepContext(step_id="s", step_dir=tmp_path, cache_dir=shared_cache)
    op = SemanticDedup(SemanticDedup.Config(model="bundled:minilm-static", threshold=0.9))
    op.setup(ctx)
    model_dir = shared_cache / "models"
    assert (next(model_dir.iterdir()) / "config.json").is_file(), "distilled into <cache_dir>/models"
    out = op.apply(frame_of(train + planted), ctx)
    kept, rejected = split_rejections(out)
    assert set(rejected["problem"]) == set(planted)
    assert kept.height == len(train)


@pytest.mark.slow
def test_static_model_decontaminates_against_a_file(shared_cache, tmp_path):
    gsm8k_test = [json.loads(line)["problem"] for line in (FIXTURES / "gsm8k_test_60.jsonl").read_text().splitlines()]
    ctx = StepContext(step_id="s", step_dir=tmp_path, cache_dir=shared_cache)
    op = Decontaminate(Decontaminate.Config(
        model="bundled:minilm-static", methods=["embedding"], embedding_threshold=0.95,
        eval_sets=[str(FIXTURES / "gsm8k_test_60.jsonl")]))
    op.setup(ctx)
    leaked = gsm8k_test[30].replace("  ", " ") + " Answer with a number."
    kept, rejected = split_rejections(op.apply(frame_of(["What is the capital of France?", leaked]), ctx))
    assert rejected["problem"].to_list() == [leaked]
    assert json.loads(rejected["reject_detail"][0])["eval_problem"] == gsm8k_test[30]

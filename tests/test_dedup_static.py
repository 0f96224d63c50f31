"""The static-embedding option: a model2vec model distilled offline from the bundled
MiniLM (about 20 s once), then used by semantic_dedup and decontaminate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


@pytest.mark.slow
def test_bulk_static_encoder_gives_model2vecs_vectors(shared_cache):
    from model2vec import StaticModel

    from curate.dedup.embed import STATIC_MINILM, _model_path
    from curate.dedup.static_encoder import StaticEncoder

    model = StaticModel.from_pretrained(_model_path(STATIC_MINILM, shared_cache))
    encoder = StaticEncoder(model)
    assert encoder.chunkable, "a model distilled from MiniLM has a BERT WordPiece tokenizer"
    math = [json.loads(line)["problem"] for line in (FIXTURES / "math500_30.jsonl").read_text().splitlines()]
    gsm8k = [json.loads(line)["problem"] for line in (FIXTURES / "gsm8k_train_150.jsonl").read_text().splitlines()]
    tricky = [
        "", "   \n\t ", "x", "Café naïve façade, ÀÉÎ", "数学问题：求x的值。", "a\x00b\u200bc \x07 d",
        "word" * 300,  # one chunk longer than WordPiece's per-word limit
        " ".join(gsm8k) * 3,  # beyond the model's token limit: model2vec's truncation
        "$\\frac{1}{2}+\\sqrt{x^2}$ (a,b)...!?", "🙂 emoji 🙂🙂",
    ]
    texts = math + gsm8k + tricky
    ours = encoder(texts, 64)
    reference = model.encode(texts, use_multiprocessing=False).astype(np.float32)
    assert ours.shape == reference.shape
    norms = np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    zero = norms == 0
    assert (np.linalg.norm(ours, axis=1)[zero] == 0).all() and (np.linalg.norm(reference, axis=1)[zero] == 0).all()
    cosine = (ours * reference).sum(axis=1)[~zero] / norms[~zero]
    # model2vec averages in float16; the rest of the gap is rounding.
    assert cosine.min() > 0.999, [texts[i][:40] for i in np.flatnonzero(cosine <= 0.999)]

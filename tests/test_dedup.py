"""Dedup and decontamination on small real data (GSM8K, MATH-500, real teacher traces)
with duplicates, paraphrases (written by hand) and leaks planted in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.catalogue import registry
from curate.core.operator import StepContext, split_rejections
from curate.dedup.embed import Embedder
from curate.dedup.evalsets import EvalSetSpec, load_eval_sets
from curate.dedup.neighbours import greedy_keep, similar_pairs
from curate.dedup.operators import REPORT_FILE, Decontaminate, ExactDedup, SemanticDedup, TraceDedup
from curate.schema import problem_id_expr
from curate.text import normalised_text

FIXTURES = Path(__file__).parent / "fixtures" / "dedup"


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def problems(texts: list[str | None]) -> pl.DataFrame:
    frame = pl.DataFrame({"problem": texts}, schema={"problem": pl.String})
    return frame.with_columns(problem_id=problem_id_expr(pl.col("problem").fill_null("")), source=pl.lit("test"))


def run(op_class, frame: pl.DataFrame, ctx: StepContext, **config):
    op = op_class(op_class.Config(**config))
    op.setup(ctx)
    out = op.apply(frame, ctx)
    assert out.height == frame.height, "a filter must never drop rows itself"
    kept, rejected = split_rejections(out)
    return out, kept, rejected


@pytest.fixture
def ctx(tmp_path):
    return StepContext(step_id="dedup", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def gsm8k_train() -> list[str]:
    return [r["problem"] for r in read_jsonl("gsm8k_train_150.jsonl")]


@pytest.fixture(scope="module")
def paraphrases() -> list[dict]:
    return read_jsonl("paraphrases.jsonl")


def test_operators_are_registered():
    assert {"exact_dedup", "semantic_dedup", "trace_dedup", "decontaminate"} <= set(registry())


def test_normalisation_ignores_typesetting_but_not_content():
    variants = [
        "What is $1,000 + 2.50$?",
        "what  is 1000+2.5 ?",
        "WHAT IS \\( 1000 \\, + \\; 2.50 \\)?",
        "What is 1,000 + 2.500?",
    ]
    different = ["What is 1000 + 2.51?", "What is 100 + 2.5?"]
    keys = pl.select(normalised_text(pl.Series(variants + different))).to_series().to_list()
    assert len(set(keys[:4])) == 1
    assert len(set(keys)) == 3


def test_exact_dedup_rejects_reformatted_copies_and_names_the_kept_row(ctx, gsm8k_train):
    copies = [gsm8k_train[0].upper(), gsm8k_train[1].replace(" ", "   "), gsm8k_train[2].replace(",", ", ")]
    frame = problems(gsm8k_train[:50] + copies + [gsm8k_train[3]])
    out, kept, rejected = run(ExactDedup, frame, ctx)
    assert kept.height == 50
    assert rejected["reject_reason"].unique().to_list() == ["exact_duplicate"]
    originals = frame["problem_id"][:4].to_list()
    duplicate_of = [json.loads(d)["duplicate_of"] for d in rejected["reject_detail"]]
    assert duplicate_of == originals[:3] + [originals[3]]
    assert ctx.metrics["exact_duplicates"] == 4


def test_exact_dedup_keep_shortest(ctx):
    frame = problems(["Compute  2+2 ,please.", "compute 2 + 2, please.", "Compute 2+2,please."])
    _, kept, rejected = run(ExactDedup, frame, ctx, keep="shortest")
    assert kept["problem"].to_list() == ["Compute 2+2,please."]
    assert rejected.height == 2


def trace_table(rows: list[tuple[str, bool]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"problem": pl.String, "correct": pl.Boolean}, orient="row")
    return frame.with_columns(
        problem_id=problem_id_expr(pl.col("problem")),
        trace_id=pl.format("t{}", pl.int_range(pl.len())),
        completion=pl.format("answer {}", pl.int_range(pl.len())),
    )


def test_dedup_on_a_trace_table_keeps_or_drops_whole_problems(ctx):
    frame = trace_table([
        ("Find x if 2x = 4.", False), ("Find x if 2x = 4.", False),
        ("FIND X IF 2X = 4.", True), ("FIND X IF 2X = 4.", True),
        ("Another problem.", False),
    ])
    _, kept, rejected = run(ExactDedup, frame, ctx, keep="most_correct")
    assert kept["problem"].to_list() == ["FIND X IF 2X = 4.", "FIND X IF 2X = 4.", "Another problem."]
    assert rejected["trace_id"].to_list() == ["t0", "t1"]
    _, kept_first, _ = run(ExactDedup, frame, ctx, keep="first")
    assert kept_first["trace_id"].to_list() == ["t0", "t1", "t4"]


def test_keep_policy_without_its_column_is_a_clear_error(ctx):
    with pytest.raises(ValueError, match="'pass_rate'.*keep: hardest"):
        run(ExactDedup, problems(["a", "a"]), ctx, keep="hardest")


def test_semantic_dedup_finds_handwritten_paraphrases_only(ctx, gsm8k_train, paraphrases):
    planted = [p["paraphrase"] for p in paraphrases if p["source"] == "gsm8k_train"]
    frame = problems(gsm8k_train + planted)
    out, kept, rejected = run(SemanticDedup, frame, ctx, threshold=0.9)
    assert set(rejected["problem"]) == set(planted)
    assert kept.height == len(gsm8k_train)
    for row in rejected.iter_rows(named=True):
        detail = json.loads(row["reject_detail"])
        original = next(p["original"] for p in paraphrases if p["paraphrase"] == row["problem"])
        assert detail["duplicate_of"] == frame.filter(pl.col("problem") == original)["problem_id"][0]
        assert 0.9 <= detail["similarity"] <= 1.0
        assert row["dedup_cluster"] == detail["duplicate_of"]
    unique = out.filter(pl.col("reject_reason").is_null() & ~pl.col("problem").is_in(
        [p["original"] for p in paraphrases]))
    assert (unique["dedup_cluster"] == unique["problem_id"]).all()
    assert ctx.metrics["clusters"] == len(planted)


def test_semantic_dedup_reuses_cached_embeddings_across_thresholds(ctx, gsm8k_train, paraphrases):
    frame = problems(gsm8k_train[:40] + [paraphrases[0]["paraphrase"]])
    run(SemanticDedup, frame, ctx, threshold=0.95)
    assert ctx.metrics["embedded"] == frame.height
    ctx.metrics.clear()
    _, _, rejected = run(SemanticDedup, frame, ctx, threshold=0.9)
    assert ctx.metrics["embedded"] == 0 and ctx.metrics["embedding_cache_hits"] == frame.height
    assert rejected["problem"].to_list() == [paraphrases[0]["paraphrase"]]
    assert list((ctx.cache_dir / "embeddings").iterdir()), "embeddings are cached under ctx.cache_dir"


@pytest.mark.parametrize("index,search", [("flat", "knn"), ("flat", "range"), ("ivf", "knn"), ("ivf", "range"),
                                          ("hnsw", "knn")])
def test_every_index_finds_planted_near_duplicate_vectors(index, search):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, 64)).astype(np.float32)
    copies = base[:100] + 0.05 * rng.standard_normal((100, 64)).astype(np.float32)
    vectors = np.vstack([base, copies])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    left, right, similarity = similar_pairs(vectors, 0.95, index_kind=index, search=search, nprobe=8)
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    planted = {(i, 3000 + i) for i in range(100)}
    assert len(planted & found) >= 97  # approximate indexes may miss a few
    assert (similarity >= 0.95).all() and (left < right).all()


def test_dense_cluster_memory_is_bounded_by_max_neighbours():
    vectors = np.ones((2000, 16), dtype=np.float32) / 4.0
    vectors[:, 0] += np.linspace(0, 1e-3, 2000, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    left, _, _ = similar_pairs(vectors, 0.9, search="range", max_neighbours=8)
    assert len(left) <= 2000 * 9


def test_semantic_dedup_bad_input(ctx, gsm8k_train):
    huge = "A farmer counts his sheep. " * 40_000  # ~1 MB
    frame = problems(["", None, "   ", gsm8k_train[0], gsm8k_train[0], huge, huge + " Again."])
    frame = frame.with_columns(problem_id=pl.format("p{}", pl.int_range(pl.len())))
    out, kept, rejected = run(SemanticDedup, frame, ctx)
    assert kept["problem_id"].to_list() == ["p0", "p1", "p2", "p3", "p5"]
    assert rejected["problem_id"].to_list() == ["p4", "p6"]  # identical text; same first 8000 chars
    assert out.filter(pl.col("problem_id").is_in(["p0", "p1", "p2"]))["dedup_cluster"].is_null().all()
    assert ctx.metrics["empty_texts"] == 3


@pytest.mark.parametrize("texts", [[], ["One problem only."], [None], ["Same."] * 50, ["", ""]])
def test_semantic_and_exact_dedup_on_degenerate_frames(ctx, texts):
    frame = problems(texts).with_columns(problem_id=pl.format("p{}", pl.int_range(pl.len())))
    for op_class in (ExactDedup, SemanticDedup):
        _, kept, rejected = run(op_class, frame, ctx)
        expected_kept = 1 if texts and texts[0] else len(texts)
        assert kept.height == expected_kept
        assert rejected.height == len(texts) - expected_kept


def test_text_varying_within_an_id_is_a_clear_error(ctx):
    frame = trace_table([("Same problem.", True), ("Same problem.", False)])
    with pytest.raises(ValueError, match="'completion' differs between rows with the same 'problem_id'"):
        run(SemanticDedup, frame, ctx, column="completion")


@pytest.fixture(scope="module")
def real_traces() -> pl.DataFrame:
    frame = pl.DataFrame(read_jsonl("traces_math500_6.jsonl"))
    return frame.with_columns(
        problem_id=problem_id_expr(pl.col("problem")),
        trace_id=pl.concat_str(
            "teacher", pl.col("sample_index").cast(pl.String), pl.int_range(pl.len()).cast(pl.String), separator="-"
        ),
    )


def near_copy(text: str, edits: int, seed: int) -> str:
    words = text.split(" ")
    rng = np.random.default_rng(seed)
    for position in rng.choice(len(words), size=edits, replace=False):
        words[position] = "edited"
    return " ".join(words)


@pytest.mark.parametrize("method", ["minhash", "embedding"])
def test_trace_dedup_drops_near_copies_within_a_problem(ctx, real_traces, method):
    first = real_traces.row(0, named=True)
    second = real_traces.row(7, named=True)
    planted = pl.DataFrame([
        {**first, "trace_id": "copy-a", "completion": near_copy(first["completion"], 5, 1)},
        {**second, "trace_id": "copy-b", "completion": near_copy(second["completion"], 3, 2), "correct": False},
        # The same text under another problem is not a near-copy: traces compare within a problem.
        {**real_traces.row(3, named=True), "trace_id": "other-problem", "completion": first["completion"]},
    ])
    frame = pl.concat([real_traces, planted], how="vertical_relaxed")
    threshold = 0.8 if method == "minhash" else 0.98
    _, kept, rejected = run(TraceDedup, frame, ctx, method=method, threshold=threshold)
    assert sorted(rejected["trace_id"]) == ["copy-a", "copy-b"]
    details = {row["trace_id"]: json.loads(row["reject_detail"]) for row in rejected.iter_rows(named=True)}
    assert details["copy-a"]["duplicate_of"] == first["trace_id"]
    assert details["copy-b"]["duplicate_of"] == second["trace_id"]
    assert all(threshold <= d["similarity"] <= 1.0 and d["method"] == method for d in details.values())
    assert "other-problem" in kept["trace_id"].to_list()


def test_trace_dedup_keep_most_correct_and_degenerate_texts(ctx, real_traces):
    row = real_traces.row(0, named=True)
    frame = pl.DataFrame([
        {**row, "trace_id": "wrong", "correct": False},
        {**row, "trace_id": "right", "correct": True},
        {**row, "trace_id": "empty", "completion": ""},
        {**row, "trace_id": "null", "completion": None},
        {**row, "trace_id": "tiny", "completion": "42"},
    ])
    _, kept, rejected = run(TraceDedup, frame, ctx, keep="most_correct")
    assert rejected["trace_id"].to_list() == ["wrong"]
    assert kept["trace_id"].to_list() == ["right", "empty", "null", "tiny"]


def test_decontaminate_finds_planted_gsm8k_and_math500_leaks(ctx, gsm8k_train, paraphrases):
    gsm8k_test = [r["problem"] for r in read_jsonl("gsm8k_test_60.jsonl")]
    math500 = [r["problem"] for r in read_jsonl("math500_30.jsonl")]
    verbatim = [gsm8k_test[10], gsm8k_test[20].replace("  ", " "), math500[5], math500[6].lower()]
    paraphrased = [p["paraphrase"] for p in paraphrases if p["source"] in ("gsm8k_test", "math500")]
    frame = problems(gsm8k_train + verbatim + paraphrased)
    eval_sets = [str(FIXTURES / "gsm8k_test_60.jsonl"), {"path": str(FIXTURES / "math500_30.jsonl"), "name": "math500"}]
    _, kept, rejected = run(Decontaminate, frame, ctx, eval_sets=eval_sets)
    assert set(rejected["problem"]) == set(verbatim + paraphrased)
    assert kept.height == len(gsm8k_train)
    by_problem = {row["problem"]: json.loads(row["reject_detail"]) for row in rejected.iter_rows(named=True)}
    for text in verbatim:
        assert by_problem[text]["method"] == "ngram" and by_problem[text]["score"] > 0.9
    for p in paraphrases:
        if p["source"] in ("gsm8k_test", "math500"):
            detail = by_problem[p["paraphrase"]]
            assert detail["eval_problem"] == p["original"]
            assert detail["method"] in ("ngram", "embedding") and detail["score"] > 0
    report = pl.read_parquet(ctx.step_dir / REPORT_FILE)
    assert set(report["problem"]) == set(verbatim + paraphrased)
    assert set(report["method"]) == {"ngram", "template", "embedding"}
    assert set(report["match"]) == {"same_problem"}
    assert set(report.columns) >= {"problem_id", "method", "score", "eval_set", "eval_id", "eval_problem"}


def test_decontaminate_against_bundled_eval_sets_by_name(ctx, gsm8k_train):
    bundled = load_eval_sets(["aime24", "aime25", "amc23", "math500"])
    assert bundled.group_by("eval_set").len().sort("eval_set").to_dicts() == [
        {"eval_set": "aime24", "len": 30}, {"eval_set": "aime25", "len": 30},
        {"eval_set": "amc23", "len": 40}, {"eval_set": "math500", "len": 500},
    ]
    aime = bundled.filter(pl.col("eval_set") == "aime24")["eval_problem"][3]
    frame = problems(gsm8k_train[:30] + ["Solve this: " + aime + " Show your work."])
    _, kept, rejected = run(Decontaminate, frame, ctx, methods=["ngram"])
    assert rejected.height == 1 and json.loads(rejected["reject_detail"][0])["eval_set"] == "aime24"
    assert kept.height == 30


def test_eval_set_files_and_clear_errors(tmp_path):
    records = [{"question": "What is 2 + 2?", "id": 7}, {"question": None}]
    (tmp_path / "a.json").write_text(json.dumps(records))
    pl.DataFrame({"question": ["What is 3 + 3?"]}).write_parquet(tmp_path / "b.parquet")
    (tmp_path / "bad.jsonl").write_text('{"problem": "ok"}\n{not json}\n')
    frame = load_eval_sets([EvalSetSpec(path=str(tmp_path / "a.json"), field="question"),
                            EvalSetSpec(path=str(tmp_path / "b.parquet"), field="question", name="mine")])
    assert frame.select("eval_set", "eval_id", "eval_problem").rows() == [
        ("a", "7", "What is 2 + 2?"), ("mine", "0", "What is 3 + 3?")]
    with pytest.raises(ValueError, match=r"a\.json has no field 'problem' \(fields: id, question\)"):
        load_eval_sets([str(tmp_path / "a.json")])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        load_eval_sets([str(tmp_path / "bad.jsonl")])
    with pytest.raises(ValueError, match="neither a bundled set"):
        load_eval_sets(["aime2099"])
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_eval_sets([str(tmp_path / "missing.jsonl")])


def test_greedy_keep_does_not_chain_through_intermediate_rows():
    # 0~1 and 1~2 are similar, 0 and 2 are not: 2 is no duplicate of 0 and stays.
    left, right, similarity = np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.93])
    kept_of, to_kept = greedy_keep(4, left, right, similarity, priority=np.arange(4))
    assert kept_of.tolist() == [0, 0, 2, 3]
    assert to_kept.tolist() == [1.0, 0.95, 1.0, 1.0]
    # With 1 preferred, it keeps 1 and both others are its duplicates.
    kept_of, _ = greedy_keep(4, left, right, similarity, priority=np.array([1, 0, 2, 3]))
    assert kept_of.tolist() == [1, 1, 1, 3]


def test_unreachable_hf_eval_set_is_a_clear_error():
    with pytest.raises(ValueError, match="could not load HF dataset 'no-such-org/no-such-set'"):
        load_eval_sets([EvalSetSpec(hf_dataset="no-such-org/no-such-set")])


def test_connected_clustering_chains_and_greedy_does_not(ctx):
    # Three texts where the middle one is close to both ends, the ends less so.
    texts = ["Tom has 3 apples and buys 2 more. How many apples does Tom have?",
             "Tom has 3 apples and buys 2 more apples. How many apples does he have now?",
             "Tom had 3 apples, then he bought 2 more apples at the shop. How many apples does he have now?"]
    frame = problems(texts)
    vectors = Embedder("bundled:minilm", ctx.cache_dir).embed(texts)
    similarity = vectors @ vectors.T
    threshold = float(min(similarity[0, 1], similarity[1, 2])) - 1e-3
    if similarity[0, 2] >= threshold:
        pytest.skip("the ends are too similar for this model to show chaining")
    # One threshold for every pair (the texts state the same numbers: no lower same-numbers threshold).
    _, _, greedy = run(SemanticDedup, frame, ctx, threshold=threshold, same_numbers_threshold=None)
    _, _, connected = run(SemanticDedup, frame, ctx, threshold=threshold, clustering="connected",
                          same_numbers_threshold=None)
    assert greedy["problem"].to_list() == [texts[1]]
    assert connected["problem"].to_list() == [texts[1], texts[2]]
    assert json.loads(connected["reject_detail"][1])["similarity"] < threshold

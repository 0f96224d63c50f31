"""Dedup and decontamination filters: exact_dedup, semantic_dedup, trace_dedup,
decontaminate.

Each filter rejects rows with a reason and JSON evidence (`reject_detail`) naming the
row it duplicates or the eval problem it matches, with the similarity. Rows whose text
is null or blank never match anything: they are kept and counted as `empty_texts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from curate.core.io import write_parquet
from curate.core.operator import Filter, OperatorConfig, StepContext, register
from curate.dedup.embed import DEFAULT_MAX_CHARS, Embedder, check_embedding_model
from curate.dedup.evalsets import EvalSetSpec, check_eval_sets, load_eval_sets
from curate.dedup.neighbours import IndexKind, SearchKind, components, greedy_keep, similar_pairs
from curate.dedup.questions import question_keys, same_question
from curate.dedup.units import (
    KEEP_DESCRIPTION,
    UNIT_DESCRIPTION,
    KeepPolicy,
    UnitKind,
    keepers,
    keyed,
    policy_columns,
    priority,
    to_rows,
    unit_key,
    units,
)
from curate.text import (
    ngram_hashes,
    normalised_text,
    number_contexts_key,
    number_key,
    number_values,
    template_id,
    template_text,
    template_tokens,
    word_tokens,
)

DEFAULT_MODEL = "bundled:minilm"
MODEL_DESCRIPTION = (
    "Embedding model: 'bundled:minilm' (all-MiniLM-L6-v2), 'bundled:minilm-static' (a "
    "model2vec static model distilled from it on first use: ~100x faster, for large "
    "pools), a local sentence-transformers or model2vec folder, or a Hub id."
)
REPORT_FILE = "decontamination_report.parquet"
GUARD_FILE = "number_guard_pairs.parquet"
GUARD_DESCRIPTION = (
    "Number and question guard: two texts are duplicates only if they state the same numbers in the same "
    "order after normalisation (1,000 = 1000 = 1000.0; 1/2 = \\frac{1}{2} = 0.5 = half; 3\\frac{4}{5} = 3 4/5; "
    "number words: twenty-five, one, two hundred; sentences may be reordered) and ask the same question (no "
    "trading 'more' for 'in total', profit for revenue, minimum for maximum, one person for another): a changed "
    "number or question makes a different problem. auto: on for math rows (domain 'math', or no domain "
    "column), off for other domains; on: every row; off: never."
)
NumberGuard = Literal["auto", "on", "off"]
FILTER_COLUMNS = ("reject_reason", "reject_detail")
# trace_dedup's MinHash: text bytes shingled at a time, candidate pairs compared at a time,
# the marker of a bin no shingle fell in, and the chance that two texts at the threshold
# share a band.
SHINGLE_CHUNK_BYTES = 16_000_000
SIMILARITY_BATCH = 65_536
EMPTY_BIN = np.iinfo(np.uint64).max
LSH_RECALL = 0.99


class _UnitConfig(OperatorConfig):
    column: str = Field("problem", description="Text column compared.")
    id_column: str = Field(
        "problem_id", description="Column naming each text in reject_detail (trace_id for completions)."
    )
    unit: UnitKind = Field("auto", description=UNIT_DESCRIPTION)


class _EmbeddingConfig(OperatorConfig):
    model: str = Field(DEFAULT_MODEL, description=MODEL_DESCRIPTION)
    batch_size: int = Field(64, ge=1, description="Texts per model forward pass.")
    max_chars: int = Field(
        DEFAULT_MAX_CHARS, ge=1, description="Characters of each text embedded (models read ~256-512 tokens)."
    )


def _model_problems(model: str) -> list[str]:
    problem = check_embedding_model(model)
    return [f"model: {problem}"] if problem else []


def _valid_text(column: str = "text") -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column).str.strip_chars().str.len_chars() > 0)




def _count_empty(ctx: StepContext, unit_frame: pl.DataFrame) -> None:
    ctx.count("empty_texts", unit_frame.height - unit_frame.select(_valid_text().sum()).item())


class ExactDedupConfig(_UnitConfig):
    keep: KeepPolicy = Field("first", description=KEEP_DESCRIPTION)


@register
class ExactDedup(Filter[ExactDedupConfig]):
    """Reject rows whose text equals an earlier one's after normalisation (Unicode, case,
    whitespace, LaTeX spacing, number formats); reject_detail names the kept row."""

    name = "exact_dedup"
    reject_reasons = ("exact_duplicate",)
    Config = ExactDedupConfig
    scope = "global"
    adds = FILTER_COLUMNS

    def input_columns(self) -> set[str]:
        return {self.config.column, self.config.id_column} | policy_columns(self.config.keep)

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key, frame = unit_key(frame, config.id_column, config.unit), keyed(frame)
        unit_frame = units(frame, config.column, config.id_column, config.keep, key)
        normalised = normalised_text(pl.col("text"))
        unit_frame = keepers(unit_frame.with_columns(cluster=pl.when(normalised.str.len_chars() > 0).then(normalised)),
                             config.keep)
        duplicate = pl.col("kept_unit").is_not_null() & (pl.col("kept_unit") != pl.col("unit"))
        decisions = unit_frame.select(
            key,
            reject_reason=pl.when(duplicate).then(pl.lit("exact_duplicate")),
            reject_detail=pl.when(duplicate).then(pl.struct(duplicate_of=pl.col("kept")).struct.json_encode()),
        )
        ctx.count("exact_duplicates", int(decisions["reject_reason"].is_not_null().sum()))
        _count_empty(ctx, unit_frame)
        return to_rows(frame, key, decisions, list(FILTER_COLUMNS))


class TemplateCapConfig(_UnitConfig):
    max_per_template: int | None = Field(
        None, ge=1,
        description="Most rows kept per template (the text with its numbers masked); the rest are rejected "
        "as template_duplicate. null: keep every row and only add template_id; 1: one problem per template.",
    )
    keep: KeepPolicy = Field("first", description=KEEP_DESCRIPTION)


@register
class TemplateCap(Filter[TemplateCapConfig]):
    """Adds `template_id`: an id of the text with every stated number masked (digits,
    fractions, small number words), so problems that differ only in their numbers share
    it. With max_per_template, keeps that many rows per template (by the keep policy) and
    rejects the others as `template_duplicate`; reject_detail names the first kept row."""

    name = "template_cap"
    reject_reasons = ("template_duplicate",)
    Config = TemplateCapConfig
    scope = "global"
    adds = (*FILTER_COLUMNS, "template_id")

    def input_columns(self) -> set[str]:
        return {self.config.column, self.config.id_column} | policy_columns(self.config.keep)

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key, frame = unit_key(frame, config.id_column, config.unit), keyed(frame)
        unit_frame = units(frame, config.column, config.id_column, config.keep, key)
        unit_frame = unit_frame.with_columns(
            template_id=pl.when(_valid_text()).then(template_id(pl.col("text"))),
            place=pl.Series(priority(unit_frame, config.keep)),
        )
        templated = pl.col("template_id").is_not_null()
        rank = pl.col("place").rank("ordinal").over("template_id")
        over_cap = templated & (rank > config.max_per_template) if config.max_per_template else pl.lit(False)
        first_kept = pl.col("id").sort_by("place").first().over("template_id")
        decisions = unit_frame.select(
            key, "template_id",
            reject_reason=pl.when(over_cap).then(pl.lit("template_duplicate")),
            reject_detail=pl.when(over_cap).then(pl.struct(same_template_as=first_kept).struct.json_encode()),
        )
        ctx.count("templates", decisions["template_id"].n_unique() - int(decisions["template_id"].null_count() > 0))
        ctx.count("template_duplicates", int(decisions["reject_reason"].is_not_null().sum()))
        _count_empty(ctx, unit_frame)
        return to_rows(frame, key, decisions, [*FILTER_COLUMNS, "template_id"])


class SemanticDedupConfig(_EmbeddingConfig, _UnitConfig):
    threshold: float = Field(
        0.9, gt=0, le=1, description="Cosine similarity at or above which two texts are duplicates."
    )
    keep: KeepPolicy = Field("first", description=KEEP_DESCRIPTION)
    index: IndexKind = Field(
        "auto",
        description="FAISS index: flat (exact), ivf or hnsw (approximate); auto = flat up to flat_max_rows, else ivf.",
    )
    flat_max_rows: int = Field(
        50_000, ge=1, description="auto: largest number of distinct texts searched exactly (flat costs n^2)."
    )
    search: SearchKind = Field(
        "knn",
        description="knn: each text's max_neighbours nearest, kept if >= threshold; "
        "range: all hits >= threshold (flat/ivf).",
    )
    max_neighbours: int = Field(
        32, ge=1, description="Most neighbours kept per text (bounds memory on dense clusters)."
    )
    clustering: Literal["greedy", "connected"] = Field(
        "greedy",
        description="greedy: keep rows in keep order, removing those similar to a kept row (every removed row "
        "is >= threshold to its kept row); connected: union-find clusters, one row kept per cluster (chains "
        "A~B~C remove C for A: more recall, less precision).",
    )
    nprobe: int = Field(8, ge=1, description="ivf: lists searched per query (more = higher recall, slower).")
    number_guard: NumberGuard = Field("auto", description=GUARD_DESCRIPTION)
    same_numbers_threshold: float | None = Field(
        0.86, gt=0, le=1,
        description="Cosine threshold for pairs the number guard covers whose texts state the same (non-empty) "
        "numbers: agreeing numbers are evidence too, so a lower cosine suffices (catches name swaps); null: "
        "`threshold` for every pair.",
    )


@register
class SemanticDedup(Filter[SemanticDedupConfig]):
    """Embed -> FAISS neighbours above a cosine threshold -> clusters -> keep by policy.
    By default (clustering: greedy) a row is removed only when it is itself similar to
    a kept row, so every rejected row's reject_detail gives a kept row and a similarity
    >= threshold; clustering: connected uses union-find clusters instead. Adds
    dedup_cluster (the kept row's id). Embeddings are cached on disk: re-runs and
    threshold changes do not re-embed. The number guard (on for math) keeps apart
    similar texts whose stated numbers differ, and lets texts stating the same numbers
    merge from same_numbers_threshold; the pairs it kept apart are counted
    (`number_guard_pairs`) and listed in the step folder's `number_guard_pairs.parquet`."""

    name = "semantic_dedup"
    reject_reasons = ("near_duplicate",)
    Config = SemanticDedupConfig
    scope = "global"
    adds = (*FILTER_COLUMNS, "dedup_cluster")

    def input_columns(self) -> set[str]:
        return {self.config.column, self.config.id_column} | policy_columns(self.config.keep)

    def check_config(self, recipe_dir: Path) -> list[str]:
        return _model_problems(self.config.model)

    def setup(self, ctx: StepContext) -> None:
        config = self.config
        self.embedder = Embedder(config.model, ctx.cache_dir, config.batch_size, config.max_chars)

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key, frame = unit_key(frame, config.id_column, config.unit), keyed(frame)
        carry = ("domain",) if config.number_guard == "auto" and "domain" in frame.columns else ()
        unit_frame = units(frame, config.column, config.id_column, config.keep, key, carry=carry)
        valid = unit_frame.filter(_valid_text())
        vectors, node = _embed_distinct(self.embedder, valid["text"], config.max_chars, ctx)
        guard = config.number_guard != "off"
        search_threshold = min(config.threshold, config.same_numbers_threshold or 1.0) if guard else config.threshold
        edges = similar_pairs(
            vectors, search_threshold, index_kind=config.index, flat_max_rows=config.flat_max_rows,
            search=config.search, max_neighbours=config.max_neighbours, nprobe=config.nprobe,
        )
        # Identical texts share a node; each node is represented by its best unit.
        unit_priority = priority(valid, config.keep)
        by_node = np.lexsort((unit_priority, node))
        best_unit = by_node[np.r_[True, node[by_node][1:] != node[by_node][:-1]]] if len(node) else by_node
        if guard:
            edges = _number_guard(valid, node, best_unit, edges, config, ctx)
        if config.clustering == "greedy":
            kept_node, _ = greedy_keep(len(vectors), *edges, unit_priority[best_unit])
        else:
            labels = components(len(vectors), edges[0], edges[1])
            by_label = np.lexsort((unit_priority[best_unit], labels))
            first = by_label[np.r_[True, labels[by_label][1:] != labels[by_label][:-1]]] if len(labels) else by_label
            kept_node = first[labels]
        kept_position = best_unit[kept_node[node]]
        similarity = _row_cosines(vectors, node, kept_node[node])
        decisions = _duplicate_decisions(valid, key, kept_position, similarity)
        duplicate = pl.col("kept") != pl.col("id")
        decisions = decisions.select(
            key,
            dedup_cluster=pl.col("kept"),
            reject_reason=pl.when(duplicate).then(pl.lit("near_duplicate")),
            reject_detail=pl.when(duplicate).then(
                pl.struct(duplicate_of="kept", similarity="similarity", cluster_size="size").struct.json_encode()
            ),
        )
        ctx.count("near_duplicates", int(decisions["reject_reason"].is_not_null().sum()))
        ctx.count("clusters", decisions.filter(pl.col("reject_reason").is_not_null())["dedup_cluster"].n_unique())
        _count_empty(ctx, unit_frame)
        return to_rows(frame, key, decisions, [*FILTER_COLUMNS, "dedup_cluster"])


def _number_guard(valid: pl.DataFrame, node: np.ndarray, best_unit: np.ndarray,
                  edges: tuple[np.ndarray, np.ndarray, np.ndarray], config: SemanticDedupConfig,
                  ctx: StepContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges whose two texts are the same problem by the guard (or that it does not
    cover); the others are counted and written to GUARD_FILE. Same problem: the same
    numbers in the same order (or, when the words around them changed too, each number before
    the same word: statements reordered; numbers trading places in the same words differ) and
    the same question (curate.dedup.questions). An edge below `threshold` stays only when
    the guard covers it and finds the same problem with at least one number, at or above
    same_numbers_threshold."""
    left, right, similarity = edges
    text = pl.col("text").str.slice(0, config.max_chars)
    # Both texts of an edge are distinct node texts: one unit per node stands for it. Only
    # nodes on an edge are read (the keys cost ~1 ms a text); `at` is a node's row among them.
    on_edge = np.unique(np.concatenate([left, right]))
    keys = valid[best_unit[on_edge]].select(*question_keys(text), numbers=number_key(text),
                                            contexts=number_contexts_key(text), template=template_text(text))
    left_at, right_at = np.searchsorted(on_edge, left), np.searchsorted(on_edge, right)
    pairs = pl.concat([keys[left_at].select(pl.all().name.prefix("left_")),
                       keys[right_at].select(pl.all().name.prefix("right_"))], how="horizontal")
    verdict = pairs.select(
        numbers=(pl.col("left_numbers") == pl.col("right_numbers"))
        | (pl.col("left_contexts") == pl.col("right_contexts")) & (pl.col("left_template") != pl.col("right_template")),
        question=same_question(),
    )
    guarded = np.ones(len(best_unit), dtype=bool)
    if "domain" in valid.columns:
        math_unit = valid.select(pl.col("domain").is_null() | (pl.col("domain") == "math"))["domain"].to_numpy()
        guarded = np.zeros(len(best_unit), dtype=bool)
        guarded[node[math_unit]] = True
    covered = guarded[left] & guarded[right]
    same_numbers, same_question_ = verdict["numbers"].to_numpy(), verdict["question"].to_numpy()
    apart = covered & ~(same_numbers & same_question_)
    stated = (keys["numbers"].str.len_chars() > 0).to_numpy()
    relaxed = covered & ~apart & stated[left_at] & (similarity < config.threshold)
    weak = (similarity < config.threshold) & ~relaxed
    ctx.count("same_numbers_pairs", int(relaxed.sum()))
    ids = valid["id"].gather(best_unit)
    # The file lists the pairs that would be duplicates without the guard.
    listed = apart & (similarity >= config.threshold)
    ctx.count("number_guard_pairs", int(listed.sum()))
    ctx.count("question_guard_pairs", int((listed & same_numbers).sum()))
    write_parquet(pl.DataFrame({
        config.id_column: ids.gather(left[listed]), f"other_{config.id_column}": ids.gather(right[listed]),
        "similarity": similarity[listed].astype(np.float64).round(4),
        "numbers": keys["numbers"].gather(left_at[listed]), "other_numbers": keys["numbers"].gather(right_at[listed]),
        "question": _concept_list(keys["question_concepts"].gather(left_at[listed])),
        "other_question": _concept_list(keys["question_concepts"].gather(right_at[listed])),
    }), ctx.step_dir / GUARD_FILE)
    keep = ~apart & ~weak
    return left[keep], right[keep], similarity[keep]


def _concept_list(concepts: pl.Series) -> pl.Series:
    """A question's concepts as words ("total more"), without their occurrence numbers."""
    return concepts.list.eval(pl.element().str.replace(r"#\d+$", "")).list.sort().list.join(" ")


def _row_cosines(vectors: np.ndarray, left: np.ndarray, right: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Cosine of vectors[left[i]] and vectors[right[i]], a batch at a time (gathering all
    rows at once would copy the embedding matrix twice)."""
    out = np.ones(len(left), dtype=np.float32)
    differ = np.flatnonzero(left != right)
    for start in range(0, len(differ), batch):
        rows = differ[start:start + batch]
        out[rows] = np.einsum("ij,ij->i", vectors[left[rows]], vectors[right[rows]])
    return out.clip(-1.0, 1.0)


def _duplicate_decisions(valid: pl.DataFrame, key: str, kept_position: np.ndarray,
                         similarity: np.ndarray) -> pl.DataFrame:
    """key, id, kept (the kept unit's id), similarity to it, size (units kept as that one)."""
    kept = valid["id"].gather(kept_position) if len(kept_position) else valid["id"].clear()
    return valid.select(key, "id").with_columns(
        kept=kept, similarity=pl.Series(similarity, dtype=pl.Float64).round(4),
    ).with_columns(size=pl.len().over("kept"))


def _embed_distinct(embedder: Embedder, texts: pl.Series, max_chars: int,
                    ctx: StepContext) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the distinct texts and, per input text, its row among them: identical
    texts are embedded once and are trivially duplicates (similarity 1)."""
    truncated = texts.str.slice(0, max_chars)
    distinct = truncated.unique(maintain_order=True)
    node = pl.DataFrame({"text": truncated}).join(
        pl.DataFrame({"text": distinct}).with_row_index("node"), on="text", how="left", maintain_order="left"
    )["node"].to_numpy().astype(np.int64)
    stats: dict = {}
    vectors = embedder.embed(distinct.to_list(), on_block=ctx.on_progress, stats=stats)
    ctx.count("embedded", stats.get("embedded", 0))
    ctx.count("embedding_cache_hits", stats.get("cache_hits", 0))
    return vectors, node


class TraceDedupConfig(_EmbeddingConfig):
    column: str = Field("completion", description="Trace text compared (completion or reasoning).")
    group_column: str = Field("problem_id", description="Traces are compared only within one value of this column.")
    id_column: str = Field("trace_id", description="Column identifying each trace.")
    method: Literal["minhash", "embedding"] = Field(
        "minhash", description="minhash: Jaccard similarity of word shingles (estimated); embedding: cosine similarity."
    )
    threshold: float = Field(0.8, gt=0, le=1, description="Similarity at or above which two traces are near-copies.")
    shingle_size: int = Field(5, ge=1, description="minhash: words per shingle.")
    num_perm: int = Field(128, ge=16, description="minhash: signature size (more = more exact Jaccard).")
    keep: Literal["first", "shortest", "most_correct"] = Field(
        "first",
        description="Which near-copy is kept: first, shortest, or most_correct (a correct one; needs `correct`).",
    )


@register
class TraceDedup(Filter[TraceDedupConfig]):
    """Within each problem, reject traces that are near-copies of another trace (the same
    teacher sampling the same text); reject_detail names the kept trace and the similarity."""

    name = "trace_dedup"
    reject_reasons = ("near_copy_trace",)
    Config = TraceDedupConfig
    scope = "global"
    adds = FILTER_COLUMNS

    def input_columns(self) -> set[str]:
        config = self.config
        return {config.column, config.group_column, config.id_column} | policy_columns(config.keep)

    def check_config(self, recipe_dir: Path) -> list[str]:
        return _model_problems(self.config.model) if self.config.method == "embedding" else []

    def setup(self, ctx: StepContext) -> None:
        config = self.config
        self.embedder = None
        if config.method == "embedding":
            self.embedder = Embedder(config.model, ctx.cache_dir, config.batch_size, config.max_chars)

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key, frame = unit_key(frame, config.id_column, "row"), keyed(frame)
        unit_frame = units(frame, config.column, config.id_column, config.keep, key, carry=(config.group_column,))
        unit_frame = unit_frame.rename({config.group_column: "group"})
        # Pairs and keep decisions use positions in `valid`.
        valid = unit_frame.filter(_valid_text()).drop("unit").with_row_index("unit")
        if config.method == "minhash":
            pairs = _minhash_pairs(valid, config.shingle_size, config.num_perm, config.threshold)
        else:
            assert self.embedder is not None, "setup loads the embedder for method 'embedding'"
            pairs = _embedding_pairs(valid, self.embedder, config, ctx)
        close = pairs.filter(pl.col("similarity") >= config.threshold)
        kept_position, similarity = greedy_keep(valid.height, close["left"].to_numpy(), close["right"].to_numpy(),
                                                close["similarity"].to_numpy(), priority(valid, config.keep))
        decisions = _duplicate_decisions(valid, key, kept_position, similarity)
        duplicate = pl.col("kept") != pl.col("id")
        decisions = decisions.select(
            key,
            reject_reason=pl.when(duplicate).then(pl.lit("near_copy_trace")),
            reject_detail=pl.when(duplicate).then(
                pl.struct(duplicate_of="kept", similarity="similarity", method=pl.lit(config.method))
                .struct.json_encode()
            ),
        )
        ctx.count("near_copy_traces", int(decisions["reject_reason"].is_not_null().sum()))
        _count_empty(ctx, unit_frame)
        return to_rows(frame, key, decisions, list(FILTER_COLUMNS))


def _minhash_pairs(valid: pl.DataFrame, shingle_size: int, num_perm: int, threshold: float) -> pl.DataFrame:
    """Estimated Jaccard similarity (left, right, similarity) of candidate pairs of units
    in the same group, by banded LSH over one-permutation MinHash signatures: no pair is
    compared unless it shares a band, and a band's bucket links each member to the
    bucket's first and to the previous member (2 pairs per member and band, not all
    pairs), so memory stays linear in the number of traces."""
    signatures = _signatures(valid, shingle_size, num_perm)
    rows_per_band = _rows_per_band(num_perm, threshold)
    group = valid["group"].rank("dense").to_numpy().astype(np.uint64)
    multipliers = np.random.default_rng(0).integers(1, 2**63, size=rows_per_band + 1, dtype=np.uint64) | np.uint64(1)
    lefts, rights = [], []
    with np.errstate(over="ignore"):
        for band in range(num_perm // rows_per_band):
            values = signatures[:, band * rows_per_band:(band + 1) * rows_per_band]
            bucket = (values * multipliers[:-1]).sum(axis=1, dtype=np.uint64) + group * multipliers[-1]
            order = np.argsort(bucket, kind="stable")
            sorted_bucket = bucket[order]
            same = sorted_bucket[1:] == sorted_bucket[:-1]
            starts = np.r_[0, np.flatnonzero(~same) + 1]
            first = order[starts[np.searchsorted(starts, np.arange(len(order)), side="right") - 1]]
            follower = np.flatnonzero(same) + 1
            lefts += [order[follower - 1], first[follower]]
            rights += [order[follower], order[follower]]
    if not lefts:
        return pl.DataFrame(schema={"left": pl.UInt32, "right": pl.UInt32, "similarity": pl.Float64})
    left, right = np.concatenate(lefts), np.concatenate(rights)
    left, right = np.minimum(left, right), np.maximum(left, right)
    pair = np.unique((left.astype(np.int64) * len(signatures) + right)[left != right])
    left, right = pair // len(signatures), pair % len(signatures)
    similarity = np.concatenate([_signature_similarity(signatures[left[i:i + SIMILARITY_BATCH]],
                                                       signatures[right[i:i + SIMILARITY_BATCH]])
                                 for i in range(0, len(left), SIMILARITY_BATCH)] or [np.zeros(0)])
    unit = valid["unit"].to_numpy()
    return pl.DataFrame({"left": unit[left], "right": unit[right], "similarity": similarity})


def _signatures(valid: pl.DataFrame, shingle_size: int, num_perm: int) -> np.ndarray:
    """One-permutation MinHash, (units, num_perm) uint64: each shingle hash falls in one of
    num_perm bins, a signature keeps each bin's minimum (EMPTY_BIN when none). Shingles are
    hashed a chunk of texts at a time, so only one chunk's shingles are in memory."""
    signatures = np.full((valid.height, num_perm), EMPTY_BIN, dtype=np.uint64)
    chunk = (pl.col("text").str.len_bytes().cum_sum() // SHINGLE_CHUNK_BYTES).alias("chunk")
    positions = valid.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("position"), "text", chunk)
    for part in positions.partition_by("chunk", maintain_order=True):
        tokens = part.select("position", tokens=word_tokens(pl.col("text")))
        minima = (
            ngram_hashes(tokens, "position", "tokens", shingle_size)
            .group_by("position", (pl.col("gram") % num_perm).alias("bin"))
            .agg((pl.col("gram") // num_perm).min().alias("value"))
        )
        signatures[minima["position"].to_numpy(), minima["bin"].to_numpy()] = minima["value"].to_numpy()
    return signatures


def _rows_per_band(num_perm: int, threshold: float) -> int:
    """The most signature rows per band (fewest candidates) with which two texts of
    Jaccard similarity `threshold` still share a band with probability >= 0.99."""
    best = 1
    for rows in range(1, num_perm + 1):
        if 1 - (1 - threshold**rows) ** (num_perm // rows) >= LSH_RECALL:
            best = rows
    return best


def _signature_similarity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Share of the bins non-empty in either signature whose minima agree."""
    left_full, right_full = left != EMPTY_BIN, right != EMPTY_BIN
    matches = ((left == right) & left_full).sum(axis=1)
    union = (left_full | right_full).sum(axis=1)
    return matches / np.maximum(union, 1)


def _embedding_pairs(valid: pl.DataFrame, embedder: Embedder, config: TraceDedupConfig,
                     ctx: StepContext) -> pl.DataFrame:
    """Cosine similarity of nearest-neighbour pairs of units in the same group."""
    vectors, node = _embed_distinct(embedder, valid["text"], config.max_chars, ctx)
    unit_vectors = vectors[node]
    left, right, similarity = similar_pairs(unit_vectors, config.threshold)
    unit = valid["unit"].to_numpy()
    group = valid["group"].rank("dense").to_numpy()
    same_group = group[left] == group[right]
    return pl.DataFrame({
        "left": unit[left][same_group], "right": unit[right][same_group],
        "similarity": similarity[same_group].astype(np.float64),
    })


class DecontaminateConfig(_EmbeddingConfig, _UnitConfig):
    eval_sets: list[str | EvalSetSpec] = Field(
        ["aime24", "aime25", "amc23", "math500"],
        description="Eval sets: bundled names (aime24, aime25, amc23, math500), .jsonl/.json/.parquet "
        "paths (field 'problem'), or {path|hf_dataset, field, split, name} mappings.",
    )
    methods: list[Literal["ngram", "template", "embedding"]] = Field(
        ["ngram", "template", "embedding"], min_length=1,
        description="ngram: shared rare word n-grams (numbers masked); template: the same text with numbers "
        "masked (template_id); embedding: cosine similarity.",
    )
    ngram: int = Field(13, ge=1, description="Words per n-gram (texts shorter than this match only as a whole).")
    min_shared_ngrams: int = Field(1, ge=1, description="ngram: shared n-grams needed to flag a problem.")
    min_overlap: float = Field(
        0.25, ge=0, le=1,
        description="ngram: share of the shorter text's n-grams (weighted by rarity) that the two texts must share.",
    )
    common_ngram_share: float = Field(
        0.01, gt=0, le=1,
        description="ngram: an n-gram found in more than this share of all texts (pool and eval sets; and in "
        "more than 10) is boilerplate and counts for nothing; rarer ones weigh log(texts / texts with it).",
    )
    embedding_threshold: float = Field(
        0.9, gt=0, le=1, description="embedding: cosine similarity that flags a problem."
    )
    same_template: Literal["reject", "report"] = Field(
        "reject",
        description="A match whose numbers or question differ from the eval item's (same template, other "
        "numbers or question): reject as `same_template`, or only list it in the report. Matches stating the eval "
        "item's numbers in order and asking the same question are `contaminated` (same problem).",
    )


CONTAMINATED, SAME_TEMPLATE = "contaminated", "same_template"
QUESTION_KEYS = ("question_concepts", "question_words", "content_words")


def _same_problem() -> pl.Expr:
    """A candidate pair of (pool text, eval item) is the same problem when the pool text
    states the eval item's numbers in the same order, one after another (a prefix or suffix
    may add numbers around them), and asks the same question."""
    padded = pl.concat_str(pl.lit(" "), pl.col("number_order"), pl.lit(" "))
    in_order = padded.str.contains(pl.concat_str(pl.lit(" "), pl.col("eval_number_order"), pl.lit(" ")),
                                   literal=True) | (pl.col("eval_number_order") == "")
    return in_order & same_question()
# An eval item, its copies and its same-template variants in the pool share n-grams (numbers
# are masked): an n-gram is boilerplate only when more texts than these hold it.
COMMON_MIN_TEXTS = 10


@register
class Decontaminate(Filter[DecontaminateConfig]):
    """Reject problems that appear in an eval set. Candidates come from rare shared word
    n-grams (numbers masked, boilerplate n-grams weigh nothing, a minimum share of the
    shorter text), equal templates (the text with numbers masked) or embedding
    similarity; a candidate stating the numbers of its eval item in the same order, one
    after another, and asking the same question (curate.dedup.questions) is the same problem
    (`contaminated`), otherwise the same template with other numbers or another question
    (`same_template`).
    reject_detail gives the matched eval problem, method, score and evidence;
    `decontamination_report.parquet` in the step folder lists every candidate pair with
    its evidence (what a later confirmation step reads)."""

    name = "decontaminate"
    reject_reasons = (CONTAMINATED, SAME_TEMPLATE)
    Config = DecontaminateConfig
    scope = "global"
    adds = FILTER_COLUMNS

    def input_columns(self) -> set[str]:
        return {self.config.column, self.config.id_column}

    def check_config(self, recipe_dir: Path) -> list[str]:
        problems = check_eval_sets(self.config.eval_sets)
        return problems + (_model_problems(self.config.model) if "embedding" in self.config.methods else [])

    def setup(self, ctx: StepContext) -> None:
        config = self.config
        evals = load_eval_sets(config.eval_sets).with_row_index("eval_row")
        if evals.is_empty():
            raise ValueError("decontaminate: the eval sets hold no problems")
        problem = pl.col("eval_problem")
        self.evals = evals.with_columns(
            *(column.name.prefix("right_") for column in question_keys(problem)),
            eval_numbers=number_values(problem), eval_number_order=number_key(problem),
            eval_template=template_id(problem))
        tokens = self.evals.select("eval_row", tokens=template_tokens(problem))
        self.eval_grams = ngram_hashes(tokens, "eval_row", "tokens", config.ngram)
        self.embedder = None
        if "embedding" in config.methods:
            self.embedder = Embedder(config.model, ctx.cache_dir, config.batch_size, config.max_chars)
            self.eval_vectors = self.embedder.embed(self.evals["eval_problem"].to_list())

    def mark(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        key, frame = unit_key(frame, config.id_column, config.unit), keyed(frame)
        unit_frame = units(frame, config.column, config.id_column, "first", key)
        text = pl.col("text")
        valid = unit_frame.filter(_valid_text()).with_columns(
            *question_keys(text), numbers=number_values(text), number_order=number_key(text))
        matches = []
        if "ngram" in config.methods:
            matches.append(self._ngram_matches(valid, ctx))
        if "template" in config.methods:
            matches.append(self._template_matches(valid))
        if "embedding" in config.methods:
            matches.append(self._embedding_matches(valid, ctx))
        evidence = {"shared_ngrams": pl.UInt32, "common_ngrams": pl.UInt32}
        matches = [m.with_columns(pl.lit(None, dtype).alias(c) for c, dtype in evidence.items() if c not in m.columns)
                   .select("unit", "eval_row", "method", "score", *evidence) for m in matches]
        report = (
            pl.concat(matches)
            .join(valid.select("unit", key, "id", "text", "numbers", "number_order",
                               *(pl.col(c).name.prefix("left_") for c in QUESTION_KEYS)), on="unit")
            .join(self.evals.drop("eval_template"), on="eval_row")
            .with_columns(match=pl.when(_same_problem()).then(pl.lit("same_problem"))
                          .otherwise(pl.lit("same_template")))
            .sort("unit", "method", pl.col("score"), descending=[False, False, True])
        )
        write_parquet(
            report.select(pl.col("id").alias(config.id_column), pl.col("text").alias(config.column), "match",
                          "method", "score", *evidence, "numbers", "eval_numbers", "eval_set", "eval_id",
                          "eval_problem"),
            ctx.step_dir / REPORT_FILE,
        )
        # One piece of evidence per problem: the same problem before the same template, then
        # n-gram overlap (verbatim) before the others, then the strongest.
        best = (
            report.sort([pl.col("match") != "same_problem", pl.col("method") != "ngram", pl.col("score")],
                        descending=[False, False, True])
            .group_by(key, maintain_order=True)
            .agg(pl.all().first(), pl.col("method").unique(maintain_order=True).alias("methods"))
        )
        if config.same_template == "report":
            best = best.filter(pl.col("match") == "same_problem")
        decisions = best.select(
            key,
            reject_reason=pl.when(pl.col("match") == "same_problem").then(pl.lit(CONTAMINATED))
            .otherwise(pl.lit(SAME_TEMPLATE)),
            reject_detail=pl.struct(
                "match", "method", pl.col("score").round(4), "eval_set", "eval_id", "eval_problem", "methods",
                *evidence, "numbers", "eval_numbers",
            ).struct.json_encode(),
        )
        ctx.count("contaminated", decisions.filter(pl.col("reject_reason") == CONTAMINATED).height)
        # Problems whose best match is a template with other numbers (rejected or only reported).
        ctx.count("same_template", report.group_by(key).agg((pl.col("match") == "same_problem").any().alias("same"))
                  .filter(~pl.col("same")).height)
        for (method,), rows in report.group_by("method"):
            ctx.count(f"flagged_by_{method}", rows.height)
        _count_empty(ctx, unit_frame)
        return to_rows(frame, key, decisions, list(FILTER_COLUMNS))

    def _ngram_matches(self, valid: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """(unit, eval_row) pairs sharing rare n-grams worth at least min_overlap of the
        shorter text's weight. An n-gram's weight is log(texts / texts with it), and 0
        when more than common_ngram_share of all texts (and more than COMMON_MIN_TEXTS) hold it."""
        config = self.config
        tokens = valid.select("unit", tokens=template_tokens(pl.col("text")))
        grams = ngram_hashes(tokens, "unit", "tokens", config.ngram)
        texts = valid.height + self.evals.height
        frequency = pl.concat([grams.select("gram"), self.eval_grams.select("gram")]).group_by("gram").agg(
            texts=pl.len())
        common = (pl.col("texts") > COMMON_MIN_TEXTS) & (pl.col("texts") > config.common_ngram_share * texts)
        weights = frequency.select("gram", common=common, weight=pl.when(common).then(0.0).otherwise(
            (texts / pl.col("texts")).log()))
        ctx.count("common_ngrams", int(weights["common"].sum()))
        grams = grams.join(weights, on="gram")
        eval_grams = self.eval_grams.join(weights, on="gram")
        unit_weight = grams.group_by("unit").agg(unit_weight=pl.col("weight").sum())
        eval_weight = eval_grams.group_by("eval_row").agg(eval_weight=pl.col("weight").sum())
        shared = (
            grams.join(eval_grams.select("eval_row", "gram"), on="gram")
            .group_by("unit", "eval_row")
            .agg(shared_weight=pl.col("weight").sum(), shared_ngrams=pl.len().cast(pl.UInt32),
                 common_ngrams=pl.col("common").sum().cast(pl.UInt32))
            .filter(pl.col("shared_ngrams") >= config.min_shared_ngrams)
            .join(unit_weight, on="unit")
            .join(eval_weight, on="eval_row")
        )
        shorter = pl.min_horizontal("unit_weight", "eval_weight")
        overlap = pl.when(shorter > 0).then(pl.col("shared_weight") / shorter).otherwise(0.0)
        return shared.with_columns(score=overlap.clip(upper_bound=1.0).cast(pl.Float64)).filter(
            (pl.col("score") >= config.min_overlap) & (pl.col("score") > 0)
        ).select("unit", "eval_row", "shared_ngrams", "common_ngrams", method=pl.lit("ngram"), score="score")

    def _template_matches(self, valid: pl.DataFrame) -> pl.DataFrame:
        templates = valid.select("unit", eval_template=template_id(pl.col("text")))
        return templates.join(self.evals.select("eval_row", "eval_template"), on="eval_template").select(
            "unit", "eval_row", method=pl.lit("template"), score=pl.lit(1.0))

    def _embedding_matches(self, valid: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        import faiss

        assert self.embedder is not None, "setup loads the embedder for method 'embedding'"
        vectors, node = _embed_distinct(self.embedder, valid["text"], self.config.max_chars, ctx)
        index = faiss.IndexFlatIP(self.eval_vectors.shape[1])
        index.add(self.eval_vectors)
        scores, rows = index.search(vectors, 1) if len(vectors) else (np.zeros((0, 1)), np.zeros((0, 1)))
        per_unit = pl.DataFrame({
            "unit": valid["unit"],
            "eval_row": rows[node, 0].astype(np.uint32),
            "score": scores[node, 0].astype(np.float64),
        }, schema={"unit": pl.UInt32, "eval_row": pl.UInt32, "score": pl.Float64})
        return per_unit.filter(pl.col("score") >= self.config.embedding_threshold).select(
            "unit", "eval_row", method=pl.lit("embedding"), score=pl.col("score").clip(upper_bound=1.0))

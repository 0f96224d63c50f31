"""Similar pairs of unit vectors through a FAISS index, and clusters from those pairs.

Memory stays linear in the number of vectors: queries run in batches, and each vector
keeps at most `max_neighbours` neighbours above the threshold, so a frame of
near-identical texts gives n * max_neighbours pairs, never n * n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
SearchKind = Literal["knn", "range"]
QUERY_BATCH = 8192
TRAIN_POINTS_PER_LIST = 40
# Range search returns every hit of a batch at once: batch * n bounds that buffer.
RANGE_RESULTS_BUDGET = 20_000_000


def build_index(vectors: np.ndarray, kind: IndexKind, flat_max_rows: int, nprobe: int, seed: int = 0):
    """An empty FAISS index for `vectors` (trained, for ivf)."""
    import faiss

    rows, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if rows <= flat_max_rows else "ivf"
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 128
        return hnsw
    # 4 sqrt(n) short lists (measured faster than sqrt(n) long ones, or 2x more lists
    # with an HNSW quantizer, at equal recall); 5 k-means iterations partition as well as
    # 10 (bench/RESULTS.md). Vectors are stored as float16 (the embedding cache's
    # precision, so scores are unchanged to ~1e-3) and scanned ~1.7x faster than float32.
    lists = max(1, min(int(4 * math.sqrt(rows)), rows // TRAIN_POINTS_PER_LIST))
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    index.by_residual = False
    index.cp.niter = 5
    index.cp.min_points_per_centroid = TRAIN_POINTS_PER_LIST
    sample = np.random.default_rng(seed).choice(rows, size=min(rows, TRAIN_POINTS_PER_LIST * lists), replace=False)
    index.train(vectors[np.sort(sample)])
    index.nprobe = min(nprobe, lists)
    return index


def similar_pairs(vectors: np.ndarray, threshold: float, *, index_kind: IndexKind = "auto",
                  flat_max_rows: int = 50_000, search: SearchKind = "knn", max_neighbours: int = 32,
                  nprobe: int = 8, on_batch: Callable[[int], None] = lambda n: None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, similarity) with left < right for every pair at or above `threshold`
    that the search finds (each vector's `max_neighbours` best)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = len(vectors)
    if rows < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    index = build_index(vectors, index_kind, flat_max_rows, nprobe)
    if search == "range" and not hasattr(index, "range_search"):
        raise ValueError(f"index {type(index).__name__} has no range search; use search: knn")
    index.add(vectors)
    batch = QUERY_BATCH if search == "knn" else max(1, min(QUERY_BATCH, RANGE_RESULTS_BUDGET // rows))
    lefts, rights, sims = [], [], []
    for start in range(0, rows, batch):
        queries = vectors[start:start + batch]
        if search == "knn":
            query_rows, neighbours, scores = _knn(index, queries, min(max_neighbours + 1, rows))
        else:
            query_rows, neighbours, scores = _range(index, queries, threshold, max_neighbours + 1)
        query_rows = query_rows + start
        keep = (neighbours >= 0) & (scores >= threshold) & (neighbours != query_rows)
        lefts.append(np.minimum(query_rows, neighbours)[keep])
        rights.append(np.maximum(query_rows, neighbours)[keep])
        sims.append(scores[keep])
        on_batch(len(queries))
    left, right, sim = np.concatenate(lefts), np.concatenate(rights), np.concatenate(sims)
    pair_key = left.astype(np.int64) * rows + right
    _, first = np.unique(pair_key, return_index=True)
    return left[first], right[first], np.minimum(sim[first], 1.0)


def _knn(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores, neighbours = index.search(queries, k)
    query_rows = np.repeat(np.arange(len(queries)), k)
    return query_rows, neighbours.ravel(), scores.ravel()


def _range(index, queries: np.ndarray, threshold: float, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    limits, scores, neighbours = index.range_search(queries, threshold)
    limits = limits.astype(np.int64)
    query_rows = np.repeat(np.arange(len(queries)), np.diff(limits))
    # Keep each query's `cap` strongest hits, as k-NN would.
    order = np.lexsort((-scores, query_rows))
    query_rows, scores, neighbours = query_rows[order], scores[order], neighbours[order]
    rank = np.arange(len(order)) - np.repeat(limits[:-1], np.diff(limits))
    keep = rank < cap
    return query_rows[keep], neighbours[keep], scores[keep]


def components(count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected-component label (0..) of each of `count` nodes given undirected edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def greedy_keep(count: int, left: np.ndarray, right: np.ndarray, similarity: np.ndarray,
                priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep nodes in `priority` order (lowest first), each unless it is similar to a node
    already kept; every removed node points at its most similar kept neighbour. So a
    removed node is always directly similar to what replaces it: A~B~C with A !~ C
    keeps A and C (union-find clusters would chain C to A).

    Computed in rounds rather than node by node: a node whose priority beats all its
    undecided neighbours' is kept at once, its neighbours removed; the result equals the
    sequential order's, in O(log n) rounds when priorities are not chained in order.
    Returns (kept_of, similarity_to_kept); kept_of[i] == i for a kept node (1.0).
    """
    kept_of = np.arange(count)
    similarity_to_kept = np.ones(count, dtype=np.float64)
    undecided = np.ones(count, dtype=bool)
    priority = np.asarray(priority, dtype=np.int64)
    source = np.concatenate([left, right]).astype(np.int64)
    target = np.concatenate([right, left]).astype(np.int64)
    weight = np.concatenate([similarity, similarity]).astype(np.float64)
    while True:
        active = undecided[source] & undecided[target]
        source, target, weight = source[active], target[active], weight[active]
        if not len(source):
            return kept_of, similarity_to_kept
        best_neighbour = np.full(count, np.iinfo(np.int64).max)
        np.minimum.at(best_neighbour, source, priority[target])
        keeper = undecided & (priority < best_neighbour)
        undecided[keeper] = False
        hit = keeper[source] & undecided[target]
        order = np.lexsort((-weight[hit], target[hit]))
        removed, kept, score = target[hit][order], source[hit][order], weight[hit][order]
        first = np.r_[True, removed[1:] != removed[:-1]] if len(removed) else np.zeros(0, dtype=bool)
        kept_of[removed[first]] = kept[first]
        similarity_to_kept[removed[first]] = score[first]
        undecided[removed[first]] = False

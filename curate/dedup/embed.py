"""Sentence embeddings with an on-disk cache keyed by (model, text hash).

Two kinds of model: a sentence-transformers model (the bundled all-MiniLM-L6-v2 by
default, or any path / Hub id) and a model2vec static model (a lookup table: ~100x
faster on CPU, for pools of millions; encoded in bulk by `static_encoder`). `bundled:minilm-static` is a static model
distilled from the bundled MiniLM on first use (offline; about 2 CPU-minutes, see README) into
`<cache_dir>/models/`; `distill_static` does the same for any sentence-transformers
model folder.

Vectors are unit length, so inner product = cosine. The cache stores them as float16
shards (`<cache_dir>/embeddings/<model key>/*.npz`, hashes + vectors) and every run,
first or later, uses the stored float16 values, so a re-run gives the same neighbours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from curate.core.io import atomic_path
from curate.models.bundled import resolve_model

STATIC_MINILM = "bundled:minilm-static"
STATIC_PCA_DIMS = 256
# Texts are cut to this many characters before embedding: the models read at most
# 256-512 tokens anyway, and tokenising a 1 MB text only costs time.
DEFAULT_MAX_CHARS = 8000
# Texts embedded (and written to the cache) per block: bounds memory, feeds progress.
# Static models encode a block's distinct words once: bigger blocks share more, but the
# block's chunk table and token ids are the encoder's peak memory (100k texts: 131,072 per
# block peaked at 768 MiB above the start, 32,768 at 348 MiB; bench/RESULTS.md, dedup).
EMBED_BLOCK = 16_384
STATIC_EMBED_BLOCK = 32_768


def distill_static(output_dir: str | Path, source: str = "bundled:minilm", pca_dims: int = STATIC_PCA_DIMS) -> Path:
    """Distil a model2vec static embedding model from a sentence-transformers model.

    Runs offline from a local model folder (default: the bundled all-MiniLM-L6-v2):
    `python -c "from curate.dedup import distill_static; distill_static('static-minilm')"`.
    Needs `model2vec` and `skeletoken` (model2vec's distill extra).
    """
    from model2vec.distill import distill

    output_dir = Path(output_dir)
    partial = output_dir.with_name(f".{output_dir.name}.{uuid.uuid4().hex}.partial")
    try:
        model = distill(model_name=resolve_model(source), pca_dims=pca_dims)
        model.save_pretrained(str(partial))
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, output_dir)
    except OSError:
        if not (output_dir / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return output_dir


EMBEDDING_MODELS = ("bundled:minilm", STATIC_MINILM)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_embedding_model(model: str) -> str | None:
    """Why `model` cannot be an embedding model (None if it may be): an unknown bundled
    name, a local folder that does not exist, or neither a folder nor a Hub id."""
    known = ", ".join(EMBEDDING_MODELS)
    if model.startswith("bundled:"):
        return None if model in EMBEDDING_MODELS else f"unknown embedding model {model!r} (bundled: {known})"
    path = Path(model).expanduser()
    if path.is_dir():
        return None
    if model.startswith((".", "/", "~")) or path.suffix or not _HUB_ID.fullmatch(model):
        return (f"unknown embedding model {model!r}: not a local folder, nor a Hub id (org/name); "
                f"bundled: {known}")
    return None


def _model_path(model: str, cache_dir: Path) -> str:
    if model == STATIC_MINILM:
        target = cache_dir / "models" / f"minilm-static-pca{STATIC_PCA_DIMS}"
        if not (target / "config.json").is_file():
            distill_static(target)
        return str(target)
    return resolve_model(model, cache_dir)


def _is_static(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "model2vec"
    except (ValueError, AttributeError):
        return False


def _fingerprint(model: str, path: Path, max_chars: int) -> str:
    """Identity of a model for the cache: its name plus its files (names, sizes, and
    the content of the small ones), so a changed model never reuses old vectors."""
    digest = hashlib.sha256(f"{model}\x1f{max_chars}".encode())
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            size = file.stat().st_size
            digest.update(f"{file.relative_to(path)}\x1f{size}".encode())
            if size < 4_000_000:
                digest.update(file.read_bytes())
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name)[-40:]
    return f"{slug}-{digest.hexdigest()[:12]}"


def text_hashes(texts: list[str]) -> np.ndarray:
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(t.encode()) for t in texts), dtype=np.uint64, count=len(texts))


class Embedder:
    """Embeds texts with one model, reading and filling the on-disk cache."""

    def __init__(self, model: str, cache_dir: Path, batch_size: int = 64, max_chars: int = DEFAULT_MAX_CHARS):
        path = Path(_model_path(model, Path(cache_dir))).resolve()
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.key = _fingerprint(model, path, max_chars)
        self.cache_root = Path(cache_dir) / "embeddings" / self.key
        self.static = _is_static(path)
        self.path = path
        self.block = STATIC_EMBED_BLOCK if self.static else EMBED_BLOCK
        self._loaded: Callable[[list[str], int], np.ndarray] | None = None

    @property
    def _encode(self) -> Callable[[list[str], int], np.ndarray]:
        """The model, loaded on first use: a run whose texts are all cached never loads it."""
        loaded = self._loaded
        if loaded is None:
            loaded = _load_static(self.path) if self.static else _load_sentence_transformer(str(self.path))
            self._loaded = loaded
        return loaded

    def embed(self, texts: list[str], on_block: Callable[[int], None] = lambda n: None,
              stats: dict | None = None) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors. Cached texts are not re-embedded."""
        texts = [t[: self.max_chars] for t in texts]
        hashes = text_hashes(texts)
        vectors, found = self._lookup(hashes)
        missing = np.flatnonzero(~found)
        if stats is not None:
            stats["cache_hits"] = int(found.sum())
            stats["embedded"] = len(missing)
        for start in range(0, len(missing), self.block):
            rows = missing[start:start + self.block]
            block = self._encode([texts[i] for i in rows], self.batch_size).astype(np.float16)
            self._store(hashes[rows], block)
            if vectors is None:
                vectors = np.zeros((len(texts), block.shape[1]), dtype=np.float16)
            vectors[rows] = block
            on_block(len(rows))
        if vectors is None:
            vectors = np.zeros((len(texts), 1), dtype=np.float16)
        return _unit(vectors)

    def _lookup(self, hashes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        shards = sorted(self.cache_root.glob("*.npz")) if self.cache_root.is_dir() else []
        found = np.zeros(len(hashes), dtype=bool)
        vectors = None
        for shard in shards:
            with np.load(shard) as data:
                shard_hashes, shard_vectors = data["hashes"], data["vectors"]
            if not len(shard_hashes):
                continue
            order = np.argsort(shard_hashes)
            position = np.searchsorted(shard_hashes, hashes, sorter=order).clip(0, len(order) - 1)
            hit = (shard_hashes[order[position]] == hashes) & ~found
            if vectors is None:
                vectors = np.zeros((len(hashes), shard_vectors.shape[1]), dtype=np.float16)
            vectors[hit] = shard_vectors[order[position[hit]]]
            found |= hit
        return vectors, found

    def _store(self, hashes: np.ndarray, vectors: np.ndarray) -> None:
        self.cache_root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.cache_root / f"{uuid.uuid4().hex}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, hashes=hashes, vectors=vectors)


def _unit(vectors: np.ndarray) -> np.ndarray:
    """float32 unit rows, normalised in place (no second copy of a large matrix)."""
    vectors = vectors.astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    return vectors


# Loaded models are shared by the steps of one process (a recipe may embed several times).
@lru_cache(maxsize=4)
def _load_sentence_transformer(path: str):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    return encode


@lru_cache(maxsize=4)
def _load_static(path: Path):
    from model2vec import StaticModel

    from curate.dedup.static_encoder import StaticEncoder

    return StaticEncoder(StaticModel.from_pretrained(str(path)))

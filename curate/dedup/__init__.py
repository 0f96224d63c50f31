"""Dedup and decontamination: exact, semantic (embeddings + FAISS), trace near-copies,
eval-set leakage. Operators live in `curate.dedup.operators`."""

from curate.dedup.embed import distill_static

__all__ = ["distill_static"]

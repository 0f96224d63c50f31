"""Polars expressions over trace text shared by the prune operators: the measures only
pruning uses (answers are in curate.answers, text keys and n-grams in curate.text).

Everything here is vectorised: regexes and list operations run in polars' Rust engine,
so the filters stay fast on millions of long traces (no Python per row).
"""

from __future__ import annotations

import re

import polars as pl

from curate.schema import completion_tokens as completion_tokens
from curate.text import word_ngram_hashes


def word_ngram_repeat_share(text: pl.Expr, n: int) -> pl.Expr:
    """Share of the word n-grams that repeat an earlier n-gram of the same text (0..1)."""
    grams = word_ngram_hashes(text, n)
    # Fewer than n words (no n-grams) is no repetition.
    count = grams.list.len()
    return pl.when(count > 0).then((count - grams.list.n_unique()) / count).otherwise(0.0)


def repeated_line_share(text: pl.Expr, min_chars: int) -> pl.Expr:
    """Share of the substantial lines (>= min_chars after trimming) that are exact
    repeats of an earlier line: loops show up as the same sentence again and again."""
    lines = text.str.split("\n").list.eval(
        pl.element().str.strip_chars().filter(pl.element().str.strip_chars().str.len_chars() >= min_chars)
    )
    total = lines.list.len()
    return pl.when(total > 0).then(1 - lines.list.n_unique() / total).otherwise(0.0)


def marker_pattern(markers: list[str]) -> str:
    """One case-insensitive regex matching any marker as whole words; spaces and hyphens
    inside a marker match any run of either ("double-check" = "double check")."""
    alternatives = []
    for marker in sorted(markers, key=len, reverse=True):
        words = re.split(r"[\s-]+", marker.strip())
        alternatives.append(r"[\s-]+".join(re.escape(word) for word in words))
    return r"(?i)\b(?:" + "|".join(alternatives) + r")\b"


def foreign_char_share(text: pl.Expr, scripts: list[str]) -> pl.Expr:
    """Share of the characters that are letters of scripts outside `scripts` (Unicode
    script names). Digits, symbols and spaces count in the total but are never foreign."""
    allowed = "".join(rf"\p{{{script}}}" for script in scripts)
    # Foreign letters are rare, so counting them is cheap; counting every letter is not.
    foreign = text.str.count_matches(rf"[\p{{L}}--[{allowed}]]")
    characters = text.str.len_chars()
    return pl.when(characters > 0).then(foreign / characters).otherwise(0.0)

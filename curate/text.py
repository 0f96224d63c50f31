"""Text keys for dedup as polars expressions: normalised text and hashed word n-grams.

Everything here runs inside polars (no per-row Python), so it scales to millions of
rows. The n-gram hashes use polars' own hash: stable within one process, which is all
they are used for (they are compared, never stored).
"""

from __future__ import annotations

import polars as pl

# LaTeX commands that only change spacing or sizing, not content.
_LATEX_SPACING = r"\\[,;:! ]|\\q?quad\b|\\(left|right|big|Big|bigg|Bigg)\b|~"
_MATH_DELIMITERS = r"\$|\\\(|\\\)|\\\[|\\\]"


def _without_thousands_separators(text: pl.Expr) -> pl.Expr:
    # Rust regex has no look-around: each pass joins every other group, three passes
    # cover numbers up to 10^12.
    for _ in range(3):
        text = text.str.replace_all(r"(\d),(\d{3})\b", "${1}${2}")
    return text


def normalised_text(text: pl.Expr) -> pl.Expr:
    """Text with formatting removed: Unicode (NFKC), case, whitespace, LaTeX spacing
    and math delimiters, thousands separators and trailing decimal zeros, and spaces
    next to punctuation or operators. Two problems with the same normalised text differ
    only in how they are typeset."""
    text = text.str.normalize("NFKC").str.to_lowercase()
    text = text.str.replace_all(_LATEX_SPACING, " ").str.replace_all(_MATH_DELIMITERS, "")
    text = text.str.replace_all(r"\\[dt]frac\b", r"\frac")
    text = _without_thousands_separators(text)
    text = text.str.replace_all(r"(\d)\.0+\b", "${1}")
    text = text.str.replace_all(r"(\d\.\d*[1-9])0+\b", "${1}")
    text = text.str.replace_all(r"\s*([^\w\s])\s*", "${1}")
    return text.str.replace_all(r"\s+", " ").str.strip_chars()


def word_tokens(text: pl.Expr) -> pl.Expr:
    """Lower-case alphanumeric tokens (LaTeX commands keep their names, symbols drop)."""
    text = _without_thousands_separators(text.str.normalize("NFKC").str.to_lowercase())
    return text.str.extract_all(r"[^\W_]+")


def ngram_hashes(frame: pl.DataFrame, key: str, tokens: str, n: int) -> pl.DataFrame:
    """Distinct (key, hash) pairs of the word n-grams of each row's token list.

    A row with fewer than n tokens (but at least one) gives one gram: all its tokens.
    """
    exploded = (
        frame.select(key, tokens, length=pl.col(tokens).list.len())
        .filter(pl.col("length") > 0)
        .explode(tokens)
        .with_columns(position=pl.int_range(pl.len()).over(key), token_hash=pl.col(tokens).hash(7))
    )
    # Shifting the whole exploded column is cheaper than a window per key; positions
    # past the row's own end are masked to null so grams never span two rows.
    window = [
        pl.when(pl.col("position") + offset < pl.col("length")).then(pl.col("token_hash").shift(-offset))
        for offset in range(n)
    ]
    starts = (pl.col("position") + n <= pl.col("length")) | (
        (pl.col("position") == 0) & (pl.col("length") < n)
    )
    return (
        exploded.with_columns(gram=pl.struct(*[w.alias(f"t{i}") for i, w in enumerate(window)]).hash(11))
        .filter(starts)
        .select(key, "gram")
        .unique()
    )

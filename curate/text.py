"""Text keys as polars expressions: normalised text, word tokens, hashed n-grams (the one
n-gram hasher: dedup, decontamination, prune's repetition measure and select_traces'
diversity all use it).

Everything here runs inside polars (no per-row Python), so it scales to millions of
rows. The n-gram hashes use polars' own hash: stable within one process, which is all
they are used for (they are compared, never stored). Content hashes that are stored
(problem_id, trace_id) are in curate.schema.
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


def collapsed_text(text: pl.Expr) -> pl.Expr:
    """Unicode (NFKC) normalised text with runs of white space as one space, trimmed: what
    content ids (problem_id) are taken of."""
    return text.str.normalize("NFKC").str.replace_all(r"\s+", " ").str.strip_chars()


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


def words(text: pl.Expr) -> pl.Expr:
    """The text split at spaces and newlines, as written (case and punctuation kept)."""
    split = text.str.replace_all("\n", " ", literal=True).str.split(" ")
    return split.list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))


def _gram_hashes(n: int, whole_if_short: bool) -> pl.Expr:
    """Inside list.eval over tokens: one hash per token n-gram, in order, repeats kept.

    Each token is hashed, and a gram hashes the struct of n consecutive token hashes. With
    `whole_if_short`, a list of fewer than n tokens (but at least one) gives one gram: all
    its tokens; otherwise it gives none.
    """
    token_hash = pl.element().hash(7)
    gram = pl.struct(*[token_hash.shift(-offset).alias(f"t{offset}") for offset in range(n)]).hash(11)
    position = pl.int_range(pl.len())
    starts = position + n <= pl.len()
    if whole_if_short:
        starts = starts | ((position == 0) & (pl.len() < n))
    return gram.filter(starts)


def ngram_hash_list(tokens: pl.Expr, n: int, whole_if_short: bool = True) -> pl.Expr:
    """Per row, the list of hashes of the n-grams of its token list (see _gram_hashes)."""
    return tokens.list.eval(_gram_hashes(n, whole_if_short))


def word_ngram_hashes(text: pl.Expr, n: int) -> pl.Expr:
    """Per text, the hashes of its n-grams of `words` (none for fewer than n words)."""
    return ngram_hash_list(words(text), n, whole_if_short=False)


def ngram_hashes(frame: pl.DataFrame, key: str, tokens: str, n: int) -> pl.DataFrame:
    """Distinct (key, gram) pairs of the n-grams of each row's token list.

    A row with fewer than n tokens (but at least one) gives one gram: all its tokens.
    """
    return (
        frame.select(key, gram=ngram_hash_list(pl.col(tokens), n))
        .explode("gram")
        .drop_nulls("gram")
        .unique()
    )

"""Polars expressions over trace text shared by the prune operators.

Everything here is vectorised: regexes and list operations run in polars' Rust engine,
so the filters stay fast on millions of long traces (no Python per row).
"""

from __future__ import annotations

import re

import polars as pl

# \boxed{...} with up to three levels of nested braces: regexes cannot balance braces in
# general, but real answers (\frac{\sqrt{2}}{3}) stay well within three levels.
_BRACED = r"(?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*"
BOXED = r"\\(?:boxed|fbox)\s*\{(" + _BRACED + r")\}"
# "the answer is X" / "final answer: X", the stated result when nothing is boxed. The
# value must look like math (digit, sign, bracket, backslash, $): "the answer is indeed
# 12" or "the answer is two y-intercepts" state no comparable value.
_STATED = (
    r"(?is)(?:final answer|the answer)\s*(?:is|:|=)\s*:?\s*"
    r"((?:\\\(|\$)?\s*[-+\d(\[\\][^\n]*?)\s*(?:\.\s|\.?$|\n)"
)


def completion_tokens() -> pl.Expr:
    """Tokens the teacher produced: reasoning plus final answer."""
    return pl.col("reasoning_tokens").cast(pl.Int64) + pl.col("answer_tokens").cast(pl.Int64)


def last_group(text: pl.Expr, pattern: str) -> pl.Expr:
    """Group 1 of the last match of `pattern` (all matches, then the last one re-matched:
    several times faster than a leading `.*` in the regex)."""
    return text.str.extract_all(pattern).list.last().str.extract(pattern, 1).str.strip_chars()


def last_boxed(text: pl.Expr) -> pl.Expr:
    return last_group(text, BOXED)


def stated_answer(text: pl.Expr) -> pl.Expr:
    """The last boxed answer, else the last "the answer is X"; null when neither."""
    return pl.coalesce(last_boxed(text), last_group(text, _STATED))


def normalise_answer(answer: pl.Expr) -> pl.Expr:
    """Answer text in a canonical spelling, so "\\left( 3, \\dfrac{\\pi}{2} \\right)" and
    "(3, π/2)" compare equal. Cheap string rewriting, not a CAS: unequal spellings of
    equal values (0.5 vs 1/2) stay unequal and callers treat that as "unknown"."""
    rewrites = [
        (r"\\[()\[\]]|\\(?:left|right|displaystyle|mathrm|text|textbf|mbox|,|!|;| )", ""),
        (r"^\s*[A-Za-z]\s*(?:=|\\in\b)", ""),
        (r"\\[dt]frac", r"\frac"),
        (r"\\frac\{([^{}]+)\}\{([^{}]+)\}", "$1/$2"),
        (r"\\pi\b", "π"),
        (r"\\cdot|\\times", "*"),
        (r"\^\{?\\circ\}?|°", ""),
        (r"[\s$]", ""),
        (r"[{}]", ""),
        (r"\.$", ""),
    ]
    for pattern, replacement in rewrites:
        answer = answer.str.replace_all(pattern, replacement)
    return answer


def _ngram_keys(n: int) -> pl.Expr:
    """Inside list.eval over words: one hash per word n-gram (none for under n words).

    Rolling sums instead of n shifted columns: with word hashes h (31 bits, so sums fit
    in Int64), an n-gram starting at s is identified by S1 = sum h[s+j] and
    S2 - s*S1 = sum j*h[s+j], which depends on word order but not on position.
    """
    word_hash = (pl.element().hash(0x5EED) % (1 << 31)).cast(pl.Int64)
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    total = word_hash.rolling_sum(n, min_samples=n)
    weighted = (word_hash * position).rolling_sum(n, min_samples=n)
    ordered = weighted - (position - (n - 1)) * total
    # A struct with null fields still hashes to a value: drop the incomplete windows first.
    return pl.struct(total.alias("total"), ordered.alias("ordered")).hash(0xC0DE).filter(total.is_not_null())


def _words(text: pl.Expr) -> pl.Expr:
    split = text.str.replace_all("\n", " ", literal=True).str.split(" ")
    return split.list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))


def word_ngram_hashes(text: pl.Expr, n: int) -> pl.Expr:
    """Per text, the list of its word n-gram hashes."""
    return _words(text).list.eval(_ngram_keys(n))


def word_ngram_repeat_share(text: pl.Expr, n: int) -> pl.Expr:
    """Share of the word n-grams that repeat an earlier n-gram of the same text (0..1)."""
    keys = _ngram_keys(n)
    # Both counts in one list.eval, the keys built once; fewer than n words (no n-grams)
    # is no repetition.
    count = pl.max_horizontal(pl.len().cast(pl.Int64) - (n - 1), 0)
    repeats = (count - keys.n_unique()) / pl.max_horizontal(count, 1)
    return _words(text).list.eval(repeats).list.first().fill_null(0.0)


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

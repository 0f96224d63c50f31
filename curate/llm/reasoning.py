"""Splitting a completion into its reasoning and its final answer: one set of rules for
generation (one completion at a time) and for importing a dump (a column of them).

The rules, for the first (start, end) marker pair of which either marker is in the text:
- the text before the end marker is reasoning (after the start marker, when it is there:
  models whose chat template opens the block emit only the end marker); the rest is answer;
- a start marker with no end marker is reasoning cut off by the token limit: everything
  after it is reasoning, there is no answer, and the trace is `truncated`;
- a text with neither marker of any pair is all answer.
Only the first occurrence of a marker counts. Reasoning and answer are stripped of Unicode
white space (the White_Space property: polars' `strip_chars()`; Python's `str.strip()`
strips the control characters U+001C-U+001F too).

A server that parses reasoning itself returns it apart (`reasoning_content`); when that
holds any non-white-space text, the completion is rebuilt with the markers around it so
that it reads like the raw output of a model that did not, and the text is the answer.

Everything is a polars string operation on literal markers (`str.splitn`): no offsets, so
no dependence on whether polars counts them in bytes or characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

Markers = Sequence[tuple[str, str]]


def split_reasoning_expr(text: pl.Expr, markers: Markers, reasoning_content: pl.Expr | None = None) -> pl.Expr:
    """A struct of `completion`, `reasoning`, `answer` (text) and `truncated` (boolean) per
    row of `text`; see the module's rules. `markers` are tried in order; a null text (or
    reasoning_content) reads as empty, except that the completion stays null."""
    completion, text = text, text.fill_null("")
    split = pl.struct(completion=completion, reasoning=pl.lit(""), answer=text.str.strip_chars(),
                      truncated=pl.lit(False))  # untagged: all answer
    for start, end in reversed(markers):  # the first pair found wins: it is applied last
        found = _contains(text, start) | _contains(text, end)
        reasoning, answer, truncated = _split_pair(text, start, end)
        split = pl.when(found).then(pl.struct(completion=completion, reasoning=reasoning, answer=answer,
                                              truncated=truncated)).otherwise(split)
    if reasoning_content is not None:
        start, end = markers[0] if markers else ("", "")
        apart = reasoning_content.fill_null("").str.strip_chars()
        rebuilt = pl.struct(completion=pl.concat_str(pl.lit(start), reasoning_content, pl.lit(end), text),
                            reasoning=apart, answer=text.str.strip_chars(), truncated=pl.lit(False))
        split = pl.when(apart != "").then(rebuilt).otherwise(split)
    return split


def split_reasoning_batch(texts: list[str], reasoning_contents: list[str | None], start: str, end: str
                          ) -> list[tuple[str, str, str]]:
    """(full completion, reasoning, answer) of each completion, by `split_reasoning_expr`."""
    frame = pl.DataFrame({"text": texts, "content": reasoning_contents}, schema={"text": pl.String,
                                                                             "content": pl.String})
    split = split_reasoning_expr(pl.col("text"), [(start, end)], pl.col("content"))
    return frame.select(split.alias("split")).unnest("split").select("completion", "reasoning", "answer").rows()


def split_reasoning(text: str, reasoning_content: str | None, start: str, end: str) -> tuple[str, str, str]:
    """(full completion, reasoning, answer) of one completion."""
    return split_reasoning_batch([text], [reasoning_content], start, end)[0]


def _split_pair(text: pl.Expr, start: str, end: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(reasoning, answer, truncated) by one marker pair, in a text holding either marker."""
    before_end, after_end = _split_once(text, end)
    closed = after_end.is_not_null()
    # The reasoning ends at the end marker, or runs to the end of the text.
    block = pl.when(closed).then(before_end).otherwise(text)
    _, after_start = _split_once(block, start)
    opened = after_start.is_not_null()
    reasoning = pl.when(opened).then(after_start).when(closed).then(before_end).otherwise(pl.lit(""))
    answer = pl.when(closed).then(after_end).when(opened).then(pl.lit("")).otherwise(text)
    return reasoning.str.strip_chars(), answer.str.strip_chars(), opened & ~closed


def _split_once(text: pl.Expr, marker: str) -> tuple[pl.Expr, pl.Expr]:
    """(before, after) the first `marker` in the text; `after` is null where it is absent
    (an empty marker is never found)."""
    if not marker:
        return text, pl.lit(None, pl.String)
    parts = text.str.splitn(marker, 2)
    return parts.struct.field("field_0"), parts.struct.field("field_1")


def _contains(text: pl.Expr, marker: str) -> pl.Expr:
    return text.str.contains(marker, literal=True) if marker else pl.lit(False)


def split_token_counts(completion_tokens: int, reasoning: str, answer: str,
                       reasoning_tokens: int | None) -> tuple[int, int]:
    """(reasoning tokens, answer tokens), summing to the completion's token count.

    `reasoning_tokens` is the exact figure when a tokenizer or the server gave one;
    otherwise the completion's tokens are shared out by character length.
    """
    if reasoning_tokens is None:
        characters = len(reasoning) + len(answer)
        reasoning_tokens = round(completion_tokens * len(reasoning) / characters) if characters else 0
    reasoning_tokens = min(max(reasoning_tokens, 0), completion_tokens)
    return reasoning_tokens, completion_tokens - reasoning_tokens

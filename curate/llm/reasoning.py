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

Everything is a polars string operation on literal markers (`str.splitn`,
`str.contains(literal=True)`, `str.strip_chars`): no offsets, so no dependence on whether
polars counts them in bytes or characters.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

Markers = Sequence[tuple[str, str]]


def split_reasoning_frame(texts: pl.Series, markers: Markers, reasoning_contents: pl.Series | None = None
                          ) -> pl.DataFrame:
    """`completion`, `reasoning`, `answer` (text) and `truncated` (boolean), one row per
    text; see the module's rules. `markers` are tried in order. A null text (or reasoning
    content) reads as empty, except that the completion stays null.

    Each step is a column of its own, so that no split is computed twice: marker pair i
    cuts only the texts where it is the first pair found, the others are null for it."""
    frame = pl.DataFrame({"completion": texts, "content": reasoning_contents},
                         schema={"completion": pl.String, "content": pl.String})
    found = [(_contains(pl.col("text"), start) | _contains(pl.col("text"), end)) for start, end in markers]
    frame = frame.with_columns(text=pl.col("completion").fill_null("")).with_columns(pair=pl.coalesce(
        pl.lit(None, pl.Int32), *(pl.when(pair_found).then(pl.lit(pair, pl.Int32))
                                  for pair, pair_found in enumerate(found))))
    cut_by = [pair for pair in range(len(markers)) if pair in frame["pair"]]  # a pair found in no text cuts none
    split = frame.lazy()
    for pair in cut_by:
        split = _split_by_pair(split, pair, *markers[pair])
    split = split.select(
        "completion", "content",
        reasoning=pl.coalesce(*(pl.col(f"reasoning_{pair}") for pair in cut_by), pl.lit("")).str.strip_chars(),
        answer=pl.coalesce(*(pl.col(f"answer_{pair}") for pair in cut_by), pl.col("text")).str.strip_chars(),
        truncated=pl.coalesce(*(pl.col(f"truncated_{pair}") for pair in cut_by), pl.lit(False)))
    if reasoning_contents is not None:
        split = _with_reasoning_apart(split, *(markers[0] if markers else ("", "")))
    return split.drop("content").collect()


def _split_by_pair(frame: pl.LazyFrame, pair: int, start: str, end: str) -> pl.LazyFrame:
    """`frame` with reasoning_{pair}, answer_{pair} and truncated_{pair}: the split by this
    pair of the texts where it is the first pair found, null elsewhere."""
    mine = pl.col("pair") == pair
    text = pl.when(mine).then(pl.col("text"))
    frame = _split_once(frame, text, end, "before_end", "after_end")
    closed = pl.col("after_end").is_not_null()
    # The reasoning ends at the end marker, or runs to the end of the text.
    frame = _split_once(frame, pl.when(closed).then(pl.col("before_end")).otherwise(text), start, "_", "after_start")
    opened = pl.col("after_start").is_not_null()
    return frame.with_columns(**{
        f"reasoning_{pair}": pl.when(opened).then(pl.col("after_start")).when(closed).then(pl.col("before_end")),
        f"answer_{pair}": pl.when(closed).then(pl.col("after_end")).when(opened).then(pl.lit("")),
        f"truncated_{pair}": pl.when(mine).then(opened & ~closed),
    }).drop("before_end", "after_end", "_", "after_start")


def _split_once(frame: pl.LazyFrame, text: pl.Expr, marker: str, before: str, after: str) -> pl.LazyFrame:
    """`frame` with the columns `before` and `after` the first `marker` in the text; `after`
    is null where it is absent (an empty marker is never found)."""
    if not marker:
        return frame.with_columns(text.alias(before), pl.lit(None, pl.String).alias(after))
    parts = text.str.splitn(marker, 2).struct.rename_fields([before, after])
    return frame.with_columns(parts.alias("_parts")).unnest("_parts")


def _with_reasoning_apart(frame: pl.LazyFrame, start: str, end: str) -> pl.LazyFrame:
    """Where the reasoning came apart (any non-white-space `content`): the completion rebuilt
    around it, the whole text the answer."""
    content = pl.col("content").fill_null("").str.strip_chars()
    apart = content != ""
    text = pl.col("completion").fill_null("")
    return frame.with_columns(
        completion=pl.when(apart).then(pl.concat_str(pl.lit(start), pl.col("content"), pl.lit(end), text))
        .otherwise(pl.col("completion")),
        reasoning=pl.when(apart).then(content).otherwise(pl.col("reasoning")),
        answer=pl.when(apart).then(text.str.strip_chars()).otherwise(pl.col("answer")),
        truncated=pl.when(apart).then(pl.lit(False)).otherwise(pl.col("truncated")))


def split_reasoning_batch(texts: list[str], reasoning_contents: list[str | None], start: str, end: str
                          ) -> list[tuple[str, str, str]]:
    """(full completion, reasoning, answer) of each completion, by `split_reasoning_frame`."""
    split = split_reasoning_frame(pl.Series(texts, dtype=pl.String), [(start, end)],
                                  pl.Series(reasoning_contents, dtype=pl.String))
    return split.select("completion", "reasoning", "answer").rows()


def split_reasoning(text: str, reasoning_content: str | None, start: str, end: str) -> tuple[str, str, str]:
    """(full completion, reasoning, answer) of one completion."""
    return split_reasoning_batch([text], [reasoning_content], start, end)[0]


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

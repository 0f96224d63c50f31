"""Substrings of a text column that share the column's memory instead of copying it.

polars keeps text as Arrow string views: 16 bytes per row, holding the length and either
the whole string (up to 12 bytes) or its first 4 bytes plus where it lies in a shared data
buffer. Cut at per-row offsets, polars copies every substring: splitting 1.3 GB of
reasoning out of a million imported completions allocated 1.5 GB and took about a second,
mostly page faults. Here only new views are written (with numpy), pointing into the same
buffers, so the reasoning, the answer and the completion they came from share one copy.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

INLINE = 12  # a string this short lives inside its view
# White space is looked for in this many characters at each end; a row whose window is all
# white space is measured whole.
STRIP_WINDOW = 16
# Texts shorter than this on average (answers) are stripped by copying them: below about
# 300-400 bytes that is the cheaper way (measured on a million rows).
SHARE_ABOVE_BYTES = 400


def substrings(texts: pl.Series, start: pl.Series, end: pl.Series) -> pl.Series:
    """`texts[start:end]` in each row, by byte offsets that fall on character boundaries
    (0 <= start <= end <= the text's length in bytes; null where the text is null)."""
    texts = texts.rechunk()
    source = texts.to_arrow(compat_level=pl.CompatLevel.newest())
    begin = start.cast(pl.Int64).fill_null(0).to_numpy()
    size = (end.cast(pl.Int64) - start.cast(pl.Int64)).fill_null(0).to_numpy()
    views = _views(source)
    if ((begin < 0) | (size < 0) | (begin + size > views[:, 0])).any():  # a view out of its text reads any memory
        raise ValueError("substrings: offsets must satisfy 0 <= start <= end <= the text's length in bytes")
    size = size.astype(np.uint32)
    # A short substring is its head (its first 12 bytes, cut by polars); a long one takes
    # its first 4 bytes from there and points into the text's data buffer.
    cut = _heads(texts, begin)
    cut.view(np.uint8)[:, 4:] *= np.arange(INLINE) < size[:, None]  # a short one ends inside its head
    cut[:, 0] = size
    long = size > INLINE  # so the text is long too: it lives in a data buffer
    cut[:, 2] = np.where(long, views[:, 2], cut[:, 2])
    cut[:, 3] = np.where(long, views[:, 3] + begin.astype(np.uint32), cut[:, 3])
    if source.offset:  # the views buffer starts at the array's first row, the validity bits do not
        cut = np.concatenate([np.zeros((source.offset, 4), dtype=np.uint32), cut])
    buffers = source.buffers()
    result = pa.Array.from_buffers(pa.string_view(), len(source), [buffers[0], pa.py_buffer(cut), *buffers[2:]],
                                   source.null_count, source.offset)
    return pl.Series(texts.name, result)


def _heads(texts: pl.Series, offsets: np.ndarray) -> np.ndarray:
    """Views (rows of four uint32, inline) of the up to 12 bytes at `offsets` in each text.
    polars cuts at one offset for all rows several times faster than at per-row offsets,
    and most rows of a column of completions share one (just after `<think>`)."""
    binary = texts.cast(pl.Binary)
    common = int(np.bincount(np.minimum(offsets, 1023)).argmax()) if len(offsets) else 0
    others = offsets != common
    if 2 * others.sum() > len(others):
        return _inline_views(binary, offsets)
    heads = _inline_views(binary, common)
    if others.any():
        heads[others] = _inline_views(binary.filter(pl.Series(others)), offsets[others])
    return heads


def _inline_views(binary: pl.Series, offsets: int | np.ndarray) -> np.ndarray:
    """A copy of the views of the up to 12 bytes at `offsets` (one for all rows, or one per
    row) in each binary value: all inside their views."""
    offset = pl.lit(offsets) if isinstance(offsets, int) else pl.Series(offsets)  # a constant: polars' fast path
    heads = binary.to_frame("text").select(pl.col("text").bin.slice(offset, INLINE)).to_series()
    return _views(heads.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())).copy()


def _views(array: pa.Array) -> np.ndarray:
    """The array's views as rows of four uint32: length, prefix (or inline bytes), data
    buffer, offset in it. Row i of the result is row i of the array."""
    views = np.frombuffer(array.buffers()[1], dtype=np.uint32).reshape(-1, 4)
    return views[array.offset:array.offset + len(array)]


def strip_whitespace(texts: pl.Series) -> pl.Series:
    """`texts.str.strip_chars()` (Unicode white space at both ends), sharing the texts' memory."""
    if len(texts) == 0 or texts.str.len_bytes().fill_null(0).to_numpy().mean() < SHARE_ABOVE_BYTES:
        return texts.str.strip_chars()
    frame = pl.DataFrame({"text": texts.rechunk()}).lazy().with_columns(
        head=pl.col("text").str.head(STRIP_WINDOW), tail=pl.col("text").str.tail(STRIP_WINDOW),
        length=pl.col("text").str.len_bytes().cast(pl.Int64),
    ).with_columns(
        lead=(pl.col("head").str.len_bytes() - pl.col("head").str.strip_chars_start().str.len_bytes()).cast(pl.Int64),
        trail=(pl.col("tail").str.len_bytes() - pl.col("tail").str.strip_chars_end().str.len_bytes()).cast(pl.Int64),
    ).with_columns(
        # All white space and longer than the window: the white space may go on past it.
        unsure=(pl.col("length") > STRIP_WINDOW) & ((pl.col("lead") == pl.col("head").str.len_bytes())
                                                    | (pl.col("trail") == pl.col("tail").str.len_bytes())),
    ).select("text", "length", "lead", "trail", "unsure").collect()
    if frame["unsure"].any():
        exact = frame.filter("unsure").select(
            lead=pl.col("length") - pl.col("text").str.strip_chars_start().str.len_bytes().cast(pl.Int64),
            trail=pl.col("length") - pl.col("text").str.strip_chars_end().str.len_bytes().cast(pl.Int64))
        rows = frame["unsure"].arg_true()
        frame = frame.with_columns(frame["lead"].scatter(rows, exact["lead"]),
                                   frame["trail"].scatter(rows, exact["trail"]))
    start = frame["lead"].fill_null(0)
    # An all-white-space text: lead and trail both cover it, and nothing is left.
    end = pl.select(pl.max_horizontal(start, frame["length"].fill_null(0) - frame["trail"].fill_null(0))).to_series()
    return substrings(frame["text"], start, end).alias(texts.name)

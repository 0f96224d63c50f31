"""Substrings of a text column, stripped of white space, that share the column's memory.

polars keeps text as Arrow string views: 16 bytes per row, holding the length and either
the whole string (up to 12 bytes) or its first 4 bytes plus where it lies in a shared data
buffer. Cut at per-row offsets, polars copies every substring: splitting 1.3 GB of
reasoning out of a million imported completions allocated 1.5 GB and took about a second,
mostly page faults. Here only new views are written (with numpy), pointing into the same
buffers, so the reasoning and the completion it came from share one copy. White space is
found in the 12 bytes at each end of a substring (polars cuts them); only a row those
cannot settle is measured whole. Short substrings (answers) are cheaper to copy.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

INLINE = 12  # a string this short lives inside its view
PREFIX = 4  # the bytes of a longer string its view holds
# Substrings shorter than this on average (answers) are cut and stripped by copying them.
# Both ways give the same text. On a million rows, the cut alone costs the same both ways
# up to ~100 bytes and is 1.1-1.9x cheaper shared at 200-600 bytes (bench/substrings.py);
# but later passes read a compact copy faster: a whole import with ~60-byte answers took
# 2.89 s copying them, 3.16 s sharing them (bench/RESULTS.md, import).
SHARE_ABOVE_BYTES = 400
ASCII_WHITESPACE = np.zeros(256, dtype=bool)
ASCII_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # \t \n \v \f \r and space: the white space under 0x80

Offsets = pl.Series | np.ndarray


def stripped_substrings(texts: pl.Series, start: Offsets, end: Offsets) -> pl.Series:
    """`texts[start:end].str.strip_chars()`: each substring, by byte offsets that fall on
    character boundaries (0 <= start <= end <= the text's length in bytes; a null offset
    counts as 0), without Unicode white space at either end; null where the text is null."""
    begin, size = _checked_offsets(texts, start, end)
    if len(texts) == 0 or size.mean() < SHARE_ABOVE_BYTES:
        return _copies(texts, begin, size).str.strip_chars()
    edge = np.minimum(size, INLINE)  # the bytes read at each end
    first, last = _heads(texts, begin, begin + size - edge)
    lead, lead_unsure = _count_white_space(first, edge, size, from_end=False)
    trail, trail_unsure = _count_white_space(last, edge, size, from_end=True)
    unsure = np.flatnonzero(lead_unsure | trail_unsure)
    if len(unsure):
        lead[unsure], trail[unsure] = _exact_white_space(texts, begin, size, unsure)
    stripped_size = np.maximum(size - lead - trail, 0)  # all white space: lead and trail both cover it
    return _cut(texts, begin + lead, stripped_size, _shifted_heads(texts, first, begin, lead, stripped_size))


def strip_whitespace(texts: pl.Series) -> pl.Series:
    """`texts.str.strip_chars()`, sharing the texts' memory."""
    return stripped_substrings(texts, np.zeros(len(texts), dtype=np.int64),
                               texts.str.len_bytes().cast(pl.Int64).fill_null(0))


def first_bytes(texts: pl.Series) -> np.ndarray:
    """The first byte of each text (0 for an empty one; any value for a null one), read
    from its view: the texts' own bytes are not read."""
    return _views(texts.to_arrow(compat_level=pl.CompatLevel.newest())).view(np.uint8)[:, 4].copy()


def _checked_offsets(texts: pl.Series, start: Offsets, end: Offsets) -> tuple[np.ndarray, np.ndarray]:
    """(begin, size) as int64 arrays, 0 where the offsets are null. A view out of its text
    would read any memory, so offsets outside it raise."""
    begin, stop = (pl.Series(offsets).cast(pl.Int64).fill_null(0).to_numpy() for offsets in (start, end))
    size = stop - begin
    length = texts.str.len_bytes().fill_null(0).to_numpy()
    if ((begin < 0) | (size < 0) | (stop > length)).any():
        raise ValueError("stripped_substrings: offsets must satisfy 0 <= start <= end <= the text's length in bytes")
    return begin, size


def _cut(texts: pl.Series, begin: np.ndarray, size: np.ndarray, heads: np.ndarray) -> pl.Series:
    """New views of `size` bytes at `begin` in each text. A short substring is
    its head (the up to 12 bytes at `begin`, rows of `heads`); a long one keeps its head's
    first 4 bytes and points into the text's data buffer."""
    source = texts.to_arrow(compat_level=pl.CompatLevel.newest())
    views = _views(source)
    cut = np.zeros((len(texts), 4), dtype=np.uint32)
    cut.view(np.uint8)[:, 4:] = heads
    short = np.flatnonzero(size < INLINE)  # ends inside its head
    cut.view(np.uint8)[short, 4:] *= np.arange(INLINE) < size[short, None]
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


def _count_white_space(edge_bytes: np.ndarray, edge: np.ndarray, size: np.ndarray, from_end: bool
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(count, unsure): the ASCII white space bytes at the start (or end) of each substring
    of `size` bytes, counted in its first (or last) `edge` bytes, the first `edge` of each
    row of `edge_bytes`. Unsure where that may not be all of the substring's white space:
    white space all through an edge shorter than the substring, or a multi-byte character
    (which may be Unicode white space) where it stops."""
    rows = np.arange(len(edge_bytes))
    count = np.zeros(len(edge_bytes), dtype=np.int64)
    going = edge > 0
    for step in range(INLINE):  # a byte at a time: most texts stop at the first or second
        if not going.any():
            break
        byte = edge_bytes[rows, np.maximum(edge - 1 - step, 0)] if from_end else edge_bytes[:, step]
        going &= (step < edge) & ASCII_WHITESPACE[byte]
        count += going
    stops_at = np.clip(edge - 1 - count if from_end else count, 0, INLINE - 1)
    multi_byte = (count < edge) & (edge_bytes[rows, stops_at] >= 0x80)
    return count, multi_byte | ((count == edge) & (edge < size))


def _exact_white_space(texts: pl.Series, begin: np.ndarray, size: np.ndarray, rows: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(lead, trail): the white space bytes at each end of the substrings in `rows`,
    measured on copies of them."""
    exact = pl.DataFrame({"text": _copies(texts.gather(rows), begin[rows], size[rows]), "size": size[rows]}).select(
        lead=pl.col("size") - pl.col("text").str.strip_chars_start().str.len_bytes().cast(pl.Int64),
        trail=pl.col("size") - pl.col("text").str.strip_chars_end().str.len_bytes().cast(pl.Int64))
    return exact["lead"].fill_null(0).to_numpy(), exact["trail"].fill_null(0).to_numpy()


def _copies(texts: pl.Series, begin: np.ndarray, size: np.ndarray) -> pl.Series:
    """The substrings, copied by polars."""
    return pl.DataFrame({"text": texts.cast(pl.Binary), "begin": begin, "size": size}).select(
        pl.col("text").bin.slice("begin", "size").cast(pl.String).alias(texts.name)).to_series()


def _shifted_heads(texts: pl.Series, heads: np.ndarray, begin: np.ndarray, lead: np.ndarray, size: np.ndarray
                   ) -> np.ndarray:
    """The heads of substrings that start `lead` bytes into `heads`: taken from `heads`
    where they lie in it (a long substring needs only its first 4 bytes), cut again where not."""
    shifted = np.zeros_like(heads)
    fits = lead + np.where(size > INLINE, PREFIX, size) <= INLINE
    shifts = np.bincount(lead[fits])  # rows per shift: a handful of distinct ones, often one for all rows
    for by in np.flatnonzero(shifts):
        rows = slice(None) if shifts[by] == len(lead) else fits & (lead == by)  # all rows: no index needed
        shifted[rows, :INLINE - by] = heads[rows, by:]
    again = np.flatnonzero(~fits)
    if len(again):
        shifted[again] = _heads(texts.gather(again), begin[again] + lead[again])[0]
    return shifted


def _heads(texts: pl.Series, *offsets: np.ndarray) -> list[np.ndarray]:
    """The up to 12 bytes at each of `offsets` in each text, as rows of 12 bytes (zeros
    past the text's end). polars cuts them, each inside its view, in one pass that cuts at
    several offsets in parallel."""
    binary = texts.cast(pl.Binary).to_frame("text")
    heads = binary.select(pl.col("text").bin.slice(pl.Series(at), INLINE).alias(str(i)) for i, at in enumerate(offsets))
    return [_views(head.to_arrow(compat_level=pl.CompatLevel.newest())).view(np.uint8)[:, 4:].copy()
            for head in heads.iter_columns()]


def _views(array: pa.Array) -> np.ndarray:
    """The array's views as rows of four uint32: length, prefix (or inline bytes), data
    buffer, offset in it. Row i of the result is row i of the array."""
    views = np.frombuffer(array.buffers()[1], dtype=np.uint32).reshape(-1, 4)
    return views[array.offset:array.offset + len(array)]

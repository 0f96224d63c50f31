"""Substrings and stripping that share the text column's memory (curate.substrings)."""

from __future__ import annotations

import random

import polars as pl
import pytest

import curate.substrings as substrings_module
from curate.substrings import first_bytes, strip_whitespace, stripped_substrings

# Unicode white space (U+3000, NBSP, U+2028, U+0085, thin space) next to text that is not
# white space though it looks close to it (\x1c) or shares UTF-8 bytes with it (。, ア, é).
ALPHABET = ["a", "b", " ", "\n", "\t", "é", "中", "。", "ア", "😀", "\u3000", "\u00a0", "\u2028", "\u0085",
            "\u2009", "\x1c"]


def _texts(seed: int, rows: int = 3000) -> list[str | None]:
    rng = random.Random(seed)
    texts: list[str | None] = []
    for row in range(rows):
        body = "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 5, 11, 12, 13, 17, 40, 300])))
        # runs of white space longer than the 12 bytes read at each end
        pad = rng.choice(["", " ", "\n", "\u3000", " \n\t"])
        text = pad * rng.randint(0, 20) + body + pad * rng.randint(0, 20)
        texts.append(None if row % 101 == 0 else text)
    return texts


def _char_offsets(texts: list[str | None], seed: int) -> tuple[pl.Series, pl.Series]:
    """Random byte offsets that fall on character boundaries."""
    rng = random.Random(seed)
    starts, ends = [], []
    for text in texts:
        if text is None:
            starts.append(None)
            ends.append(None)
            continue
        first = rng.randint(0, len(text))
        last = rng.randint(first, len(text))
        starts.append(len(text[:first].encode()))
        ends.append(len(text[:last].encode()))
    return pl.Series(starts, dtype=pl.Int64), pl.Series(ends, dtype=pl.Int64)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("shared", [True, False])
def test_strip_whitespace_equals_strip_chars(seed, shared, monkeypatch):
    if shared:  # short texts are stripped by copying; force the shared-memory way
        monkeypatch.setattr(substrings_module, "SHARE_ABOVE_BYTES", 0)
    texts = pl.Series(_texts(seed))
    assert strip_whitespace(texts).to_list() == texts.str.strip_chars().to_list()


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("shared", [True, False])
def test_stripped_substrings_equal_stripping_the_slice(seed, shared, monkeypatch):
    if shared:
        monkeypatch.setattr(substrings_module, "SHARE_ABOVE_BYTES", 0)
    texts = _texts(seed)
    start, end = _char_offsets(texts, seed)
    sliced = pl.Series([None if t is None else t.encode()[a:b].decode() for t, a, b in zip(texts, start, end,
                                                                                            strict=True)])
    # as polars strips (Rust's white space: \x1c is not, unlike Python's str.strip)
    expected = sliced.str.strip_chars().to_list()
    assert stripped_substrings(pl.Series(texts), start, end).to_list() == expected
    # an input that is a slice of a longer column, or in several chunks, cuts the same
    column = pl.concat([pl.Series(texts[:1000]), pl.Series(texts[1000:])], rechunk=False)
    assert column.n_chunks() == 2
    assert stripped_substrings(column, start, end).to_list() == expected
    assert stripped_substrings(column.slice(10, 500), start.slice(10, 500), end.slice(10, 500)).to_list() == (
        expected[10:510])


def test_stripped_reasoning_shares_the_texts_memory():
    texts = pl.Series(["<think>\n\n  " + "step " * 400 + " \n</think>\nThe answer is 4." for _ in range(2000)])
    source = texts.to_arrow(compat_level=pl.CompatLevel.newest())
    cut = stripped_substrings(texts, pl.Series([7] * 2000), texts.str.find("</think>", literal=True))
    result = cut.to_arrow(compat_level=pl.CompatLevel.newest())
    assert {b.address for b in result.buffers()[2:]} <= {b.address for b in source.buffers()[2:]}
    assert cut.to_list() == [("step " * 400).strip()] * 2000


@pytest.mark.parametrize("shared", [True, False])
def test_short_substrings_compare_and_group_as_text(shared, monkeypatch):
    """A string of up to 12 bytes lives in its view, zero-padded: bytes left over from the
    longer text would make equal strings compare unequal."""
    if shared:
        monkeypatch.setattr(substrings_module, "SHARE_ABOVE_BYTES", 0)
    texts = pl.Series(["<think> yes </think>", "<think>yes</think>", "<think>\nyes\n</think>"] * 50)
    cut = stripped_substrings(texts, pl.Series([7] * 150), texts.str.find("</think>", literal=True))
    assert (cut == pl.Series(["yes"] * 150)).all()
    assert cut.n_unique() == 1


def test_first_bytes_are_read_from_the_views():
    texts = ["", "a", "[1, 2]", "é", "中文" * 10, "-1.5", "{" + "x" * 40, None, "z" * 12, "y" * 13]
    expected = [0 if not t else t.encode()[0] for t in texts]
    column = pl.concat([pl.Series(texts[:4]), pl.Series(texts[4:])], rechunk=False)
    got = first_bytes(column).tolist()
    assert [g for g, t in zip(got, texts, strict=True) if t is not None] == [
        e for e, t in zip(expected, texts, strict=True) if t is not None]
    assert first_bytes(column.slice(2, 5)).tolist()[:2] == expected[2:4]


def test_offsets_outside_the_text_are_refused():
    texts = pl.Series(["a long enough text to live in a buffer", "short"])
    with pytest.raises(ValueError, match="start <= end"):
        stripped_substrings(texts, pl.Series([0, 0]), pl.Series([10, 9]))  # past the end of "short"
    with pytest.raises(ValueError, match="start <= end"):
        stripped_substrings(texts, pl.Series([5, 3]), pl.Series([4, 4]))

"""The reasoning/answer split (curate.llm.reasoning) against a plain-Python reference built
on Python's own str.split and str.strip, on seeded random Unicode text: multi-byte
characters, Unicode white space, markers at the edges, missing, repeated and partial markers.
The same texts go through the importer (load_traces), which must cut them the same way."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from curate.llm.reasoning import split_reasoning, split_reasoning_frame
from curate.sources.config import Source
from curate.sources.traces import load_traces

# Unicode's White_Space property: what polars' strip_chars() strips. Python's str.strip()
# with no argument also strips U+001C-U+001F (isspace), so the reference names the set.
WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
               + "\u2028\u2029\u202f\u205f\u3000")
THINK = ("<think>", "</think>")
SKY = ("<|begin_of_thought|>", "<|end_of_thought|>")
WIDE = ("【思考】", "【/思考】")  # multi-byte markers
PIECES = ["a", "Z", "42", " ", "é", "ß", "中文", "🙂", "\u0301", "\x1c", "\x00", *WHITE_SPACE,
          *THINK, *SKY, *WIDE, "<think", "think>", "</", "<|", "|>", "【", "】"]
MARKER_SETS = [[THINK], [THINK, SKY], [SKY, THINK], [WIDE, THINK], [("", "</think>")], [("<think>", "")], []]


def reference(text: str, markers: list[tuple[str, str]]) -> tuple[str, str, bool]:
    """(reasoning, answer, truncated) by the rules in curate.llm.reasoning, in plain Python."""
    for start, end in markers:
        if end and end in text:
            reasoning, answer = text.split(end, 1)
            if start and start in reasoning:
                reasoning = reasoning.split(start, 1)[1]
            return reasoning.strip(WHITE_SPACE), answer.strip(WHITE_SPACE), False
        if start and start in text:
            return text.split(start, 1)[1].strip(WHITE_SPACE), "", True
    return "", text.strip(WHITE_SPACE), False


def random_texts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["", " ", "\u3000", *THINK, "".join(THINK), THINK[1] + THINK[0]]
    while len(texts) < count:
        texts.append("".join(rng.choices(PIECES, k=rng.randint(0, 40))))
    return texts


@pytest.mark.parametrize("markers", MARKER_SETS, ids=lambda m: "+".join(s or "-" for pair in m for s in pair) or "none")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_matches_python_reference(seed, markers):
    texts = random_texts(seed, 3000)
    split = split_reasoning_frame(pl.Series(texts, dtype=pl.String), markers)
    expected = [reference(text, markers) for text in texts]
    got = list(zip(split["reasoning"], split["answer"], split["truncated"], strict=True))
    mismatches = [(text, g, e) for text, g, e in zip(texts, got, expected, strict=True) if g != e]
    assert not mismatches, mismatches[:3]
    assert split["completion"].to_list() == texts


def test_strip_is_unicode_white_space_exactly():
    """polars' strip_chars() strips White_Space, and only it, over the whole BMP."""
    characters = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    stripped = pl.Series([f"{c}x{c}" for c in characters]).str.strip_chars().to_list()
    assert stripped == [f"{c}x{c}".strip(WHITE_SPACE) for c in characters]


def test_one_completion_splits_as_a_column_does():
    texts = random_texts(3, 300)
    for text in texts:
        reasoning, answer, _ = reference(text, [THINK])
        assert split_reasoning(text, None, *THINK) == (text, reasoning, answer)


@pytest.mark.parametrize(("content", "expected"), [
    (" r\u3000", ("<think> r\u3000</think>ans ", "r", "ans")),  # rebuilt around the server's reasoning
    ("\u3000 ", ("ans ", "", "ans")),  # only white space: as if there were none
    (None, ("ans ", "", "ans")),
])
def test_reasoning_content_is_put_back_between_the_markers(content, expected):
    assert split_reasoning("ans ", content, *THINK) == expected


def test_null_text_reads_as_empty_and_stays_null():
    split = split_reasoning_frame(pl.Series([None, "x"], dtype=pl.String), [THINK])
    assert split.rows() == [(None, "", "", False), ("x", "", "x", False)]


@pytest.mark.parametrize("markers", [[THINK, SKY], [WIDE]])
def test_import_cuts_random_text_as_the_reference_does(tmp_path, markers):
    texts = [text for text in random_texts(4, 1500) if text.strip(WHITE_SPACE)]  # empty traces are refused
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps({"problem": f"p{i}", "answer": "1", "output": text}) + "\n"
                            for i, text in enumerate(texts)), encoding="utf-8")
    source = Source.model_validate({"name": "d", "path": str(path), "kind": "traces", "traces": {
        "completion": "output", "reasoning_markers": [list(pair) for pair in markers], "strip_tags": [],
        "tokenizer": "chars/4"}})
    traces = load_traces(source, tmp_path)
    expected = [reference(text, markers) for text in texts]
    assert traces["completion"].to_list() == texts
    assert traces["reasoning"].to_list() == [reasoning for reasoning, _, _ in expected]
    assert traces["answer_text"].to_list() == [answer for _, answer, _ in expected]
    assert traces["finish_reason"].to_list() == ["length" if cut else "stop" for _, _, cut in expected]

"""Final-answer extraction from references and traces.

Each extractor returns the answer string or None. `extract_answer` tries a list of them in
order and reports which one matched, so an audit can tell a boxed answer from a guess
(the last number in the text). `last_boxed_expr` and `stated_answer` do the same over a
whole column in polars (no Python per row), for filters over millions of long traces.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import polars as pl

_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
# "The answer is 12." / "the final answer is: $\frac{1}{2}$" (up to the end of the sentence).
_ANSWER_IS = re.compile(
    r"(?:the\s+)?final\s+answer\s*(?:is)?\s*[:：]?\s*(.+?)(?:\.\s|\.?\s*$|\n)"
    r"|answer\s+is\s*[:：]?\s*(.+?)(?:\.\s|\.?\s*$|\n)",
    re.IGNORECASE,
)
_CHOICE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?\s*([A-J])\s*[\)\]]?(?![A-Za-z])",
    re.IGNORECASE,
)
_CHOICE_ALONE = re.compile(r"^\s*[\(\[]?([A-J])[\)\]\.:]?\s*$", re.MULTILINE)
_VERDICT_WORDS = {"correct", "incorrect", "right", "wrong", "consistent", "confirmed", "verified"}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
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

ExtractionMethod = Literal["boxed", "gsm8k", "answer_is", "choice", "regex", "last_number"]
DEFAULT_METHODS: tuple[ExtractionMethod, ...] = ("boxed", "gsm8k", "answer_is", "last_number")


def last_boxed(text: str | None) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in `text`, braces balanced."""
    if not text:
        return None
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_brace = text.find("{", start)
    if open_brace < 0:
        return None
    depth = 0
    for index in range(open_brace, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : index].strip()
    return None


def gsm8k_final(text: str | None) -> str | None:
    """The number after GSM8K's '####' marker, without thousands separators."""
    if not text:
        return None
    match = _GSM8K_FINAL.search(text)
    return match.group(1).replace(",", "").strip() if match else None


def _strip_math(answer: str) -> str | None:
    """Drop the $...$ / \\(...\\) wrapping and trailing punctuation around an answer."""
    answer = answer.strip().rstrip(".;,").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip()
    return answer or None


def _last_match(pattern: re.Pattern, text: str | None) -> re.Match | None:
    """The last match of `pattern` in `text` (None for no text or no match)."""
    if not text:
        return None
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def answer_is(text: str | None) -> str | None:
    """The phrase after the last "the answer is" / "final answer:"."""
    last = _last_match(_ANSWER_IS, text)
    if last is None:
        return None
    answer = _strip_math(last.group(1) or last.group(2))
    # "the answer is correct" / "the answer is that the boxes are empty": prose, not an answer.
    if answer is None or answer.lower() in _VERDICT_WORDS:
        return None
    if len(answer.split()) > 3 and not re.search(r"[\d\\=^]", answer):
        return None
    return answer


def choice_letter(text: str | None) -> str | None:
    """A multiple-choice letter: "answer is (B)", "Answer: C", or a line holding only "(D)"."""
    if not text:
        return None
    matches = list(_CHOICE.finditer(text)) or list(_CHOICE_ALONE.finditer(text))
    return matches[-1].group(1).upper() if matches else None


def last_number(text: str | None) -> str | None:
    """The last number in the text (a fallback when the trace states no marked answer)."""
    if not text:
        return None
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def regex_extractor(pattern: str) -> Callable[[str | None], str | None]:
    """An extractor from a user pattern: its first group (or whole match), last occurrence."""
    compiled = re.compile(pattern, re.MULTILINE)

    def extract(text: str | None) -> str | None:
        last = _last_match(compiled, text)
        if last is None:
            return None
        return (last.group(1) if compiled.groups else last.group(0)).strip() or None

    return extract


def _boxed(text: str | None) -> str | None:
    answer = last_boxed(text)
    return answer if answer else None


_EXTRACTORS: dict[str, Callable[[str | None], str | None]] = {
    "boxed": _boxed,
    "gsm8k": gsm8k_final,
    "answer_is": answer_is,
    "choice": choice_letter,
    "last_number": last_number,
}


def answer_extractor(
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS, pattern: str | None = None
) -> Callable[[str | None], tuple[str | None, str | None]]:
    """A function text -> (answer, method) trying `methods` in order."""
    if "regex" in methods and not pattern:
        raise ValueError("extraction method 'regex' needs a pattern")
    unknown = [m for m in methods if m not in _EXTRACTORS and m != "regex"]
    if unknown:
        raise ValueError(f"unknown extraction methods: {unknown}; known: {[*_EXTRACTORS, 'regex']}")
    extractors = dict(_EXTRACTORS)
    if pattern and "regex" in methods:
        extractors["regex"] = regex_extractor(pattern)
    chain = [(m, extractors[m]) for m in methods]

    def extract(text: str | None) -> tuple[str | None, str | None]:
        for method, extractor in chain:
            answer = extractor(text)
            if answer is not None:
                return answer, method
        return None, None

    return extract


def extract_code(text: str | None, language: str = "python") -> tuple[str | None, str | None]:
    """(code, method): the last fenced block in `language` (or untagged), else the raw text."""
    if not text or not text.strip():
        return None, None
    blocks = [
        body for tag, body in _CODE_BLOCK.findall(text) if tag.lower() in ("", language, language[:2])
    ]
    if blocks:
        return blocks[-1], "code_block"
    return text, "raw"


# Reference answers, normalised per source format.
def math_reference(solution: str | None) -> str | None:
    """MATH / MATH-500: the last \\boxed{} of the worked solution."""
    return _boxed(solution)


def gsm8k_reference(answer: str | None) -> str | None:
    """GSM8K: the number after '####'."""
    return gsm8k_final(answer)


# Vectorised: the same ideas as polars expressions over a text column.
def last_group(text: pl.Expr, pattern: str) -> pl.Expr:
    """Group 1 of the last match of `pattern` (all matches, then the last one re-matched:
    several times faster than a leading `.*` in the regex)."""
    return text.str.extract_all(pattern).list.last().str.extract(pattern, 1).str.strip_chars()


def last_boxed_expr(text: pl.Expr) -> pl.Expr:
    """`last_boxed` over a column, in polars: braces nest at most three levels deep."""
    return last_group(text, BOXED)


def stated_answer(text: pl.Expr) -> pl.Expr:
    """The last boxed answer, else the last "the answer is X"; null when neither."""
    return pl.coalesce(last_boxed_expr(text), last_group(text, _STATED))

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
# "The answer is 12." / "the final answer is: $\frac{1}{2}$" / "The correct answer is (D)." /
# "final answers are: 2, 3" / "**Final Answer:** 7" / "Answer: C": the marker, then the rest of
# its line (a header alone on its line, "**Final Answer**", is followed by its value below).
_ANSWER_IS = re.compile(
    r"(?:\b(?:final|correct)\s+answers?\b(?:\s*(?:is|are)\b)?|\banswers?\s+(?:is|are)\b|\banswer\s*(?=[:：]))"
    r"[ \t*:：]*([^\n]*)(?=(?:\n[ \t*]*\n?([^\n]*))?)",
    re.IGNORECASE,
)
# A value never starts like this: an echoed instruction ("final answer within \boxed{}") or prose.
_NOT_A_VALUE = re.compile(
    r"^(?:within|in|inside|as|at|to|for|of|on|using|should|must|will|would|can|could|that|which|here|"
    r"below|above|is|are|be|was|seems?|might|may|not|the|an?|this|it|one|also|indeed|just|simply)\b|\\boxed",
    re.IGNORECASE,
)
_CHOICE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?\s*([A-J])\s*[\)\]]?(?![A-Za-z])",
    re.IGNORECASE,
)
# A labelled item of a list: "Subproblem 1:", "Part (b):", "(a)", "2)", "2.", "- ".
_ITEM_LABEL = re.compile(
    r"(?i)^[ \t*]*[-•*][ \t]+"  # a bullet, only at the start of a line ("10 - 2" is a difference)
    r"|(?:^|(?<=[\s,;]))[ \t*]*(?:(?:sub)?problem\s*\d+\s*:|part\s*\(?[a-z0-9]{1,3}\)?\s*:"
    r"|(?:\(?[a-h1-9]\)|\d{1,2}\.)(?=\s))[ \t*]*"
)
_CHOICE_ALONE = re.compile(r"^\s*[\(\[]?([A-J])[\)\]\.:]?\s*$", re.MULTILINE)
_OPTION_LETTER = re.compile(r"\(?[A-J]\)?")
_VERDICT_WORDS = {"correct", "incorrect", "right", "wrong", "consistent", "confirmed", "verified"}
_TAIL_CHARS = 4000  # answer_is and last_number read this many final characters
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
# \boxed{...} with up to three levels of nested braces: regexes cannot balance braces in
# general, but real answers (\frac{\sqrt{2}}{3}) stay well within three levels.
_BRACED = r"(?:[^{}]|\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*"
BOXED = r"\\(?:boxed|fbox)\s*\{(" + _BRACED + r")\}"
# "the answer is X" / "final answer: X" / "the correct answer is (D)", the stated result
# when nothing is boxed. The value must look like math (digit, sign, bracket, backslash,
# $) or be an option letter ("The answer is A.", never the article of "the answer is a
# number"), and is one token: a $...$ or \\(...\\) span, a bracketed group, or a run up to a
# space, comma, quote or colon, so "27 miles from city A" states 27 and '(I)" but careful' states (I).
_STATED = (
    r"(?i)(?:final answer|correct answer|the answer)\s*(?:is|:|=)\s*:?\s*(?:\*\*)?\s*"
    r"(\$[^$\n]{1,200}\$|\\\(.{1,200}?\\\)|\([^()\n]{1,100}\)|\[[^\[\]\n]{1,100}[\])]|[-+\d\\][^\s,;:\"'!?]*"
    r"|(?-i:[A-HJ])\b)"  # no "I": "the answer is I think ..."
)
ExtractionMethod = Literal["boxed", "gsm8k", "answer_is", "choice", "regex", "last_number"]
DEFAULT_METHODS: tuple[ExtractionMethod, ...] = ("boxed", "gsm8k", "answer_is", "last_number")


def last_boxed(text: str | None) -> str | None:
    """Content of the last non-empty \\boxed{...} (or \\fbox{...}) in `text`, braces balanced:
    an echoed instruction ("put your final answer within \\boxed{}") is not an answer."""
    if not text:
        return None
    end = len(text)
    while True:
        start = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if start < 0:
            return None
        content = _braced_after(text, start)
        if content:
            return content
        end = start


def _braced_after(text: str, start: int) -> str | None:
    """The stripped content of the first balanced {...} after `start`."""
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
    for left, right in (("**", "**"), ("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip().rstrip(".;,").strip()
    return answer or None


def _last_match(pattern: re.Pattern, text: str | None) -> re.Match | None:
    """The last match of `pattern` in `text` (None for no text or no match)."""
    if not text:
        return None
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def answer_is(text: str | None) -> str | None:
    """The value after the last "the answer is" / "final answer:" / "the correct answer is"
    that states one: junk left by a marker ("**", "s are:", an echoed "within \\boxed{}"
    instruction) or prose ("the answer is correct") is skipped."""
    if not text:
        return None
    # A final answer is stated near the end: searching only the tail keeps long traces cheap.
    for match in reversed(list(_ANSWER_IS.finditer(text, max(0, len(text) - _TAIL_CHARS)))):
        same_line, next_line = match.group(1), match.group(2)
        if "answers" in match.group(0).lower():
            # "the final answers are: Subproblem 0: 4.5 s, Subproblem 1: 12" / a list on the lines
            # below: the answers of earlier parts come first, the one asked for last.
            same_line, next_line = _last_item(text[match.start(1):])
        answer = _value(_after_last_is(same_line) if re.match(r"[A-Za-z]{2,}\s", same_line) else same_line)
        if answer is None and not same_line.strip(" \t*:.") and next_line:
            # "**Final Answer**\n\nThe area is 0.05." / "Final Answer:\n$\frac{1}{2}$"
            answer = _value(_after_last_is(next_line))
        if answer is not None:
            return answer
    return None


def _last_item(listing: str) -> tuple[str, str | None]:
    """The last item of the list after a plural marker, as (same line, next line) for
    `answer_is`: the last labelled item of the marker's line, or else the last line of the
    block of lines below it, without its label."""
    lines = listing.split("\n")
    if lines[0].strip(" \t*:.") or len(lines) == 1:
        labels = list(_ITEM_LABEL.finditer(lines[0]))
        last = lines[0][labels[-1].end():] if len(labels) >= 2 else lines[0]
        return (last if last.strip() else lines[0]), None
    block: list[str] = []
    for line in lines[1:]:
        if not line.strip():
            if block:
                break
            continue
        block.append(line)
    if not block:
        return lines[0], None
    item = block[-1]
    while (label := _ITEM_LABEL.match(item)) and label.end() and item[label.end():].strip():
        item = item[label.end():]  # "- Part 2: 9": a bullet, then a label
    return "", item


def _after_last_is(sentence: str) -> str:
    """"The area is 0.05." -> " 0.05."; a line without "is" stays as it is."""
    parts = re.split(r"\b(?:is|are)\b", sentence)
    return parts[-1] if len(parts) > 1 else sentence


def _value(phrase: str) -> str | None:
    """The stated value at the start of `phrase`, up to the end of its sentence, or None."""
    phrase = re.split(r"\.(?:\s|$)|\s+(?:but|since|because|which|as)\b", phrase.strip(), maxsplit=1)[0]
    answer = _strip_math(phrase.strip().strip("*").strip())
    if answer is None or not answer.strip("*:.,;() "):
        return None
    if _OPTION_LETTER.fullmatch(answer):
        return answer  # "The answer is A.": an option letter, not the article ("the answer is a number")
    # "the answer is correct" / "the answer is that the boxes are empty": prose, not an answer.
    if answer.lower() in _VERDICT_WORDS or _NOT_A_VALUE.search(answer):
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
    # The tail first (cheap on long traces); the whole text only when the tail has no number.
    numbers = _NUMBER.findall(text, max(0, len(text) - _TAIL_CHARS)) or _NUMBER.findall(text)
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


# The tags a code fence in each language may carry (any case); an untagged fence counts too.
_FENCE_TAGS = ({"python", "py", "python3"}, {"cpp", "c++", "cc", "cxx"})


def fence_tags(language: str) -> set[str]:
    """The fence tags (lower case) that mark a block in `language`, itself or an alias of it."""
    language = language.lower()
    return {"", language, *next((tags for tags in _FENCE_TAGS if language in tags), ())}


def extract_code(text: str | None, language: str = "python") -> tuple[str | None, str | None]:
    """(code, method): the last fenced block in `language` (or untagged), else the raw text."""
    if not text or not text.strip():
        return None, None
    tags = fence_tags(language)
    blocks = [body for tag, body in _CODE_BLOCK.findall(text) if tag.lower() in tags]
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
    return pl.coalesce(last_boxed_expr(text), last_group(text, _STATED).str.strip_chars_end(".*"))

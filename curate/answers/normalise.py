"""Answer spellings: rewrite an answer so that two spellings of one value compare equal.

`normalise_answer` (polars, over a column) is the thorough one: prune's filters compare a
trace's stated result with its final answer or the reference through it. `normal_form`
(one string) is the light one: spacing commands, \\left/\\right and enclosing $ only.
`presented` (one string) adds what only presentation changes (a trailing period, \\%,
\\text{}, units, degrees) for the verifier's fast path (`curate.answers.math.decide`).
None is a CAS: unequal spellings of equal values stay unequal.
"""

from __future__ import annotations

import re

import polars as pl

_NOISE = re.compile(r"\s+|\\[!,;: ]|\\q?quad\b|~|\\left|\\right|^\$|\$$")
# A one-character subscript or power in braces: "E_{1}" is "E_1", "x^{2}" is "x^2" ("x^{10}" keeps its braces).
_ONE_CHAR_SCRIPT = re.compile(r"([_^])\{(\w)\}")


def normal_form(answer: str) -> str:
    """`answer` without spacing (\\, \\ \\quad ~ ...), \\left/\\right and enclosing $; \\dfrac and \\tfrac as
    \\frac; braces around a one-character subscript or power dropped."""
    text = _NOISE.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _ONE_CHAR_SCRIPT.sub(r"\1\2", text)


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


# --- presentation: what an answer says, apart from how it is written ----------------------
# Bumped whenever a rule below changes a verdict: cached verdicts carry it (VerdictCache).
RULES_VERSION = "4"

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"))
# \text{...}, \textbf{...}, \mbox{...}, \mathrm{...} with no nested braces.
_TEXT_COMMAND = r"\\(?:text|textbf|textit|mbox|mathrm|operatorname)\s*\{([^{}]*)\}"
_WHOLE_TEXT = re.compile(r"^" + _TEXT_COMMAND + r"$")
# A unit after a value: "12 \text{ cm}", "5.4\text{ cents}", "3\mbox{ m}^2".
_TRAILING_UNIT = re.compile(r"^(.*?\S)\s*(?:\\[,;! ]|~)*\s*" + _TEXT_COMMAND + r"\s*(?:\^\{?[23]\}?)?$")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree")
_PERCENT = re.compile(r"\\?%")
_SIMPLE_FRAC = re.compile(r"\\frac\{(\d+)\}\{(\d+)\}")
_DIGIT_FRAC = re.compile(r"\\frac(\d)(\d)")
_MEMBER_OF = re.compile(r"^[A-Za-z]\s*\\in\s*")  # "x \in (0, 9)": the set is the answer
_CHOICE = re.compile(r"^\(?([A-J])\)?$")
# Text answers: a word of two or more letters outside a LaTeX command, or a clock time. A
# run of letters glued to an operator, a digit or a brace is a product of variables in a
# formula ("s^2+bs+1", "dM/dt", "\\frac{dM}{dt}"), not a word.
_WORD = re.compile(r"(?<![\\A-Za-z+\-*/^_={])[A-Za-z]{2,}(?![A-Za-z+\-*/^_=}(])|\d:\d\d")
_LETTER_LIST = re.compile(r"^[A-J](?:\s*(?:,|and)\s*[A-J])+$")


def unwrapped(answer: str) -> str:
    """`answer` without enclosing $ / \\( \\) / **, trailing punctuation and a \\text{}
    around the whole of it."""
    text = answer.strip()
    for _ in range(4):  # wrappers nest: "$\\text{(C)}$."
        before = text
        text = text.rstrip(".;,").strip()
        for left, right in _WRAPPERS:
            if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
                text = text[len(left) : -len(right)].strip()
        if whole := _WHOLE_TEXT.match(text):
            text = whole.group(1).strip()
        if text == before:
            break
    return text


def presented_latex(answer: str) -> str:
    """What `answer` says apart from how it is presented, still as LaTeX (the form a parser
    gets): `unwrapped`, then without a leading "x \\in", a unit in \\text{} after a value,
    \\% and degree signs."""
    text = _MEMBER_OF.sub("", unwrapped(answer))
    unit = _TRAILING_UNIT.match(text)
    if unit and re.search(r"\d", unit.group(1)) and re.fullmatch(r"\s*[A-Za-z][A-Za-z .]*", unit.group(2)):
        text = unit.group(1).strip()
    return _PERCENT.sub("", _DEGREES.sub("", text)).strip()


def presented(answer: str) -> str:
    """`presented_latex` in `normal_form`, simple fractions as a/b: two answers equal here
    say the same thing."""
    text = normal_form(presented_latex(answer))
    return _SIMPLE_FRAC.sub(r"\1/\2", _DIGIT_FRAC.sub(r"\1/\2", text))


# A number and a unit after it: "6630.65 Å", "3.2 m/s", "9 customers". A unit is one or two words
# of two or more characters, or a symbol letter (Å µ Ω °), and Latin letters stand apart from the
# number: one letter, or letters glued to it, may be a variable ("3 x", "2ab").
_QUANTITY = re.compile(
    r"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+)"
    r"(?:((?:\s|\\[,;! ]|~)*)((?:\\(?:text|mathrm|mbox)\{[^{}]*\}|\\AA|\\mu|[A-Za-zÅµΩ°])"
    r"(?:\\(?:text|mathrm|mbox)\{[^{}]*\}|\\AA|\\mu|[A-Za-zÅµΩ°/^{}\d.\s-])*))?"
)
_UNIT_SYMBOL = re.compile(r"[ÅµΩ°/]|\\AA|\\mu|[A-Za-z].*[A-Za-z]")


def quantity(answer: str) -> tuple[float, str] | None:
    """A presented answer that is a number, with the unit after it if any:
    "6630.65 Å" -> (6630.65, "Å"), "1,000" -> (1000.0, ""); None for anything else."""
    match = _QUANTITY.fullmatch(answer.strip())
    if match is None:
        return None
    words = (match.group(3) or "").split()
    unit = "".join(words)
    letters = re.sub(r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r"\1", unit)
    if unit and (not _UNIT_SYMBOL.search(letters) or (letters[:1].isascii() and not match.group(2))):
        return None  # "3 x", "2ab": a variable, not a unit
    if len(words) > 2:
        return None  # "3 more than x": a phrase, not a unit
    return float(match.group(1).replace(",", "")), unit


def choice_of(answer: str) -> str | None:
    """The letter of a presented multiple-choice answer: "C", "(C)", "\\text{(C)}", "\\textbf{(C)}"."""
    match = _CHOICE.match(answer)
    return match.group(1) if match else None


def is_text_answer(answer: str) -> bool:
    """A presented answer in words, a clock time or a list of letters ("June 20", "1:03 PM",
    "A, D"): compared as text, never by a math parser (which reads "June 20" as 20)."""
    stripped = re.sub(r"\\(?:begin|end)\{[^{}]*\}|\\[A-Za-z]+", " ", re.sub(_TEXT_COMMAND, r" \1 ", answer))
    return bool(_WORD.search(stripped) or _LETTER_LIST.match(answer))


def text_key(answer: str) -> str:
    """A text answer in a canonical form: \\text{} unwrapped, case and spacing ignored,
    a list of letters in sorted order ("D, A" = "A,D")."""
    text = re.sub(_TEXT_COMMAND, r"\1", answer)
    text = re.sub(r"\\[,;! ]|~", " ", text)
    if _LETTER_LIST.match(text.strip()):
        return ",".join(sorted(re.findall(r"[A-J]", text)))
    return re.sub(r"\s+", "", text).lower()


def bracketed_like(bare: str, bracketed: str) -> str:
    """`bare` ("-2,-2") in the brackets of `bracketed` ("(-2,-2)") when only they differ:
    a tuple written without its parentheses."""
    if bracketed[:1] == "(" and bracketed[-1:] == ")" and "," in bare and bare[:1] not in "([{":
        return f"({bare})"
    return bare

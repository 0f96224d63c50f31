"""Answer spellings: rewrite an answer so that two spellings of one value compare equal.

`normalise_answer` (polars, over a column) is the thorough one: prune's filters compare a
trace's stated result with its final answer or the reference through it. `normal_form`
(one string) is the light one `verify_one` tries before math-verify: spacing commands,
\\left/\\right and enclosing $ only, so that only answers math-verify would certainly call
equal skip it. Neither is a CAS: unequal spellings of equal values stay unequal.
"""

from __future__ import annotations

import re

import polars as pl

_NOISE = re.compile(r"\s+|\\!|\\,|\\;|\\left|\\right|^\$|\$$")


def normal_form(answer: str) -> str:
    """`answer` without spacing, \\left/\\right and enclosing $; \\dfrac and \\tfrac as \\frac."""
    return _NOISE.sub("", answer).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


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

"""`arithmetic_check`: re-evaluate the arithmetic a trace states, and flag a trace with a
false stated equation ("3 + 5 = 10", "the sum of 3 and 5, which is 10") with that
equation as evidence. No model: cheap enough for millions of traces.

What is checked: chains of plain-number expressions joined by `=` (`2*$500 = $1000`,
`\\frac{27}{3} = 9`, `3 \\times 4 = 12 = 6 + 6`, GSM8K `<<16-3-4=9>>` annotations, `1,000`,
`25%`), and a few worded forms (`the sum of A and B is C`, `A times B is C`). An equation
is checked only where it stands on its own: a chain glued to a variable or to an operator
outside it (`x + 3 * 4 = 12`, `2x = 6`, `- \\dots + 99 - 100 = -50`) is left alone, since
its numbers are only part of an expression we cannot see whole. A stated value with d
decimals counts as right when it is within 10^-d of the exact value (rounding or
truncation, `10/3 = 3.33`); an exact integer value must be stated exactly. `%` may be
read as /100 or as a plain number (`20/100*100 = 20%` and `25% * 60 = 15` both hold).

What long chains of thought write that is true in context, and is not flagged: running
sums that restate the start of the left side (`256 - 400 + 240 - 36 = 256 - 400 = -144`);
unit conversions (`2 days = 2 * 24 * 3600 seconds`); decimals of 3+ places, or any after
`≈`, taken as rounded (`2*0.0833333 = 0.1666667`); modular arithmetic (`mod`, `≡`); a
number that ends a phrase (`from 0 to 0.5 = ...`, `2 times 6 times 7 = 126 - 84`); a
variable beside the chain (`x (1/2 + 1/3) = 5`); ranges (`columns 4-6`); a root sign
before it; a candidate substituted and then rejected (`3^2 + 19 = 10 ... 28 \\neq 10`).
A false step in a trace verified correct gets its own reason, `false_step_correct_answer`.

Extraction runs as one polars regex pass over the chunk (Rust); only the extracted chains
are evaluated in Python, each distinct chain once.
"""

from __future__ import annotations

import re
from functools import lru_cache

import polars as pl
from pydantic import Field

from curate.core.operator import Filter, OperatorConfig, StepContext, register

# --- the chain regex (Rust regex syntax: no look-around, so the characters around a
# chain are matched as `pre` / `post` and judged afterwards) -----------------------------
_NUMBER = r"(?:\\?\$[ \t]?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:[ \t]?\\?%)?"
_FRAC = r"(?:\d+[ \t]*)?\\[dt]?frac\{[ \t]*\d+(?:\.\d+)?[ \t]*\}\{[ \t]*\d+(?:\.\d+)?[ \t]*\}"
_POWER = r"(?:\^[ \t]*(?:\d|\{[ \t]*\d{1,3}[ \t]*\}))?"
_OPEN = r"(?:(?:\\left)?\([ \t]*)*"
_CLOSE = r"(?:[ \t]*(?:\\right)?\))*"
# Up to two unit words after a number ("7 blocks + 5 blocks = 12 blocks", "4 miles/hour * 2 hours"),
# or a rate glued to it ("$35/hour * 3 hours").
_UNIT = r"(?:/[a-zA-Z]{2,})?(?:[ \t]+[a-zA-Z]{2,}(?:/[a-zA-Z]+)?){0,2}"
_ATOM = rf"{_OPEN}-?(?:{_FRAC}|{_NUMBER}{_UNIT}){_POWER}{_CLOSE}{_POWER}"
_OPERATOR = r"(?:[-+*/×÷·–−]|\\times|\\cdot|\\div)"
_BINOP = rf"(?:[ \t]*{_OPERATOR}[ \t]*|[ \t]+x[ \t]+)"
_EXPR = rf"{_ATOM}(?:{_BINOP}{_ATOM})*"
_EQUALS = r"[ \t]*&?=&?[ \t]*"
# A chain glued to what precedes it ("2(3 + 4) = 14") is matched with that "(" in `pre`, and skipped.
_PRE = r"(?:(?:\\[a-zA-Z]+|\\[^a-zA-Z\s]|[a-zA-Z]+(?:['’][a-zA-Z]+)?|[^\s\d.(])[ \t]*|\d+[ \t]+|[\w)][ \t]*\()?"
# `post` swallows "\\left(" or an operator with its operand, so that the next chain does not start
# right after them as if on its own.
_POST = r"(?:[ \t]*(?:\\left\(|[-+*/×÷·–−^_][ \t]*\S*|\\[a-zA-Z]+|\\[^a-zA-Z\s]|[a-zA-Z]+|[^\s\d])|[ \t]+\d+/\d+)?"
# A chain refuted right after ("9 + 19 = 10 \\] \\[ 28 \\neq 10": a candidate tried and rejected).
_REFUTED = r"(?:[^=]{0,60}?(?:\\neq?[^a-zA-Z]|≠|not equal))?"
CHAIN = rf"{_PRE}{_EXPR}(?:{_EQUALS}{_EXPR})+{_POST}{_REFUTED}"
_CHAIN_PARTS = re.compile(rf"({_PRE})({_EXPR}(?:{_EQUALS}{_EXPR})+)({_POST})({_REFUTED})", re.DOTALL)

# Worded arithmetic: "the sum of 3 and 5, which is 10", "12 divided by 4 is 3".
_WNUM = r"\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_IS = r",?[ \t]+(?:which[ \t]+)?(?:is|equals|gives(?:[ \t]+us)?|makes|=)[ \t]+"
WORDED = (
    r"(?:[A-Za-z]+[ \t]+)?"  # the word before, so that "... plus 99 plus 98.9 equals 692" is seen as a longer sum
    rf"(?i:(?:sum|product|difference)[ \t]+of[ \t]+{_WNUM}[ \t]+and[ \t]+{_WNUM}{_IS}{_WNUM}"
    rf"|{_WNUM}[ \t]+(?:plus|minus|times|multiplied[ \t]+by|divided[ \t]+by)[ \t]+{_WNUM}{_IS}{_WNUM})"
    r"(?:[ \t]*(?:[A-Za-z]+|\S))?"  # what follows the result: a word, or one character
)
_WORDED_TAIL = re.compile(r"(?<=\d)[ \t]*([A-Za-z]+|[^\d\s])$")
_WORDED_GOES_ON = {"plus", "minus", "times", "multiplied", "divided", "over"}

_OPERATORS = set("+-*/×÷·–−^_{√∛∜")  # a root sign too: "√(81/16) = 9/4" is not "(81/16) = 9/4"
# LaTeX commands that may stand next to an equation without being part of it.
_NEUTRAL_COMMANDS = {r"\[", r"\]", r"\(", r"\)", r"\\", r"\,", r"\;", r"\!", r"\quad", r"\qquad",
                     r"\text", r"\textbf", r"\mathrm", r"\mbox", r"\implies", r"\Rightarrow",
                     r"\rightarrow", r"\to", r"\approx", r"\therefore", r"\because", r"\end",
                     r"\begin", r"\hline", r"\newline", r"\item", r"\Longrightarrow", r"\iff",
                     r"\equiv", r"\pmod", r"\leq", r"\geq", r"\le", r"\ge", r"\neq", r"\ne", r"\lt", r"\gt"}
# "=" between residues ("(8^2)^2 = 9^2 \\equiv 4", "3 * 7 = 21 = 1 mod 10"): the chain is not arithmetic.
_MODULAR = re.compile(r"\\(?:equiv|pmod|bmod|mod)\b|≡|(?<![a-zA-Z])mod(?:ulo)?\b")
_SPLIT_EQUALS = re.compile(_EQUALS)
_HAS_OPERATOR = re.compile(rf"\d[ \t)}}%]*(?:[ \t]*{_OPERATOR}|[ \t]+x[ \t]+)|\\[dt]?frac|\^")
_FRAC_RE = re.compile(r"(\d+\s*)?\\[dt]?frac\{\s*([\d.]+)\s*\}\{\s*([\d.]+)\s*\}")
# A unit word keeps its power ("6 ft^2 * 144 = 864": the square is the unit's, not 6's).
_UNIT_WORD = re.compile(r"(?:(?<=\d)/)?(?<![\\a-zA-Z])[a-zA-Z]{2,}(?:/[a-zA-Z]+)?(?:\^(?:\d|\{\d\}))?")
# Words after a number that are no unit: scales, and words of a phrase ("1/3 of Solomon",
# "one week and 2 days"). A side holding one does not evaluate.
_SCALES = {"hundred", "thousand", "million", "billion", "trillion", "dozen", "percent", "half"}
_KEPT_WORDS = _SCALES | {"of", "and",
               "or", "is", "are", "was", "were", "to", "in", "the", "on", "at", "for", "from", "more", "less",
               "than", "times", "each", "per", "by", "with", "then", "so"}
_MIXED = re.compile(r"\d\s*\\[dt]?frac")
_INT_LITERAL = re.compile(r"(?<![\d.eE])(?<![eE][-+])(\d+)(?![\d.eE])")  # not an exponent's digits
_SAFE = re.compile(r"^(?:[\d.+\-*/() ]|(?<=\d)e)+$")
_WORD_NUM = re.compile(_WNUM)
_WORDED_INSIDE = {"plus", "minus", "times", "by", "and", "of", "than"}
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.eE])")
# "28 \\neq 10", "1 = 7": a comparison of two numbers, and the words that reject one stated with "=".
_COMPARISON = re.compile(r"(-?\d[\d,.]*)\s*(\\neq?(?![a-zA-Z])|≠|=)\s*(-?\d[\d,.]*)")
_REJECTION = re.compile(r"[^=]{0,40}?(?:not true|not equal|false|impossible|a contradiction|"
                        r"not (?:a )?(?:solution|root)|(?:does|is)(?:n't| not) (?:hold|work|satisfy|true))", re.I)
_REJECTION_WINDOW = 300
# Whether a text may reject a candidate at all (one Rust pass): "≠", "\\neq", or the words of _REJECTION.
_REJECTS = (r"\\neq?(?:[^a-zA-Z]|$)|≠|(?i:not true|not equal|false|impossible|contradiction"
            r"|not (?:a )?(?:solution|root)|(?:does|is)(?:n't| not) (?:hold|work|satisfy|true))")
_APPROXIMATE = {"≈", r"\approx", r"\sim"}  # before a chain: its first operands are rounded
_LONE_FRACTION = re.compile(r"\s*\d+\s*/\s*\d+(?:\s+[a-zA-Z]{2,}){1,2}\s*")  # "3/7 Blinkets"
_ADDITIVE = re.compile(r"(?<=[\w)}%])\s*[-+–−]\s*(?=[\w($\\.])")  # a binary + or -, not a sign
_QUOTIENT = re.compile(r"\s*/\s*(?=\\?\$?\s?\d)")
_POST_WORD = re.compile(r"^[ \t]+([a-zA-Z]+)$")
_RANGE = re.compile(r"\s*(\d+)-(\d+)\s*")


def _edge_ok(edge: str, side: str) -> bool:
    """Whether the text around a chain leaves it standing on its own."""
    token = edge.strip()
    if not token:
        return True
    if token.startswith("\\") and len(token) > 1:
        return token in _NEUTRAL_COMMANDS
    if token[0] in _OPERATORS or token in "!'|)}" or token.endswith("(") or token[0].isdigit():
        return False  # inside a larger expression, a product "2(3+4)", a mixed number "1 1/2"
    if side == "post" and token in "([":  # a call or a range opens
        return False
    if len(token) == 1 and token.isalpha() and token not in "aAI":
        return False  # a variable multiplies the chain: "x (1/2 + 1/3) = 5", "= 128 i (-1)^3 = 128 i"
    glued = edge == token  # no space between the chain and this character
    return not (glued and token.isalnum())


def _python(expr: str, percent: float, mixed: str) -> str:
    """A pure-number expression as Python source (floats only: no huge ints). `mixed`: how
    a whole number glued to a fraction reads ("2\\frac{3}{4}": "+" mixed number, "*" product)."""
    text = _FRAC_RE.sub(lambda m: f"({m.group(1) + mixed if m.group(1) else ''}({m.group(2)})/({m.group(3)}))", expr)
    text = _UNIT_WORD.sub(lambda m: m.group(0) if m.group(0).lower() in _KEPT_WORDS else "", text)
    for old, new in ((r"\left", ""), (r"\right", ""), (r"\times", "*"), (r"\cdot", "*"), (r"\div", "/"),
                     ("×", "*"), ("·", "*"), ("÷", "/"), ("–", "-"), ("−", "-"),
                     ("\\$", ""), ("$", ""), ("\\%", "%"), (",", ""), ("{", "("), ("}", ")"), ("^", "**")):
        text = text.replace(old, new)
    text = re.sub(r"\s+x\s+", "*", text)
    text = text.replace("%", f"*{percent}")
    return _INT_LITERAL.sub(r"\1.0", text)


_SIMPLE_NUMBER = (r"(?:\\?\$\s?)?(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+)"
                  r"((?:\s+[a-zA-Z]{2,}(?:/[a-zA-Z]+)?){0,2})")
# Most sides are a number or `a op b` (units and $ aside): computed without building Python source.
_SIMPLE = re.compile(
    rf"\s*{_SIMPLE_NUMBER}\s*(?:([-+*/×÷·–−]|\\times|\\cdot|\\div|(?<=\s)x(?=\s))\s*{_SIMPLE_NUMBER}\s*)?")
_APPLY = {"+": float.__add__, "-": float.__sub__, "–": float.__sub__, "−": float.__sub__, "*": float.__mul__,
          "×": float.__mul__, "·": float.__mul__, "x": float.__mul__, r"\times": float.__mul__,
          r"\cdot": float.__mul__, "/": float.__truediv__, "÷": float.__truediv__, r"\div": float.__truediv__}


def _simple_value(expr: str) -> float | None:
    match = _SIMPLE.fullmatch(expr)
    if match is None:
        return None
    a, units_a, op, b, units_b = match.groups()
    if any(w.lower() in _KEPT_WORDS for w in f"{units_a} {units_b or ''}".replace("/", " ").split()):
        return None  # a phrase word: the general path decides
    left = float(a.replace(",", ""))
    if op is None:
        return left
    try:
        return _APPLY[op](left, float(b.replace(",", "")))
    except ZeroDivisionError:
        return None


@lru_cache(maxsize=200_000)
def _values(expr: str) -> tuple[float, ...]:
    """The expression's values: % read as /100 and as nothing, a whole number before a
    fraction as a mixed number and as a product (duplicates collapse)."""
    simple = _simple_value(expr)
    if simple is not None:
        return (simple,)
    values = []
    readings = [(p, m) for p in ((0.01, 1.0) if "%" in expr else (1.0,))
                for m in (("+", "*") if _MIXED.search(expr) else ("+",))]
    for percent, mixed in readings:
        source = _python(expr, percent, mixed)
        if not _SAFE.match(source.replace("**", "*")) or "***" in source:
            continue
        try:
            value = eval(source, {"__builtins__": {}}, {})  # noqa: S307 - digits, operators, parentheses only
        except (ArithmeticError, SyntaxError, TypeError, ValueError):
            continue
        if isinstance(value, float) and value == value and abs(value) < 1e15:
            values.append(value)
    return tuple(dict.fromkeys(values))


@lru_cache(maxsize=200_000)
def _decimals(expr: str) -> int | None:
    """Decimals of a side that is one stated number (None for an expression)."""
    if _computes(expr):
        return None
    match = re.search(r"\d+(?:\.(\d+))?", expr.replace(",", ""))
    return len(match.group(1) or "") if match else 0


def _holds(left: str, right: str, rounded_places: int = 3) -> bool:
    """Whether `left = right` is true up to the precision the trace shows: a stated number
    with d decimals may be off by < 10^-d (rounded or cut) unless both values are whole, and
    a computed side carries the rounding of the decimals it computes with (`_carried`) that
    have at least `rounded_places` places."""
    lefts, rights = _values(left), _values(right)
    if not lefts or not rights:
        return True  # not evaluable: no evidence either way
    stated = [d for d in (_decimals(left), _decimals(right)) if d is not None]
    if _close(lefts, rights, stated, 0.0) or _is_range(left) or _is_range(right):
        return True
    # Only then the rounding carried by computed sides (most equations hold without it).
    carried = _carried(left, max(map(abs, lefts)), rounded_places) + _carried(right, max(map(abs, rights)),
                                                                              rounded_places)
    return carried > 0 and _close(lefts, rights, stated, carried)


def _close(lefts: tuple[float, ...], rights: tuple[float, ...], stated: list[int], carried: float) -> bool:
    for a in lefts:
        for b in rights:
            tolerance = 1e-9 * max(1.0, abs(a), abs(b)) + carried
            if stated and not (_is_integer(a) and _is_integer(b)):
                tolerance += 10.0 ** -min(stated) * (1 - 1e-9)
            if abs(a - b) <= tolerance:
                return True
    return False


def _carried(side: str, value: float, rounded_places: int) -> float:
    """How far a computed side may be off because it computes with rounded decimals
    ("2*0.0833333 = 0.1666667"): a decimal of d >= `rounded_places` places may be off by
    10^-d, which moves the value by at most that share of it (products, quotients) or by
    10^-d (sums). Shorter decimals (3.5, 0.25) are taken as exact unless the text says
    they are approximate: most are."""
    if _decimals(side) is not None:
        return 0.0  # a stated number: its own precision is the `stated` tolerance
    carried = 0.0
    for whole, places in _DECIMAL_LITERAL.findall(side.replace(",", "")):
        literal = float(f"{whole or 0}.{places}")
        if literal and len(places) >= rounded_places:
            carried += 10.0 ** -len(places) * max(1.0, abs(value) / literal)
    return carried


def _is_range(side: str) -> bool:
    """"4-6" in "columns 4-6 = 0": an unspaced rising pair is a range, not a difference."""
    match = _RANGE.fullmatch(side)
    return match is not None and int(match.group(1)) < int(match.group(2))


def _is_integer(value: float) -> bool:
    return abs(value - round(value)) < 1e-9


def _phrase_tail(pre: str, first: str) -> bool:
    """A lone number after a word ends a phrase, and is no operand of the equation after it:
    "from 0 to 0.5 = (1/3)*(0.125)", "126 - 2 times 6 times 7 = 126 - 84", "one week and
    2 days = 7+2". After "and" a computed side is a phrase's tail too ("1 and 1/4 cup = 1.5 cups")."""
    word = pre.strip()
    return word.replace("'", "").replace("’", "").isalpha() and (not _computes(first) or word == "and")


@lru_cache(maxsize=200_000)
def _computes(side: str) -> bool:
    """Whether a side holds an operation (unit words aside)."""
    return bool(_HAS_OPERATOR.search(_UNIT_WORD.sub("", side)))


def _last_side(side: str) -> str:
    """The last side of a chain up to the first phrase word: "58% of Megan" is "58%"."""
    for word in _UNIT_WORD.finditer(side):
        if word.group(0).lower() in _KEPT_WORDS - _SCALES:
            return side[:word.start()]
    return side


@lru_cache(maxsize=200_000)
def false_equation(chain: str) -> str | None:
    """The first false equation of a matched chain (as it reads), or None. A chain glued to
    an expression before it loses its first equation, one glued after it its last."""
    parts = _CHAIN_PARTS.fullmatch(chain)
    if parts is None or _MODULAR.search(chain):
        return None
    pre, body, post, refuted = parts.groups()
    sides = _SPLIT_EQUALS.split(body)
    whole_last = sides[-1] + post  # the word after the chain is its last side's unit ("56 * (3/28) Trinkets")
    sides[-1] = _last_side(sides[-1])
    pairs = list(zip(sides[:-1], sides[1:], strict=True))
    first = 0 if _edge_ok(pre, "pre") and not _phrase_tail(pre, sides[0]) else 1
    last = len(pairs) if _edge_ok(post, "post") and not refuted else len(pairs) - 1
    for index in range(first, last):
        left, right = pairs[index]
        if not (_computes(left) or _computes(right)):
            continue  # "5 = 5": nothing computed
        if _holds(left, right, 1 if index == 0 and pre.strip() in _APPROXIMATE else 3):
            continue
        right_units = _units(right) if index + 1 < len(pairs) else _units(whole_last) | _units(post, _POST_WORD)
        if not (_converts(left, right, _units(left), right_units) or _partial(left, right)):
            return f"{left.strip()} = {right.strip()}"
    return None


@lru_cache(maxsize=200_000)
def _units(text: str, word: re.Pattern = _UNIT_WORD) -> frozenset[str]:
    """The unit words of a side, singular ("$" as dollar; "km/h" as km and h); none for a
    quotient of like quantities ("$560 / $80 = 5 weeks": a count)."""
    quotient = _QUOTIENT.split(text)
    if len(quotient) == 2 and _units(quotient[0]) == _units(quotient[1]):
        return frozenset()
    words = {w.lower() for unit in word.findall(text) for w in re.split(r"[/^]", unit) if w[:1].isalpha()}
    return frozenset({_singular(w) for w in words - _KEPT_WORDS} | ({"dollar"} if "$" in text else set()))


def _singular(word: str) -> str:
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 2 else word


def _converts(left: str, right: str, left_units: frozenset[str], right_units: frozenset[str]) -> bool:
    """A unit conversion: a quantity, then the same quantity worked out in another unit ("2 days
    = 2 * 24 * 3600 seconds", "$27.47 = 2700 cents + 47 cents", "3/7 Blinkets = 3/7 * 1/4
    Trinkets"): the factor between the units is not written. The right side only scales, or
    adds terms of its one unit; "30 monkeys - 5 = 23 lions" and "15 snakes * 2 = 30 monkeys"
    relate two counts and are checked."""
    if not (left_units and right_units) or left_units & right_units:
        return False
    if _computes(left) and not _LONE_FRACTION.fullmatch(left):
        return False
    term_units = {_units(term) for term in _ADDITIVE.split(right)}
    return len(term_units) == 1 and (frozenset() not in term_units or not _ADDITIVE.search(right))


def _partial(left: str, right: str) -> bool:
    """A running computation: the right side restates the start of the left one, as a step
    toward its value ("256 - 400 + 240 - 36 = 256 - 400 = -144", "8.314*1.1838 = 8.314*1 = ...")."""
    head, whole = re.sub(r"\s+", "", right), re.sub(r"\s+", "", left)
    return len(head) < len(whole) and whole.startswith(head) and _computes(right)


@lru_cache(maxsize=200_000)
def false_worded(phrase: str) -> str | None:
    """The phrase (less what follows its result), when its worded arithmetic is false."""
    before = phrase.split(None, 1)[0].lower()
    if before in _WORDED_INSIDE:
        return None
    phrase = phrase if before[0].isdigit() or before in ("sum", "product", "difference") else phrase.split(None, 1)[1]
    tail = _WORDED_TAIL.search(phrase)
    if tail and (tail.group(1) in _OPERATORS or tail.group(1).lower() in _WORDED_GOES_ON):
        return None  # "16 times 10, which is 2^4 times 5", "9801 plus 99 is 9800 plus 100 minus 1"
    phrase = phrase[:tail.start()] if tail else phrase
    a, b, c = (float(n.replace(",", "").replace("$", "")) for n in _WORD_NUM.findall(phrase)[:3])
    lower = phrase.lower()
    if "sum" in lower or "plus" in lower:
        results = [a + b]
    elif "product" in lower or "times" in lower or "multiplied" in lower:
        results = [a * b]
    elif "difference" in lower:
        results = [a - b, b - a]
    elif "minus" in lower:
        results = [a - b]
    else:
        results = [a / b] if b else []
    stated = _WORD_NUM.findall(phrase)[2]
    decimals = len(stated.split(".", 1)[1]) if "." in stated else 0
    tolerance = 10.0 ** -decimals if any(not _is_integer(r) for r in results) else 1e-9
    if not results or any(abs(r - c) < tolerance for r in results):
        return None
    return phrase.rstrip()


def _judged(matches: pl.Series, check) -> pl.DataFrame:
    """Each distinct match once: (match, error or null)."""
    distinct = matches.unique()
    return pl.DataFrame({matches.name: distinct,
                         "error": pl.Series([check(m) for m in distinct.to_list()], dtype=pl.String)})


def _tested_and_rejected(text: str, chain: str, equation: str) -> bool:
    """Whether the trace states `equation` as a hypothesis it then rejects, with the computed
    side at its true value ("3^2 + 19 = 10 ... 28 \\neq 10", "1 = 3 + 4 ... 1 = 7. That's not
    true"): a candidate checked, not a false step. A rejection of the stated value itself
    ("... = 10 \\neq 0", the trace carrying its own slip forward) is no such test."""
    left, right = equation.split(" = ", 1)
    values = _values(left), _values(right)
    if not all(values):
        return False
    truth = (values[0][0], values[1][0])  # the computed side at its value, the other as stated
    at = text.find(chain)
    window = text[at + len(chain): at + len(chain) + _REJECTION_WINDOW] if at >= 0 else ""
    for comparison in _COMPARISON.finditer(window):
        stated = [_values(side) for side in comparison.group(1, 3)]
        if not all(stated) or any(abs(s[0] - t) > 1e-9 * max(1.0, abs(t)) for s, t in zip(stated, truth, strict=True)):
            continue
        if comparison.group(2) != "=" or _REJECTION.match(window, comparison.end()):
            return True
    return False


def find_false_equations(texts: pl.Series) -> pl.Series:
    """Per text: the list of false equations it states (empty list: none found)."""
    frame = pl.DataFrame({"text": texts}).with_row_index("_row").with_columns(
        chain=pl.col("text").str.extract_all(CHAIN),
        worded=pl.col("text").str.extract_all(WORDED),
    )
    chains = frame.select("_row", "chain").explode("chain").drop_nulls("chain")
    worded = frame.select("_row", "worded").explode("worded").drop_nulls("worded")
    chain_errors = chains.join(_judged(chains["chain"], false_equation), on="chain", maintain_order="left")
    # Flagged chains of texts that reject anything at all (few) are looked at in Python with their text.
    rejecting = frame.filter(pl.col("text").str.contains(_REJECTS))["_row"]
    flagged = chain_errors.drop_nulls("error").filter(pl.col("_row").is_in(rejecting.implode()))
    if flagged.height:
        flagged_texts = texts.gather(flagged["_row"]).to_list()
        rejected = [_tested_and_rejected(text, chain, error)
                    for text, chain, error in zip(flagged_texts, flagged["chain"], flagged["error"], strict=True)]
        kept = flagged.filter(~pl.Series(rejected, dtype=pl.Boolean))
        chain_errors = pl.concat([chain_errors.filter(~pl.col("_row").is_in(rejecting.implode())), kept])
    worded_errors = worded.join(_judged(worded["worded"], false_worded), on="worded", maintain_order="left")
    errors = (pl.concat([chain_errors.select("_row", "error"), worded_errors.select("_row", "error")])
              .drop_nulls("error").group_by("_row", maintain_order=True).agg("error"))
    return (frame.select("_row").join(errors, on="_row", how="left", maintain_order="left")["error"]
            .fill_null(pl.lit([], pl.List(pl.String))).alias("false_equations"))


class ArithmeticCheckConfig(OperatorConfig):
    column: str = Field("completion", description="Text column whose stated arithmetic is re-evaluated.")
    only_correct: bool = Field(
        False, description="Check only traces verified correct (`correct` true); others pass untouched.")
    max_evidence: int = Field(3, ge=1, description="False equations quoted in reject_detail per trace.")


@register
class ArithmeticCheck(Filter[ArithmeticCheckConfig]):
    """Re-evaluate the equations and arithmetic a trace states ("3 * 4 = 12", GSM8K
    <<a*b=c>> annotations, LaTeX \\times \\cdot \\div \\frac, 1,000, 25%, "the sum of 3 and 5
    is 8"); reject a trace that states a false one, quoting it in reject_detail:
    'false_step_correct_answer' when the trace is verified correct (`correct` true: a right
    answer reached through a false step), else 'false_arithmetic'. Deterministic, no model."""

    name = "arithmetic_check"
    Config = ArithmeticCheckConfig
    adds = ("reject_reason", "reject_detail")
    reject_reasons = ("false_arithmetic", "false_step_correct_answer")
    default_chunk_size = 100_000

    def input_columns(self) -> set[str]:
        return {self.config.column} | ({"correct"} if self.config.only_correct else set())

    def apply(self, frame: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        config = self.config
        checked = pl.col(config.column).is_not_null()
        if config.only_correct:
            checked &= pl.col("correct").fill_null(False)
        texts = frame.select(pl.when(checked).then(pl.col(config.column)).alias("t"))["t"]
        errors = find_false_equations(texts)
        flagged = errors.list.len() > 0
        detail = pl.struct(
            false_equations=errors.list.head(config.max_evidence), count=errors.list.len()
        ).struct.json_encode()
        verified = pl.col("correct").fill_null(False) if "correct" in frame.columns else pl.lit(False)
        reason = pl.when(verified).then(pl.lit("false_step_correct_answer")).otherwise(pl.lit("false_arithmetic"))
        result = frame.with_columns(
            reject_reason=pl.when(flagged).then(reason).otherwise(
                pl.col("reject_reason") if "reject_reason" in frame.columns else None).cast(pl.String),
            reject_detail=pl.when(flagged).then(detail).otherwise(
                pl.col("reject_detail") if "reject_detail" in frame.columns else None).cast(pl.String),
        )
        ctx.count("rejected", int(flagged.sum()))
        ctx.count("false_step_correct_answer", int(frame.select((verified & pl.lit(flagged)).sum()).item()))
        ctx.count("checked", int(frame.select(checked.sum()).item()))
        ctx.on_progress(frame.height)
        return result

    @classmethod
    def summary(cls, metrics: dict[str, float]) -> str | None:
        if not metrics.get("checked"):
            return None
        return (f"{int(metrics.get('rejected', 0))} of {int(metrics['checked'])} traces state false arithmetic "
                f"({int(metrics.get('false_step_correct_answer', 0))} of them with a correct answer)")


__all__ = ["ArithmeticCheck", "false_equation", "find_false_equations"]

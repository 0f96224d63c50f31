"""Text keys as polars expressions: normalised text, word tokens, hashed n-grams (the one
n-gram hasher: dedup, decontamination, prune's repetition measure and select_traces'
diversity all use it).

Everything here runs inside polars (no per-row Python), so it scales to millions of
rows. The n-gram hashes use polars' own hash: stable within one process, which is all
they are used for (they are compared, never stored). Content hashes that are stored
(problem_id, trace_id) are in curate.schema.
"""

from __future__ import annotations

import polars as pl

# LaTeX commands that only change spacing or sizing, not content.
_LATEX_SPACING = r"\\[,;:! ]|\\q?quad\b|\\(left|right|big|Big|bigg|Bigg)\b|~"
_MATH_DELIMITERS = r"\$|\\\(|\\\)|\\\[|\\\]"


def _without_thousands_separators(text: pl.Expr) -> pl.Expr:
    # Rust regex has no look-around: each pass joins every other group, three passes
    # cover numbers up to 10^12.
    for _ in range(3):
        text = text.str.replace_all(r"(\d),(\d{3})\b", "${1}${2}")
    return text


def nfkc(text: pl.Expr) -> pl.Expr:
    """Unicode NFKC normal form. ASCII text is its own normal form, and normalising is slow
    (~2 us a string), so only the other rows are normalised."""
    ascii_only = text.str.len_bytes() == text.str.len_chars()
    return pl.coalesce(pl.when(~ascii_only).then(text).str.normalize("NFKC"), text)


def collapsed_text(text: pl.Expr) -> pl.Expr:
    """Unicode (NFKC) normalised text with runs of white space as one space, trimmed: what
    content ids (problem_id) are taken of."""
    return _single_spaced(nfkc(text))


def _single_spaced(text: pl.Expr) -> pl.Expr:
    r"""Runs of white space as one space, trimmed. The same as replacing every run (`\s+`),
    but a lone space, most of what a text has, is not matched and rewritten: ~4x faster."""
    return text.str.replace_all(r"\s\s+|[^\S ]", " ").str.strip_chars()


def normalised_text(text: pl.Expr) -> pl.Expr:
    """Text with formatting removed: Unicode (NFKC), case, whitespace, LaTeX spacing
    and math delimiters, thousands separators and trailing decimal zeros, and spaces
    next to punctuation or operators. Two problems with the same normalised text differ
    only in how they are typeset."""
    text = nfkc(text).str.to_lowercase()
    text = text.str.replace_all(_LATEX_SPACING, " ").str.replace_all(_MATH_DELIMITERS, "")
    text = text.str.replace_all(r"\\[dt]frac\b", r"\frac")
    text = _without_thousands_separators(text)
    text = text.str.replace_all(r"(\d)\.0+\b", "${1}")
    text = text.str.replace_all(r"(\d\.\d*[1-9])0+\b", "${1}")
    text = text.str.replace_all(r"\s*([^\w\s])\s*", "${1}")
    return _single_spaced(text)


def word_tokens(text: pl.Expr) -> pl.Expr:
    """Lower-case alphanumeric tokens (LaTeX commands keep their names, symbols drop)."""
    text = _without_thousands_separators(nfkc(text).str.to_lowercase())
    return text.str.extract_all(r"[^\W_]+")


def words(text: pl.Expr) -> pl.Expr:
    """The text split at spaces and newlines, as written (case and punctuation kept)."""
    split = text.str.replace_all("\n", " ", literal=True).str.split(" ")
    return split.list.eval(pl.element().filter(pl.element().str.len_bytes() > 0))


def _gram_hashes(n: int, whole_if_short: bool) -> pl.Expr:
    """Inside list.eval over tokens: one hash per token n-gram, in order, repeats kept.

    Each token is hashed, and a gram hashes the struct of n consecutive token hashes. With
    `whole_if_short`, a list of fewer than n tokens (but at least one) gives one gram: all
    its tokens; otherwise it gives none.
    """
    token_hash = pl.element().hash(7)
    gram = pl.struct(*[token_hash.shift(-offset).alias(f"t{offset}") for offset in range(n)]).hash(11)
    position = pl.int_range(pl.len())
    starts = position + n <= pl.len()
    if whole_if_short:
        starts = starts | ((position == 0) & (pl.len() < n))
    return gram.filter(starts)


def ngram_hash_list(tokens: pl.Expr, n: int, whole_if_short: bool = True) -> pl.Expr:
    """Per row, the list of hashes of the n-grams of its token list (see _gram_hashes)."""
    return tokens.list.eval(_gram_hashes(n, whole_if_short))


def word_ngram_hashes(text: pl.Expr, n: int) -> pl.Expr:
    """Per text, the hashes of its n-grams of `words` (none for fewer than n words)."""
    return ngram_hash_list(words(text), n, whole_if_short=False)


def ngram_hashes(frame: pl.DataFrame, key: str, tokens: str, n: int) -> pl.DataFrame:
    """Distinct (key, gram) pairs of the n-grams of each row's token list.

    A row with fewer than n tokens (but at least one) gives one gram: all its tokens.
    """
    return (
        frame.select(key, gram=ngram_hash_list(pl.col(tokens), n))
        .explode("gram")
        .drop_nulls("gram")
        .unique()
    )


# --- numbers stated in a problem (dedup's number guard, template ids) --------------------------

# Number words read as numbers. "one" counts except where it is a pronoun ("one of them",
# "no one", "each one": _PRONOUN_ONE), so "one apple" and "1 apple" agree.
_UNITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
NUMBER_WORDS = {
    **{word: str(value) for value, word in enumerate(_UNITS, 1)},
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
    "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
    **{word: str(value) for word, value in _TENS.items()},
    **{f"{tens}{joint}{unit}": str(value + units) for tens, value in _TENS.items()
       for units, unit in enumerate(_UNITS, 1) for joint in ("-", " ")},
    "zero": "0", "one half": "1/2", "one-half": "1/2", "hundred": "100", "thousand": "1000", "million": "1000000",
    "half": "1/2", "twice": "2", "double": "2",
    "triple": "3", "dozen": "12",
}
# A number followed by these words is multiplied ("two hundred" = 200, "1.5 million", "3 dozen").
MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12}
_PRONOUN_ONE = (r"\b(no|any|some|every|each|which|this|that|the|another|loved)\s+one\b"
                r"|\bone(\s+of|\s+another|'s)\b")
_NUMBER = r"\d+ \d+/\d+|\d*\.?\d+(?:/\d+(?:\.\d+)?)?"
_WORD = r"\b(?:" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b"
_NUMBER_OR_WORD = rf"(?:{_NUMBER}|{_WORD})(?:[ -](?:{'|'.join(MULTIPLIERS)})\b)*"


def _number_ready(text: pl.Expr) -> pl.Expr:
    """Lower-cased text where every stated number reads as digits: thousands separators
    (`1,000`, LaTeX `1{,}000`, `1\\,000`) dropped, `\\frac{a}{b}` / `\\dfrac12` written `a/b`,
    a mixed number `3\\frac{4}{5}` as `3 4/5`, unicode fractions (`½`) as `1/2`, `.5` as
    `0.5`, and "one" as a pronoun hidden."""
    text = nfkc(text).str.to_lowercase().str.replace_all(r"\{,\}", ",")
    text = text.str.replace_all("\u2044", "/", literal=True)
    text = text.str.replace_all(r"(\d)\\,(\d{3})\b", "${1}${2}").str.replace_all(_PRONOUN_ONE, "${1} un${2}")
    text = _without_thousands_separators(text.str.replace_all(_LATEX_SPACING, " "))
    fraction = r"\\[dt]?frac\s*\{\s*(\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}"
    text = text.str.replace_all(r"(\d)\s*" + fraction, "${1} ${2}/${3}").str.replace_all(fraction, " ${1}/${2}")
    text = text.str.replace_all(r"\\[dt]?frac\s*(\d)\s*(\d)", " ${1}/${2}")
    return text.str.replace_all(r"(^|[^\d.])\.(\d)", "${1}0.${2}")


def _number_value(match: pl.Expr) -> pl.Expr:
    """Inside list.eval over matches of _NUMBER_OR_WORD: each one's value (10 significant
    digits): a mixed number's whole part plus its fraction, times its multipliers."""
    number = match.str.replace_all(r"[ -](?:" + "|".join(MULTIPLIERS) + r")\b", "").replace(NUMBER_WORDS)
    whole = number.str.extract(r"^(\d+) ", 1).cast(pl.Float64).fill_null(0.0)
    numerator = number.str.extract(r"(\d*\.?\d+)(?:/|$)", 1).cast(pl.Float64)
    denominator = number.str.extract(r"/(\d+(?:\.\d+)?)$", 1).cast(pl.Float64).fill_null(1.0)
    value = whole + pl.when(denominator != 0).then(numerator / denominator).otherwise(numerator)
    for word, factor in MULTIPLIERS.items():
        times = match.str.count_matches(rf"[ -]{word}\b")
        value = value * pl.lit(float(factor)).pow(times)
    return value.round_sig_figs(10)


def number_sequence(text: pl.Expr) -> pl.Expr:
    """The values of the numbers a text states, in order of appearance, repeats kept, as
    floats (10 significant digits): `1,000`, `1000` and `1000.0` are one value;
    `\\frac{1}{2}`, `1/2`, `0.5`, `½` and "half" another; `3\\frac{4}{5}` and `3 4/5` are
    3.8; number words count ("twenty-five", "one", "two hundred", "a dozen"). Signs are
    ignored ("3-4" reads as 3 and 4)."""
    return _number_ready(text).str.extract_all(_NUMBER_OR_WORD).list.eval(_number_value(pl.element()))


def number_contexts_key(text: pl.Expr) -> pl.Expr:
    """Each stated number with the word right after it ("3 pages" -> "3.0 page"), sorted,
    joined: equal for texts that state the same numbers of the same things in another
    order ("a 3-page letter to 2 friends" vs "to 2 friends, a letter of 3 pages"), unequal
    when two numbers trade places ("20 pizzas ... 70%" vs "70 pizzas ... 20%")."""
    matches = _number_ready(text).str.extract_all(rf"(?:{_NUMBER_OR_WORD})(?:[ -]*[a-z]+|%)?")
    number = pl.element().str.extract(rf"^({_NUMBER_OR_WORD})", 1)
    after = pl.element().str.slice(number.str.len_chars()).str.strip_chars(" -").str.replace(r"([^s])s$", "${1}")
    pairs = matches.list.eval(pl.concat_str(_number_value(number).cast(pl.String), pl.lit(" "), after))
    return pairs.list.sort().list.join("|")


def number_values(text: pl.Expr) -> pl.Expr:
    """The distinct values of number_sequence, sorted."""
    return number_sequence(text).list.unique().list.sort()


def number_key(text: pl.Expr) -> pl.Expr:
    """number_sequence as one string ("" when the text states no number): equal keys, the
    same numbers in the same order."""
    return number_sequence(text).cast(pl.List(pl.String)).list.join(" ")


def template_text(text: pl.Expr) -> pl.Expr:
    """normalised_text with every stated number (digits, fractions, small number words)
    replaced by `#`: problems that differ only in their numbers share it."""
    masked = _number_ready(text).str.replace_all(_NUMBER_OR_WORD, "#")
    return normalised_text(masked.str.replace_all(r"#(?:[\s,.]*#)*", "#"))


def template_id(text: pl.Expr) -> pl.Expr:
    """A 16-hex-digit id of template_text (stable across processes: xxh3 of the text)."""
    return template_text(text).map_batches(_stable_hashes, return_dtype=pl.String)


def _stable_hashes(series: pl.Series) -> pl.Series:
    import xxhash

    return pl.Series([None if t is None else xxhash.xxh3_64_hexdigest(t.encode()) for t in series.to_list()],
                     dtype=pl.String)


def template_tokens(text: pl.Expr) -> pl.Expr:
    """word_tokens with every stated number (as number_values reads them) as the token "0":
    n-grams of these match across problems that differ only in their numbers. A run of
    numbers ("2^3 - 1^3 + 4^3") is one token, so formulas do not make generic n-grams."""
    tokens = word_tokens(_number_ready(text).str.replace_all(_NUMBER_OR_WORD, " 0 "))
    repeated_number = (pl.element() == "0") & (pl.element().shift(1) == "0")
    return tokens.list.eval(pl.element().filter(~repeated_number.fill_null(False)))


def question_sentence(text: pl.Expr) -> pl.Expr:
    """The sentences a problem asks in: those with a question mark, else the last sentence
    (lower-cased, numbers as _number_ready writes them)."""
    sentences = _number_ready(text).str.replace_all(r"([.?!])\s+", "${1}\x1f").str.split("\x1f")
    asked = sentences.list.eval(pl.element().filter(pl.element().str.contains("?", literal=True))).list.join(" ")
    last = sentences.list.eval(pl.element().filter(pl.element().str.strip_chars() != "").last()).list.first()
    return pl.when(asked != "").then(asked).otherwise(last)

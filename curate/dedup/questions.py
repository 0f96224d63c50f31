"""What a problem asks: two math problems with the same numbers are the same problem only if
they ask the same question.

An embedding barely moves when one word of the question changes ("how many more cherries
does Robert have than Jerry?" vs "... have in total?": cosine 0.988), and number checks
cannot see it. Two checks on the question sentence (`question_sentence`) that paraphrases
(synonyms, renamed people, case, punctuation, reordered statements) pass:
- its question words (QUESTION_WORDS: comparisons, extremes, operations, money, units of
  time, kinds of number ...), mapped to one concept per group of synonyms: one question
  may name a concept the other leaves implied, but not trade one for another;
- no content word asked about in one text may be stated in the other text outside its
  question ("how many does Jerry have?" vs "... Robert ...?" when both texts name both):
  a renamed person or a synonym is absent from the other text altogether.
"""

from __future__ import annotations

import polars as pl

from curate.text import question_sentence

# Concept -> the words (singular stems: a final "s" is dropped from words of 4+ letters) that ask it.
_CONCEPTS = {
    "more": "more greater larger bigger higher longer taller older heavier farther further exceed extra",
    "less": "less fewer smaller lower shorter younger lighter cheaper",
    "max": "maximum max largest greatest biggest highest most maximize maximal longest tallest oldest",
    "min": "minimum min smallest least lowest fewest minimize minimal shortest youngest",
    "total": "total overall altogether combined together sum all",
    "product": "product multiply multiplied",
    "difference": "difference",
    "quotient": "quotient",
    "remainder": "remainder remain remaining left leftover rest",
    "average": "average mean",
    "median": "median", "mode": "mode",
    "percent": "percent percentage",
    "fraction": "fraction", "ratio": "ratio",
    "probability": "probability chance likely likelihood",
    "cost": "cost price priced spend spent pay paid expense",
    "earn": "earn earned earning revenue income wage salary",
    "sell": "sell sold sale",
    "profit": "profit net gain",
    "loss": "loss lose lost",
    "save": "save saved saving",
    "buy": "buy bought purchase purchased",
    "cent": "cent",
    "each": "each every per apiece",
    "increase": "increase increased rise grow", "decrease": "decrease decreased drop fall reduce discount",
    "before": "before", "after": "after", "first": "first", "last": "last", "not": "not",
    **{word: word for word in (
        "area perimeter volume circumference radius diameter length width height distance speed weight age "
        "minute hour day week month year positive negative nonnegative odd even prime composite integer real "
        "rational irrational complex digit factor multiple divisor square cube root").split()},
}
QUESTION_WORDS = {word: concept for concept, words in _CONCEPTS.items() for word in words.split()}
# Words that carry no content of their own (question words, pronouns, auxiliaries, generic verbs).
STOP_WORDS = frozenset("""a an the of in on at to for with by from and or but if then that this these those it
its he she they them his her hers their him we us you your i my me our as so than there here which who whom whose
what when where why how many much number is are was were be been being do does did done have has had will would
can could shall should may might must any some such own same other another also just only very too s t let
given money dollar make made find compute determine calculate evaluate simplify express answer value possible
time into out up down over about one un""".split())


def _stems(words: pl.Expr) -> pl.Expr:
    """Content words (stop words dropped), a final "s" of 4+ letter words dropped, repeats kept."""
    content = pl.element().filter(~pl.element().is_in(list(STOP_WORDS)))
    plural = pl.element().str.len_chars() >= 4
    stem = pl.when(plural).then(pl.element().str.replace(r"([^s])s$", "${1}")).otherwise(pl.element())
    return words.list.eval(content).list.eval(stem).list.eval(content)


def _concepts(words: pl.Expr) -> pl.Expr:
    """The concepts of these words, each occurrence numbered ("total#1", "total#2"): set
    operations on them compare counts, so trading one of two "profit"s for "revenue" shows."""
    concepts = words.list.eval(pl.element().replace_strict(QUESTION_WORDS, default=None).drop_nulls())
    occurrence = pl.element().cum_count().over(pl.element()).cast(pl.String)
    return concepts.list.eval(pl.concat_str(pl.element(), pl.lit("#"), occurrence))


def question_keys(text: pl.Expr) -> list[pl.Expr]:
    """Per text: its question's concepts (`question_concepts`) and other content words
    (`question_words`), and the whole text's other content words (`content_words`)."""
    asked = question_sentence(text).str.replace_all(r"\bin all\b", "altogether")
    question = _stems(asked.str.extract_all("[a-z]+"))
    words = _stems(text.str.to_lowercase().str.extract_all("[a-z]+"))
    plain = pl.element().filter(~pl.element().is_in(list(QUESTION_WORDS)))
    return [
        _concepts(question).alias("question_concepts"),
        question.list.eval(plain).list.unique().alias("question_words"),
        words.list.eval(plain).list.unique().alias("content_words"),
    ]


def same_question(left: str = "left_", right: str = "right_") -> pl.Expr:
    """On a frame of pairs holding question_keys with these prefixes: the two texts ask the
    same question. Not when each question asks a concept the other question does not
    ("how many more" vs "in total", profit vs revenue, minimum vs maximum: a concept only
    one side names may be implied, "the least positive integer" vs "the smallest
    positive"), nor when each question asks about a word the other text states only
    outside its question (Robert's cherries vs Jerry's): a question reworded around a
    pronoun still agrees."""
    def only(one: str, other: str) -> pl.Expr:
        return pl.col(f"{one}question_concepts").list.set_difference(pl.col(f"{other}question_concepts")).list.len() > 0

    def moved(one: str, other: str) -> pl.Expr:
        asked_only = pl.col(f"{one}question_words").list.set_difference(pl.col(f"{other}question_words"))
        return asked_only.list.set_intersection(pl.col(f"{other}content_words")).list.len() > 0

    return ~(only(left, right) & only(right, left)) & ~(moved(left, right) & moved(right, left))

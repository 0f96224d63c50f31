"""Issue 17: numbers are part of a math problem's identity (number guard, template ids),
decontamination evidence that ignores boilerplate, trace_dedup by banded LSH."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from curate.core.operator import StepContext, split_rejections
from curate.dedup.operators import (
    GUARD_FILE,
    REPORT_FILE,
    Decontaminate,
    SemanticDedup,
    TemplateCap,
    TraceDedup,
    _minhash_pairs,
    _rows_per_band,
)
from curate.text import number_key, number_values, template_id

GSM = ("Natalia sold clips to {a} of her friends in April, and then she sold half as many clips in May. "
       "How many clips did Natalia sell altogether in April and May if each clip cost {b} dollars?")


@pytest.fixture
def ctx(tmp_path):
    return StepContext(step_id="dedup", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")


def frame_of(texts: list[str], **columns) -> pl.DataFrame:
    return pl.DataFrame({"problem": texts, "problem_id": [f"p{i}" for i in range(len(texts))], **columns})


def values(texts: list[str]) -> list[list[float]]:
    return pl.DataFrame({"t": texts}).select(number_values(pl.col("t")))["t"].to_list()


def test_number_values_agree_across_formats_and_differ_on_a_changed_number():
    same = ["He paid 1,000 dollars for 1/2 of it and two books.",
            "He paid 1000.0 dollars for $\\frac{1}{2}$ of it and 2 books.",
            "He paid $1{,}000$ dollars for \\dfrac12 of it and TWO books.",
            "He paid 1000 dollars for 0.5 of it and 2.00 books."]
    assert all(v == [0.5, 2.0, 1000.0] for v in values(same))
    changed = values(["He paid 1,001 dollars for 1/2 of it and two books.", "He paid 1000 dollars for 1/3 of it."])
    assert changed[0] != [0.5, 2.0, 1000.0] and changed[1] == [pytest.approx(1 / 3), 1000.0]
    keys = pl.DataFrame({"t": same + ["No numbers at all.", None]}).select(number_key(pl.col("t")))["t"].to_list()
    assert len(set(keys[:4])) == 1 and keys[4] == "" and keys[5] is None


def test_template_id_masks_numbers_only():
    texts = [GSM.format(a=48, b=3), GSM.format(a="1,200", b="2.5"), GSM.format(a=48, b=3).replace("clips", "pens")]
    ids = pl.DataFrame({"t": texts}).select(template_id(pl.col("t")))["t"].to_list()
    assert ids[0] == ids[1] != ids[2]


def test_semantic_dedup_number_guard_keeps_changed_numbers_apart(ctx):
    texts = [GSM.format(a=48, b=3), GSM.format(a="48.0", b=3).lower(), GSM.format(a=56, b=3),
             GSM.format(a=48, b=4)]
    frame = frame_of(texts, domain=["math"] * 4)
    op = SemanticDedup(SemanticDedup.Config(threshold=0.9))
    op.setup(ctx)
    _, rejected = split_rejections(op.apply(frame, ctx))
    assert rejected["problem_id"].to_list() == ["p1"]  # same numbers, other case
    assert ctx.metrics["number_guard_pairs"] >= 2
    pairs = pl.read_parquet(ctx.step_dir / GUARD_FILE)
    assert {"p2", "p3"} <= set(pairs["problem_id"]) | set(pairs["other_problem_id"])
    assert (pairs["similarity"] >= 0.9).all() and (pairs["numbers"] != pairs["other_numbers"]).all()
    # Switched off, or on code rows under auto, a changed number is a duplicate again.
    off = SemanticDedup(SemanticDedup.Config(threshold=0.9, number_guard="off"))
    off.setup(ctx)
    assert split_rejections(off.apply(frame, ctx))[1].height == 3
    code = op.apply(frame.with_columns(domain=pl.lit("code")), ctx)
    assert split_rejections(code)[1].height == 3


def test_template_cap_keeps_or_caps_per_template(ctx):
    texts = [GSM.format(a=48, b=3), GSM.format(a=50, b=3), GSM.format(a="forty", b=7), "An unrelated problem: 2+2?"]
    annotated = TemplateCap(TemplateCap.Config()).apply(frame_of(texts), ctx)
    assert annotated["reject_reason"].null_count() == 4 and annotated["template_id"].n_unique() == 2
    capped = TemplateCap(TemplateCap.Config(max_per_template=2)).apply(frame_of(texts), ctx)
    _, rejected = split_rejections(capped)
    assert rejected["problem_id"].to_list() == ["p2"]
    assert json.loads(rejected["reject_detail"][0]) == {"same_template_as": "p0"}


def test_decontaminate_ignores_boilerplate_and_reports_templates_apart(ctx, tmp_path):
    boilerplate = ("The probability is $\\frac{m}{n}$, where $m$ and $n$ are relatively prime positive integers. "
                   "Find $m+n$.")
    evals = [f"A fair die number {k} is rolled until a {k} shows; count rolls of colour {c}. {boilerplate}"
             for k, c in [(1, "red"), (2, "blue"), (3, "green"), (4, "pink")]]
    evals.append(GSM.format(a=48, b=3))
    path = tmp_path / "evals.jsonl"
    path.write_text("".join(json.dumps({"problem": p, "id": i}) + "\n" for i, p in enumerate(evals)))
    pool = [f"Two {thing} cards are drawn from a deck of {n} without replacement, one after the other. {boilerplate}"
            for thing, n in [("red", 52), ("black", 40), ("face", 36), ("odd", 30), ("even", 20), ("high", 12),
                             ("low", 10), ("prime", 8), ("square", 6), ("blank", 4)]]
    pool += ["Problem: " + GSM.format(a=48, b=3), GSM.format(a=60, b=5)]
    op = Decontaminate(Decontaminate.Config(eval_sets=[str(path)], methods=["ngram"]))
    op.setup(ctx)
    _, rejected = split_rejections(op.apply(frame_of(pool), ctx))
    assert rejected["problem_id"].to_list() == ["p10", "p11"]
    assert rejected["reject_reason"].to_list() == ["contaminated", "same_template"]
    detail = json.loads(rejected["reject_detail"][0])
    assert detail["match"] == "same_problem" and detail["shared_ngrams"] > 10 and detail["eval_id"] == "4"
    report = pl.read_parquet(ctx.step_dir / REPORT_FILE)
    assert set(report["match"]) == {"same_problem", "same_template"}
    assert {"shared_ngrams", "common_ngrams", "numbers", "eval_numbers", "score"} <= set(report.columns)
    assert ctx.metrics["common_ngrams"] > 0
    # Either guard alone keeps the ten clean problems; without both, the boilerplate flags them.
    for share, overlap, flagged in [(0.01, 0.0, 2), (1.0, 0.25, 2), (1.0, 0.0, 12)]:
        loose = Decontaminate(Decontaminate.Config(eval_sets=[str(path)], methods=["ngram"],
                                                   common_ngram_share=share, min_overlap=overlap))
        loose.setup(ctx)
        assert split_rejections(loose.apply(frame_of(pool), ctx))[1].height == flagged
    # same_template: report keeps the template match (listed in the report only).
    report_only = Decontaminate(Decontaminate.Config(eval_sets=[str(path)], methods=["ngram"], same_template="report"))
    report_only.setup(ctx)
    assert split_rejections(report_only.apply(frame_of(pool), ctx))[1]["problem_id"].to_list() == ["p10"]


def test_trace_dedup_candidates_are_linear_in_a_group_of_identical_traces(ctx):
    count = 3000
    text = "Let me add the numbers one by one and check each partial sum twice before going on. " * 4
    traces = [text + f" The answer is {i}." for i in range(count)]
    valid = pl.DataFrame({"unit": np.arange(count, dtype=np.uint32), "text": traces, "group": ["g"] * count})
    pairs = _minhash_pairs(valid, 5, 128, 0.8)
    bands = 128 // _rows_per_band(128, 0.8)
    assert pairs.height <= 2 * count * bands  # all pairs would be 4.5 million
    frame = pl.DataFrame({"problem_id": ["g"] * count, "trace_id": [f"t{i}" for i in range(count)],
                          "completion": traces})
    _, kept, rejected = (lambda out: (out, *split_rejections(out)))(TraceDedup(TraceDedup.Config()).apply(frame, ctx))
    assert kept.height == 1 and rejected.height == count - 1


def test_rows_per_band_keeps_recall_at_the_threshold():
    for threshold in (0.5, 0.8, 0.95):
        rows = _rows_per_band(128, threshold)
        assert 1 - (1 - threshold**rows) ** (128 // rows) >= 0.99
        assert 1 - (1 - threshold ** (rows + 1)) ** (128 // (rows + 1)) < 0.99 or rows == 128


# --- issue 35: numbers in order, number words and LaTeX, the question ---------------------------

def keys_of(texts: list[str]) -> list[str]:
    return pl.DataFrame({"t": texts}).select(number_key(pl.col("t")))["t"].to_list()


def test_number_words_and_latex_forms_read_as_their_digits():
    same = [["He has twenty-five apples, one pear and two hundred plums.", "He has 25 apples, 1 pear and 200 plums."],
            ["Add $3\\frac{4}{5}$ and $\\dfrac{1}{2}$ to $1\\,000$.", "Add 3 4/5 and 1/2 to 1000.",
             "Add 3.8 and .5 to 1,000."],
            ["It costs $1.5 million for 2 dozen, a thousand and ½.", "It costs $1,500,000 for 24, 1000 and 0.5."]]
    for texts in same:
        assert len(set(keys_of(texts))) == 1, texts
    # "one" as a pronoun is no number.
    assert keys_of(["One of the 3 boys left.", "No one of the 3 boys left."]) == ["3.0", "3.0"]


def test_number_key_is_the_numbers_in_order_with_repeats():
    original = "Ann buys 5 pens at $3 each and 3 books. How many items?"
    to_stated = "Ann buys 5 pens at $3 each and 5 books. How many items?"
    swapped = "Ann buys 3 pens at $5 each and 3 books. How many items?"
    keys = keys_of([original, to_stated, swapped])
    assert keys[0] == "5.0 3.0 3.0" and len(set(keys)) == 3
    assert values([original, to_stated])[0] == values([original, to_stated])[1] == [3.0, 5.0]  # sets agree


EDGE_PAIRS = [  # (original, variant, duplicate?)
    ("Robert has 5 cherries and Jerry has 3 more cherries than Robert. How many more cherries does Jerry have than "
     "Robert?", "Robert has 5 cherries and Jerry has 3 more cherries than Robert. How many cherries do they have in "
     "total?", False),
    ("Find the minimum value of $x^2-14x+3$.", "Find the maximum value of $x^2-14x+3$.", False),
    ("Tom sells 20 cups of lemonade for $2 each. Each cup costs him $0.5 to make. How much profit does he make?",
     "Tom sells 20 cups of lemonade for $2 each. Each cup costs him $0.5 to make. How much revenue does he make?",
     False),
    ("Jack had $100. Sophia gave him 1/5 of her $60. How many dollars does Jack have now?",
     "Jack had $100. Sophia gave him 1/5 of her $60. How many dollars does Sophia have now?", False),
    ("The glee club ordered 20 pizzas and ate 70% of them. The team ordered twice as many pizzas and ate 80% of "
     "them. How many pizzas are left?", "The glee club ordered 70 pizzas and ate 20% of them. The team ordered "
     "twice as many pizzas and ate 80% of them. How many pizzas are left?", False),
    ("Mia has 12 apples and 5 pears. She gives 5 apples to Leo. How many apples does Mia have left?",
     "Mia has 12 apples and 5 pears. She gives 12 apples to Leo. How many apples does Mia have left?", False),
    ("Mia has 12 apples and 5 pears. She gives 3 apples to Leo. How many apples does Mia have left?",
     "Mia has twelve apples and five pears. She gives three apples to Leo. How many apples does Mia have left?",
     True),
    ("A recipe needs $3\\frac{1}{2}$ cups of flour for every $\\dfrac{4}{7}$ of a batch. How many cups of flour are "
     "needed for 2 batches?", "A recipe needs 3 1/2 cups of flour for every 4/7 of a batch. How many cups of flour "
     "are needed for 2 batches?", True),
]


def test_semantic_dedup_keeps_apart_other_questions_and_moved_numbers(ctx):
    op = SemanticDedup(SemanticDedup.Config(threshold=0.85))
    op.setup(ctx)
    for original, variant, duplicate in EDGE_PAIRS:
        out = op.apply(frame_of([original, variant], domain=["math", "math"]), ctx)
        assert (out["reject_reason"][1] is not None) == duplicate, (original, variant)
    pairs = pl.read_parquet(ctx.step_dir / GUARD_FILE)
    assert pairs.height == 0 or {"question", "other_question"} <= set(pairs.columns)


def test_decontaminate_needs_the_numbers_in_order_and_the_same_question(ctx, tmp_path):
    evals = ["Find the remainder when $2^{10}$ is divided by 3.", EDGE_PAIRS[0][0], EDGE_PAIRS[2][0]]
    path = tmp_path / "evals.jsonl"
    path.write_text("".join(json.dumps({"problem": p, "id": i}) + "\n" for i, p in enumerate(evals)))
    pool = ["Find the remainder when $3^{10}$ is divided by 2.", EDGE_PAIRS[0][1], EDGE_PAIRS[2][1],
            "Problem 7: " + EDGE_PAIRS[2][0].lower()]
    op = Decontaminate(Decontaminate.Config(eval_sets=[str(path)], methods=["ngram", "template"]))
    op.setup(ctx)
    out = op.apply(frame_of(pool), ctx)
    reasons = out["reject_reason"].to_list()
    assert reasons[0] == "same_template" and reasons[3] == "contaminated"
    # Another question: at most the same template (an n-gram match may or may not find it), never the same problem.
    assert reasons[2] == "same_template" and reasons[1] != "contaminated"

"""Answer extraction from traces and reference parsing of MATH-500 / GSM8K (fixture copies)."""

import json
from pathlib import Path

import pytest

from curate.answers.extract import (
    answer_extractor,
    answer_is,
    choice_letter,
    extract_code,
    gsm8k_reference,
    last_boxed,
    last_number,
    math_reference,
)
from curate.answers.math import verify_pairs

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
MATH500 = Path(__file__).parent.parent / "curate" / "data" / "math500" / "test.jsonl"  # bundled, whole


def test_last_boxed_takes_the_last_and_balances_braces():
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{a}{b^{2}}} end") == r"\frac{a}{b^{2}}"
    assert last_boxed(r"\boxed{unclosed") is None


def test_answer_is_stops_at_the_sentence_and_skips_prose():
    assert answer_is("So the answer is $\\frac{1}{2}$. Done.") == "\\frac{1}{2}"
    assert answer_is("Final Answer: 42") == "42"
    assert answer_is("I checked: the answer is correct.") is None
    assert answer_is("the answer is that three boxes hold nothing at all") is None


def test_choice_and_last_number():
    assert choice_letter("Comparing the options, the answer is (c).") == "C"
    assert choice_letter("Reasoning...\n(B)\n") == "B"
    assert last_number("costs 1,200 dollars, then 3/4 of it") == "3/4"


def test_extractor_tries_methods_in_order_and_reports_the_method():
    extract = answer_extractor(["boxed", "gsm8k", "answer_is", "last_number"])
    assert extract("so #### 1,234") == ("1234", "gsm8k")
    assert extract(r"the answer is 7, i.e. \boxed{7}") == ("7", "boxed")
    assert extract("we get 5 and then 6") == ("6", "last_number")
    assert extract("no digits here") == (None, None)
    custom = answer_extractor(["regex"], pattern=r"ANSWER=(\w+)")
    assert custom("ANSWER=x ... ANSWER=y") == ("y", "regex")
    with pytest.raises(ValueError, match="needs a pattern"):
        answer_extractor(["regex"])
    with pytest.raises(ValueError, match="unknown extraction methods"):
        answer_extractor(["boxd"])


def test_extract_code_prefers_the_last_python_block():
    text = "```python\nx = 1\n```\ntext\n```python\ndef f():\n    return 2\n```"
    assert extract_code(text) == ("def f():\n    return 2\n", "code_block")
    assert extract_code("def f(): return 1") == ("def f(): return 1", "raw")


def test_math500_reference_parsing_covers_every_record():
    records = [json.loads(line) for line in MATH500.read_text().splitlines()]
    assert len(records) == 500
    boxed = [math_reference(r["solution"]) for r in records]
    assert all(b is not None for b in boxed)
    # The boxed answer of the solution is the same answer as the dataset's `answer` field.
    verdicts = verify_pairs([(r["answer"], b) for r, b in zip(records, boxed, strict=True)], timeout_s=5)
    assert [i for i, v in enumerate(verdicts) if v.correct is not True] == []


def test_gsm8k_reference_parsing_covers_every_record():
    records = [json.loads(line) for line in (FIXTURES / "gsm8k_test_300.jsonl").read_text().splitlines()]
    finals = [gsm8k_reference(r["answer"]) for r in records]
    assert len(finals) == 300
    for record, final in zip(records, finals, strict=True):
        assert final is not None and float(final) == float(final), record["question"][:60]
        assert "," not in final

"""arithmetic_check on the shapes of real long chains of thought (issue 35): true equations
written the way reasoning models write them are not flagged; false ones still are; a false
step in a trace verified correct gets its own reason."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import StepContext
from curate.prune.arithmetic import ArithmeticCheck, find_false_equations

SKYT1 = Path(__file__).parent / "fixtures" / "verify" / "traces" / "math500_skyt1_27b_longcot.sample.jsonl"


@pytest.mark.parametrize("text", [
    # running sums and partial products chained with "="
    "Then R*T = 8.314*1.1838 = 8.314*1 = 8.314, plus 8.314*0.1838 = 1.528",
    "Sum: 1 + 3 + 5 + 9 + 9 + 9 = 1 + 3 = 4, 4 + 5 = 9, 9 + 9 = 18",
    "p(4) = 4^4 - 25*4^2 + 60*4 - 36 = 256 - 400 + 240 - 36 = 256 - 400 = -144; -144 + 240 = 96",
    # unit conversions: the factor between the units is not written
    "The time is 2 days = 2 * 24 * 3600 seconds = 172800 seconds.",
    "So, speed = 0.4 km/h = 0.4 * 1000 m/h = 400 m/h",
    "Linda: $27.47 = 2700 cents + 47 cents",
    "so 56 Drinkets = 56 * (3/28) Trinkets = 6 Trinkets",
    "That means 3/7 Blinkets = 3/7 * 1/4 Trinkets.",
    "is 6 * (1 ft)^2 = 6 ft^2, then 6 ft^2 * 144 = 864 in^2.",          # the square is the unit's
    # rounded intermediates
    "So 2*0.0833333 = 0.1666667 hours.",
    "W = 200/π ≈ 63.66 meters, so A ≈ 63.66 * 100 = 6366.19 square meters",   # "≈": rounded operands
    # modular arithmetic
    "Then 2^10 = 1024 ≡ 4 mod 10, and 3*7 = 21 = 1 mod 10",
    "The inverse of 3 is 7, since 3 * 7 = 1 mod 10.",
    # a number that ends a phrase: evaluation bounds, worded products
    "the integral of r^3 from 0 to 0.5 = (1/3)*(0.125)",
    "Plugging in the numbers: 126 - 2 times 6 times 7 = 126 - 84 = 42 inches.",
    "sum from 105 to 196 = 406 - 105 = 301",
    "and 160 is 16 times 10, which is 2^4 times 2 times 5",
    # scientific notation, ranges, roots, mixed numbers
    "The mass is 71.92e4 = 719200 grams, and 2.5e3 * 2 = 5000.",
    "Rows 1-3 are full and columns 4-6 = 0 in the matrix.",
    "So the side is √(81/16) = 9/4.",
    "Again, 15.975 = 15 39/40 = 639/40 inches.",
    # a quotient of like quantities is a count, not a conversion to check away
    "It will take her $560 / $80 = 7 weeks to earn enough money.",
    # a variable multiplies the chain
    r"the equation as \(x \left( \frac{1}{2} + \frac{1}{3} \right) = 5\)",
    r"(2i)^7 = 2^7 i^7 = 128 i^7 = 128 i (-1)^3 = 128 i (-1) = -128 i",
    # the worded result goes on
    "9801 plus 99 is 9800 plus 100 minus 1, so 9900 minus 1, which is 9899.",
    # a candidate substituted and rejected, the computed side at its true value
    "Testing x = 1:\n\\[\n3^2 + 19 = 10\n\\]\n\\[\n9 + 19 = 10\n\\]\n\\[\n28 \\neq 10\n\\]\n"
    "So x = 1 is not a solution.",
    "\\[ 1 = 3 + 4 \\]\n\n\\[ 1 = 7 \\]\n\nThat's not true. So, x = 1 is an extraneous solution.",
    r"1 = \sqrt{9} + 4 \implies 1 = 3 + 4 \implies 1 = 7 \quad \text{(not true)}",
])
def test_true_long_cot_equations_are_not_flagged(text):
    assert find_false_equations(pl.Series([text])).to_list() == [[]]


@pytest.mark.parametrize("text, evidence", [
    ("She earns $35/hour * 3 hours = $102 in total.", "$35/hour * 3 hours = $102"),
    ("It will take her $560 / $80 = 5 weeks to earn enough money.", "$560 / $80 = 5 weeks"),
    ("so 3 - 8 = -4 and", "3 - 8 = -4"),
    ("we get 2*0.0833333 = 0.1766667", "2*0.0833333 = 0.1766667"),
    ("The time is 2 days = 2 * 24 * 3600 seconds = 172000 seconds.", "2 * 24 * 3600 seconds = 172000 seconds"),
    ("Sum: 1 + 3 + 5 + 9 = 1 + 3 = 5", "1 + 3 = 5"),
    ("Then 3 * 4.5 = 13.8 and", "3 * 4.5 = 13.8"),  # a short decimal is exact
    ("so the mass is 2.5e3 * 2 = 6000 grams", "2.5e3 * 2 = 6000 grams"),
    ("so that's 6*.5 = 4 pounds of meat", "6*.5 = 4 pounds"),           # "that's" is no variable
    ("so 5 times 3 is 16 apples.", "5 times 3 is 16"),
    # the trace carries its own slip into the rejection: no candidate test, a false step
    ("P(-2) = 16 - 40 + 36 + 2 - 14 = 10 \\neq 0, so -2 is not a root.", "16 - 40 + 36 + 2 - 14 = 10"),
    ("Hence: 1 = 3 + 4, and so 1 = 7 as we wanted.", "1 = 3 + 4"),  # restated, never rejected
    # counts of two kinds related by a computation are no unit conversion
    ("The zoo has 15 snakes * 2 = 31 monkeys.", "15 snakes * 2 = 31 monkeys"),
    ("It has 30 monkeys - 5 = 24 lions.", "30 monkeys - 5 = 24 lions"),
    ("In all 5 cats + 15 dogs + 1 bird = 22 pets", "5 cats + 15 dogs + 1 bird = 22 pets"),
    ("Linda: $27.47 = 2700 cents + 48", "$27.47 = 2700 cents + 48"),
])
def test_false_equations_in_the_same_shapes_are_still_found(text, evidence):
    assert find_false_equations(pl.Series([text])).to_list() == [[evidence]]


def test_a_false_step_in_a_correct_trace_has_its_own_reason(tmp_path):
    """Sky-T1 on MATH-500 #244, graded correct: it writes 6 + 17/18 = 113/18 (it is 125/18)."""
    record = next(r for r in map(json.loads, SKYT1.read_text().splitlines()) if r["idx"] == 244)
    text = record["code"][0]
    frame = pl.DataFrame({"completion": [text, text, "3 * 4 = 12"], "correct": [True, False, True]})
    ctx = StepContext(step_id="arith", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")
    out = ArithmeticCheck(ArithmeticCheck.Config()).apply(frame, ctx)
    assert out["reject_reason"].to_list() == ["false_step_correct_answer", "false_arithmetic", None]
    assert "6 + 17/18 = 113/18" in json.loads(out["reject_detail"][0])["false_equations"]
    assert ctx.metrics["false_step_correct_answer"] == 1

"""Issue 19: verify and the answer filters on the formats real outputs use. Every sample is
written here in the shape a real teacher writes it (one per class of miss)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curate.answers import math as M
from curate.answers.cache import Verdict, VerdictCache
from curate.answers.extract import answer_extractor
from curate.core.operator import StepContext
from curate.prune import filters as F
from curate.prune.steps import PruneSteps
from curate.verify.operators import Verify
from tests.test_prune import run, table, trace

ROOT = Path(__file__).resolve().parents[1]
extract = answer_extractor()


@pytest.mark.parametrize(("text", "answer"), [
    ("Solving both cases gives x = 2 and x = 3.\n\nTherefore, the final answers are: 2, 3.", "2, 3"),
    ("So the area is 12.\n\n**Final Answer:** 12", "12"),
    ("So the area is 12.\n\n**Final Answer:** The result is 12", "12"),
    ("The probability works out.\n\n**Final Answer**\n\nThe probability is 0.05.", "0.05"),
    # The prompt's instruction echoed before an unboxed answer, and after the real box.
    ("So \\(x = 7\\), i.e. \\boxed{7}.\n\nPlease put your final answer within \\boxed{}.", "7"),
])
def test_answer_extraction_skips_marker_junk(text, answer):
    assert extract(text)[0] == answer


@pytest.mark.parametrize(("text", "answer"), [
    ("Please reason step by step, and put your final answer within \\boxed{}.\n\nThe answer is 7.", "7"),
    ("Option D matches.\n\nThe correct answer is (D).", "(D)"),
    ("Only (C) works.\n\nThe answer is **(C)**.", "(C)"),
    # prose after the marker is no answer: the last number is
    ("So the final answer is the appropriate choice.\n\nThe total is 225.\n\nI think that's the final answer.", "225"),
])
def test_answer_extraction_guards(text, answer):
    # Forms the old extractor already read: guards, so that the fixes above keep them.
    assert extract(text)[0] == answer


@pytest.mark.parametrize(("reference", "answer", "correct"), [
    ("\\frac14.", "\\frac{1}{4}", True),            # reference with a trailing period
    ("(-2,1).", "(-2, 1)", True),
    ("7.2\\%", "7.2", True),                         # percent on the reference
    ("\\text{0.15}", "0.15", True),                  # \text{} around a number
    ("\\text{June 20}", "June 20", True),            # dates, times, letter lists: text answers
    ("\\text{1:03 PM}", "1:03 \\text{ PM}", True),
    ("\\text{A, D}", "A, D", True),
    ("(-2,-2)", "-2,-2", True),                      # a tuple written without its parentheses
])
def test_presentation_classes(reference, answer, correct):
    # verify_one runs here, in the test's main thread, as it does in a worker.
    assert M.verify_one(reference, answer, 5).correct is correct


@pytest.mark.parametrize(("reference", "answer", "correct"), [
    ("15", "15\\%", True),
    ("\\text{June 20}", "June 21", False),
    ("\\text{1:03 PM}", "1:30 PM", False),
    ("\\text{A, D}", "A, C", False),
    ("\\text{Evelyn}", "Evelyn", True),
    ("12", "12 \\text{ cm}", True),                  # units inside the box
    ("5.4 \\text{ cents}", "5.4", True),
    ("72", "72^\\circ", True),
    ("\\text{(C)}", "C", True),                      # multiple-choice letters
    ("(C)", "\\text{(C)}", True),
    ("C", "(D)", False),
    ("1,000", "1000", True),
    ("3", "4", False),
    ("(1,-16,-4,43)", "1,\\ -16,\\ -4,\\ 43", True),  # a tuple with LaTeX spacing
    ("(0,9) \\cup (9,36)", "x \\in (0, 9) \\cup (9, 36)", True),  # "x \in" before the set
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",                # a/b against \frac in a matrix
     "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}", True),
])
def test_presentation_guards(reference, answer, correct):
    # Verdicts math-verify already gave, which the new path must keep (wrong answers included).
    assert M.verify_one(reference, answer, 5).correct is correct


def _verify(frame: pl.DataFrame, tmp_path: Path, **config) -> pl.DataFrame:
    ctx = StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    op = Verify(Verify.Config(workers=1, **config))
    op.setup(ctx)
    return op.apply(frame, ctx)


def _rows(**columns) -> pl.DataFrame:
    count = len(columns["completion"])
    base = {"domain": ["math"] * count, "tests": [None] * count, "finish_reason": [None] * count}
    return pl.DataFrame({**base, **columns})


def test_unclosed_reasoning_is_truncated_never_read_inside(tmp_path):
    thought = "Let me compute. 2 + 3 = 5, so the answer is 5. Wait, maybe \\boxed{5}"
    frame = _rows(
        reference_answer=["5", "5", "5"],
        completion=[f"<think>{thought}", f"<|begin_of_thought|>{thought}",
                    f"<think>{thought}</think>The answer is \\boxed{{5}}."],
        answer_text=["", "", "The answer is \\boxed{5}."],
    )
    verified = _verify(frame, tmp_path)
    assert verified["verify_status"].to_list() == ["no_answer", "no_answer", "correct"]
    assert verified["correct"].to_list() == [False, False, True]
    assert "never closes" in json.loads(verified["verify_detail"][0])["reason"]


def test_unclosed_reasoning_is_read_when_truncation_is_not_a_failure(tmp_path):
    # Re-checking a dump graded by a harness that ignores truncation: the answer stated inside
    # the open block is judged, and a concluded answer elsewhere still comes first.
    thought = "Let me compute. 2 + 3 = 5, so maybe \\boxed{5}. Or is it 6"
    frame = _rows(
        reference_answer=["5", "5", "7"],
        completion=[f"<|begin_of_thought|>{thought}", f"<think>{thought}", f"<think>{thought}"],
        answer_text=["", "", "So \\boxed{7}."],
    )
    verified = _verify(frame, tmp_path, truncated_as_no_answer=False)
    assert verified["extracted_answer"].to_list() == ["5", "5", "7"]
    assert verified["correct"].to_list() == [True, True, True]


def test_multiple_choice_domain(tmp_path):
    frame = _rows(
        domain=["choice", "choice", "math"],
        reference_answer=["B", "\\text{(C)}", "(C)"],
        completion=["After eliminating the others, Answer: B", "So (A) fails.\n\nThe answer is **(D)**.",
                    "The correct answer is (C)."],
        answer_text=[None, None, None],
    )
    verified = _verify(frame, tmp_path, text_columns=["completion"])
    assert verified["correct"].to_list() == [True, False, True]


def test_verify_pairs_from_a_script_without_main_guard(tmp_path):
    script = tmp_path / "no_guard.py"
    script.write_text("from curate.answers.math import verify_pairs\n"
                      "print([v.status for v in verify_pairs([('\\\\frac{1}{2}', '0.5'), ('x^2', 'x*x')])])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['correct', 'correct']"


def _flaky_boot(marker: Path, always: bool) -> str:
    # A worker that dies on its first pair (always, or until the marker file exists).
    crash = "True" if always else f"not os.path.exists({str(marker)!r})"
    return ("import os, sys; sys.path.insert(0, {root!r})\n"
            f"if {crash}:\n    open({str(marker)!r}, 'w').close(); sys.stdin.readline(); os._exit(3)\n"
            "from curate.answers.math import serve; serve()")


def test_worker_crash_is_retried_and_a_repeated_crash_is_not_saved(tmp_path, monkeypatch):
    pair = ("x^2+2x", "x(x+2)")  # needs math-verify
    monkeypatch.setattr(M, "_BOOT", _flaky_boot(tmp_path / "crashed-once", always=False))
    assert M.verify_pairs([pair], workers=1) == [Verdict(True, "correct", "math-verify equal")]
    monkeypatch.setattr(M, "_BOOT", _flaky_boot(tmp_path / "x", always=True))
    cache = VerdictCache(tmp_path / "v.sqlite")
    frame = _rows(reference_answer=[pair[0]], completion=[f"\\boxed{{{pair[1]}}}"], answer_text=[None])
    with pytest.raises(RuntimeError, match="crashed twice"):
        _verify(frame, tmp_path)
    assert cache.get_many([pair], M.VERIFIER) == {}


def test_verdict_cache_is_reused_across_runs(tmp_path, monkeypatch):
    pairs = [("x^2+2x", "x(x+2)"), ("x^2+2x", "x(x+2)"), ("\\frac{1}{2}", "0.5")]
    first = M.verify_pairs(pairs, workers=1, cache=VerdictCache(tmp_path / "v.sqlite"))
    assert [v.correct for v in first] == [True, True, True]

    def no_workers(todo, timeout_s, workers):
        raise AssertionError(f"cached pairs went to math-verify again: {todo}")

    monkeypatch.setattr(M, "_in_workers", no_workers)
    again = M.verify_pairs(pairs, workers=1, cache=VerdictCache(tmp_path / "v.sqlite"))
    assert again == first


def test_answer_missing_knows_real_final_answer_forms(tmp_path):
    rows = [trace(trace_id=f"t{i}", answer_text=text) for i, text in enumerate([
        "Only option D satisfies both.\n\nThe correct answer is (D).",
        "**Final Answer**\n\nThe probability that both win is 0.05.",
        "Therefore, the final answers are: 2, 3.",
    ])]
    rows.append(trace(trace_id="none", answer_text="I could not finish this one."))
    result, _ = run(F.AnswerMissingFilter, table(*rows), tmp_path)
    assert result["reject_reason"].to_list() == [None, None, None, "no_final_answer"]


def test_answer_consistency_real_false_positives(tmp_path):
    rows = [
        # the stated result is one token, not the rest of the line
        trace(trace_id="a", reference_answer="I", reasoning='Checking each, the answer is (I)" but careful: recheck.',
              answer_text="The answer is \\boxed{I}."),
        trace(trace_id="b", reference_answer="27", reasoning="So the answer is 27 miles from city A.",
              answer_text="\\boxed{27}"),
        # multiple choice: numbers in the reasoning are not compared with the letter
        trace(trace_id="c", reference_answer="B", reasoning="The sum is 14, so the answer is 14, which is option B.",
              answer_text="So the answer is (B)."),
        # a real contradiction is still caught
        trace(trace_id="d", reasoning="Adding, the answer is 6.", answer_text="\\boxed{5}"),
    ]
    result, _ = run(F.AnswerConsistencyFilter, table(*rows), tmp_path, workers=1)
    assert result["reject_reason"].to_list() == [None, None, None, "answer_inconsistent"]


def test_prune_steps_cuts_only_at_unhedged_conclusions(tmp_path):
    hedged = ("Try the options.\n\nSo the answer seems to be 5? But let's double-check.\n\n"
              "Checking 5: 2 + 3 = 5 indeed.\n\nMore checking here.\n\nSo the answer is 5.")
    wrong_conclusion = ("Start.\n\nHence x = 5, so the total is 12.\n\nMore work.\n\n"
                        "Even more work.\n\nSo the answer is 5.")
    setup = "Start.\n\nSo, let's calculate 3x - 9 when x = 5:\n\nMore work.\n\nMore.\n\nSo the answer is 5."
    plain = "Start.\n\nSo the answer is 5.\n\nWait, let me recheck.\n\nYes.\n\nSo the answer is 5."
    frame = table(trace(trace_id="h", reasoning=hedged), trace(trace_id="w", reasoning=wrong_conclusion),
                  trace(trace_id="s", reasoning=setup), trace(trace_id="p", reasoning=plain))
    result, _ = run(PruneSteps, frame, tmp_path, conclusion_steps=1, min_removed_share=0.0)
    assert result["pruned_by"].to_list() == [None, None, None, "prune_steps"]

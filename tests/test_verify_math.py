"""Math verification in worker processes, and the `verify` operator on real traces."""

import json
from pathlib import Path

import polars as pl
import pytest

from curate.answers.math import verify_pairs
from curate.core.operator import StepContext
from curate.verify.operators import Verify

FIXTURES = Path(__file__).parent / "fixtures" / "verify"


@pytest.fixture
def ctx(tmp_path):
    return StepContext(step_id="verify", step_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_verify_pairs_statuses():
    pairs = [(r"\frac{1}{2}", "0.5"), ("3", "4"), ("10,\\!080", "10080"), (r"(2,\infty)", r"[2,\infty)"),
             ("2", "9^{9^{9^{9}}}")]
    verdicts = verify_pairs(pairs, timeout_s=1)
    assert [v.status for v in verdicts] == ["correct", "wrong", "correct", "wrong", "timeout"]
    assert verdicts[-1].correct is None  # a timeout is undecided, never "wrong"


def _traces(path: Path) -> pl.DataFrame:
    rows = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for completion, label in zip(record["code"], record["score"], strict=True):
            rows.append({"problem_id": str(record["idx"]), "domain": "math", "tests": None,
                         "reference_answer": record["answer"], "completion": completion,
                         "answer_text": completion.split("<|begin_of_solution|>")[-1], "label": label})
    return pl.DataFrame(rows)


def test_verify_agrees_with_real_labels(ctx):
    traces = pl.concat([_traces(p) for p in sorted((FIXTURES / "traces").glob("*.jsonl"))])
    verified = Verify(Verify.Config()).apply(traces, ctx)
    assert verified.height == traces.height == 60
    agreement = verified.select(pl.col("correct").eq_missing(pl.col("label")).mean()).item()
    assert agreement >= 0.95
    assert verified["extraction_method"].is_in(["boxed", "answer_is", "last_number"]).all()
    assert ctx.metrics["verify_correct"] == verified["correct"].sum()


def test_undecidable_rows_are_recorded_not_wrong(ctx):
    frame = pl.DataFrame({
        "domain": ["math", "math", "math", "physics", "math"],
        "reference_answer": ["4", "4", None, "1", "4"],
        "tests": [None] * 5,
        "answer_text": [r"\boxed{4}", "no digits at all", r"\boxed{3}", r"\boxed{1}", r"\boxed{4}"],
        "completion": ["", "", "", "", ""],
        "finish_reason": ["stop", "stop", "stop", "stop", "length"],
    })
    verified = Verify(Verify.Config(workers=1)).apply(frame, ctx)
    assert verified["verify_status"].to_list() == ["correct", "no_answer", "error", "error", "no_answer"]
    assert verified["correct"].to_list() == [True, False, None, None, False]
    assert "reference_answer" in json.loads(verified["verify_detail"][2])["reason"]
    assert "truncated" in json.loads(verified["verify_detail"][4])["reason"]

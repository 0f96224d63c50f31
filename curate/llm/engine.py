"""The teacher engine: a problem frame in, cached and budgeted completions out, as trace rows.

Every completion is looked up in, and stored to, the response cache under
`<cache_dir>/generate/responses.sqlite` as soon as it exists, so reruns, resumed runs
and other recipes pointed at the same cache never pay twice for one completion.

Rows are never dropped: a sample beyond a teacher's budget comes out with
reject_reason 'over_budget', a request the server refused (e.g. prompt too long) with
'generation_error'; the runner files both in the run's rejections table.

`generate`, `adaptive_generate`, `rewrite_traces` and evals all run teachers through
`Engine`, so they share the cache, the budgets and the metrics.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from curate.core.operator import StepContext
from curate.llm.backends.base import Backend, Completion, Request, seed_for
from curate.llm.cache import CACHE_FILE, ResponseCache, request_key
from curate.llm.config import RUNTIME_OPTIONS, GenerateConfig, TeacherConfig
from curate.llm.prompts import check_columns, prompt_text, render
from curate.llm.reasoning import split_reasoning_batch, split_token_counts
from curate.models.identity import model_identity
from curate.schema import PROBLEM_COLUMNS, TRACE_COLUMNS, conform, content_hash, trace_id

log = logging.getLogger(__name__)

_PROBLEM_NAMES = {c.name for c in PROBLEM_COLUMNS}
TRACE_ONLY = tuple(c.name for c in TRACE_COLUMNS if c.name not in _PROBLEM_NAMES)
_CHARS_PER_TOKEN = 4.0  # prompt-size guess for `plan` until the cache has real counts
CLAIM_POLL_S = 1.0  # how often to look again for requests another run has claimed


def sampling_identity(teacher: TeacherConfig) -> dict:
    """Sampling parameters that shape one sample (n and the base seed do not: a larger
    n reuses the samples a smaller n already made)."""
    sampling = teacher.sampling
    return {"temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens, "stop": sampling.stop}


def ray_resources(teachers: list[TeacherConfig]) -> dict[str, float]:
    """What one Ray actor running these teachers needs: it holds every teacher's engine,
    one vLLM engine at a time, so the GPUs of the largest vLLM teacher (its tensor-parallel
    size), or one GPU for a transformers teacher placed on CUDA."""
    gpus = 0
    for teacher in teachers:
        options = teacher.backend_options()
        if teacher.backend == "vllm":
            gpus = max(gpus, options.tensor_parallel_size)
        elif teacher.backend == "transformers" and options.device.startswith("cuda"):
            gpus = max(gpus, 1)
    return {"num_gpus": gpus} if gpus else {}


def build_requests(teacher: TeacherConfig, frame: pl.DataFrame,
                   sample_indices: Sequence[Sequence[int]] | None = None) -> list[list[Request]]:
    """For each problem row, the teacher's requests (keys identify them in the cache):
    samples 0..n-1, or the row's `sample_indices` (adaptive sampling draws in rounds)."""
    sampling = sampling_identity(teacher)
    options = {k: v for k, v in teacher.options.items() if k not in RUNTIME_OPTIONS}
    fields = sorted(teacher.prompt.fields())
    model = model_identity(teacher.model)
    rows = frame.select(fields).to_dicts() if fields else [{}] * frame.height
    if sample_indices is None:
        sample_indices = [range(teacher.sampling.n)] * len(rows)
    requests = []
    for row, indices in zip(rows, sample_indices, strict=True):
        prompt = render(teacher.prompt, row)
        text = prompt_text(prompt)
        samples = []
        for index in indices:
            seed = seed_for(teacher.sampling.seed, index)
            key = request_key(teacher.backend, model, text, sampling, options, index, seed)
            samples.append(Request(key, prompt, text, index, seed))
        requests.append(samples)
    return requests


@dataclass
class _Spend:
    """What a teacher has used of its budget in this step (all chunks)."""

    requests: int = 0
    tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


def _no_bar(n: int, note: str = "") -> None:
    """The default progress bar: draws nothing."""


@dataclass
class _TeacherSink:
    """Receives a backend's results: caches each at once, counts, reports progress."""

    teacher: TeacherConfig
    cache: ResponseCache
    ctx: StepContext
    spend: _Spend
    progress: _Progress
    results: dict[str, Completion] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    bar: Callable[[int, str], None] = _no_bar  # this teacher's own progress bar
    started: float = field(default_factory=time.perf_counter)

    def _advance_bar(self, count: int) -> None:
        speed = self.spend.new_tokens / max(time.perf_counter() - self.started, 1e-9)
        self.bar(count, f"{speed:,.0f} tok/s" if self.spend.new_tokens else "")

    def done(self, results: list[tuple[Request, Completion]]) -> None:
        self.cache.put(self.teacher.backend, self.teacher.model, results)
        for request, completion in results:
            self.results[request.key] = completion
            tokens = completion.prompt_tokens + completion.completion_tokens
            self.spend.tokens += tokens
            self.spend.new_tokens += completion.completion_tokens
            self.ctx.count("requests")
            self.ctx.count("prompt_tokens", completion.prompt_tokens)
            self.ctx.count("completion_tokens", completion.completion_tokens)
        self.progress.advance(len(results))
        self._advance_bar(len(results))

    def cached_meanwhile(self, results: dict[str, Completion]) -> None:
        """Completions another run stored after this step's first cache lookup."""
        self.results.update(results)
        for completion in results.values():
            self.spend.tokens += completion.prompt_tokens + completion.completion_tokens
        self.ctx.count("cache_hits", len(results))
        self.progress.advance(len(results))
        self._advance_bar(len(results))

    def failed(self, request: Request, message: str) -> None:
        self.errors[request.key] = message
        self.ctx.count("errors")
        self.progress.advance(1)
        self._advance_bar(1)
        log.warning("teacher %r: request failed: %s", self.teacher.name, message)

    def retried(self) -> None:
        self.ctx.count("retries")

    def stopped(self) -> bool:
        limit = self.teacher.budget.max_tokens
        return limit is not None and self.spend.tokens >= limit


class _Progress:
    """Advances the step's bar in problems: all teachers' samples of a problem = 1."""

    def __init__(self, ctx: StepContext, problems: int, requests: int):
        self.ctx, self.problems, self.requests = ctx, problems, max(requests, 1)
        self.finished = 0
        self.reported = 0

    def advance(self, finished: int) -> None:
        self.finished += finished
        due = self.problems * self.finished // self.requests
        if due > self.reported:
            self.ctx.on_progress(due - self.reported)
            self.reported = due

    def close(self) -> None:
        if self.problems > self.reported:
            self.ctx.on_progress(self.problems - self.reported)
            self.reported = self.problems


class Engine:
    """Runs a set of teachers: `setup` opens the cache and checks every backend (a bad
    model, server or key fails there, before any request); `generate` turns a problem
    frame into trace rows. `spend` is what each teacher has used of its budget so far."""

    def __init__(self, teachers: list[TeacherConfig]):
        self.teachers = teachers

    def setup(self, ctx: StepContext) -> None:
        from curate.llm.backends import make_backend

        self.cache = ResponseCache(ctx.cache_dir / CACHE_FILE)
        self.backends: dict[str, Backend] = {}
        for teacher in self.teachers:
            backend = make_backend(teacher, ctx.cache_dir)
            backend.check()  # bad model / server / key fail here, before any request
            self.backends[teacher.name] = backend
        self.spend = {teacher.name: _Spend() for teacher in self.teachers}

    def teardown(self) -> None:
        """Release every teacher's engine (and its GPU memory) once the step is over."""
        for backend in getattr(self, "backends", {}).values():
            backend.close()

    def generate(self, frame: pl.DataFrame, ctx: StepContext,
                 sample_indices: dict[str, list[list[int]]] | None = None) -> pl.DataFrame:
        """Trace rows for `frame`: each teacher's n samples per problem, or, where
        `sample_indices` names the teacher, the listed samples of each problem row."""
        for teacher in self.teachers:
            check_columns(teacher.prompt, frame.columns, teacher.name)
        sample_indices = sample_indices or {}
        plans = {t.name: build_requests(t, frame, sample_indices.get(t.name)) for t in self.teachers}
        total = sum(len(samples) for plan in plans.values() for samples in plan)
        progress = _Progress(ctx, frame.height, total)
        problem_ids = frame["problem_id"].to_list()
        # A teacher whose model is loaded goes first: with one vLLM engine alive at a time,
        # chunk after chunk alternates A,B / B,A and loads one engine per chunk, not two.
        order = sorted(self.teachers, key=lambda t: not self.backends[t.name].is_loaded())
        done = {t.name: self._run_teacher(t, plans[t.name], problem_ids, ctx, progress) for t in order}
        parts = [done[t.name] for t in self.teachers]
        progress.close()
        traces = pl.concat(parts, how="vertical")
        problems = frame.with_row_index("_row").drop([c for c in TRACE_ONLY if c in frame.columns])
        joined = traces.join(problems, on="_row", how="left", maintain_order="left").drop("_row")
        return conform(joined, "trace")

    def _run_teacher(self, teacher: TeacherConfig, plan: list[list[Request]], problem_ids: list[str],
                     ctx: StepContext, progress: _Progress) -> pl.DataFrame:
        spend = self.spend[teacher.name]
        ordered = [request for samples in plan for request in samples]
        sink = _TeacherSink(teacher, self.cache, ctx, spend, progress, bar=ctx.subtask(teacher.name, len(ordered)))
        cached = self.cache.get_many(r.key for r in ordered)
        ctx.count("cache_hits", len(cached))
        sink.results.update(cached)
        budget = teacher.budget
        over: dict[str, str] = {}
        to_send = []
        for request in ordered:
            completion = cached.get(request.key)
            if budget.max_requests is not None and spend.requests >= budget.max_requests:
                over[request.key] = f"max_requests={budget.max_requests}"
                sink.results.pop(request.key, None)
                continue
            if completion is not None:
                if budget.max_tokens is not None and spend.tokens >= budget.max_tokens:
                    over[request.key] = f"max_tokens={budget.max_tokens}"
                    sink.results.pop(request.key, None)
                    continue
                spend.tokens += completion.prompt_tokens + completion.completion_tokens
            else:
                to_send.append(request)
            spend.requests += 1
        progress.advance(len(ordered) - len(to_send))
        sink.bar(len(ordered) - len(to_send), "cached" if not to_send else "")
        backend = self.backends[teacher.name]
        if to_send:
            backend.load()  # outside the timing: tokens/s is generation speed
        started = sink.started = time.perf_counter()
        self._generate_claimed(backend, to_send, sink)
        self._record_speed(teacher, spend, time.perf_counter() - started, ctx)
        unsent = [r for r in to_send if r.key not in sink.results and r.key not in sink.errors]
        for request in unsent:  # budget ran out mid-way
            over[request.key] = f"max_tokens={budget.max_tokens}"
        progress.advance(len(unsent))
        sink._advance_bar(len(unsent))
        if over:
            ctx.count("over_budget", len(over))
            log.warning("teacher %r: %d sample(s) beyond the budget are rejected as 'over_budget'",
                        teacher.name, len(over))
        return self._rows(teacher, plan, problem_ids, sink, over)

    def _generate_claimed(self, backend: Backend, requests: list[Request], sink: _TeacherSink) -> None:
        """Generate `requests`, claiming each slice (a batch, or all for servers and vLLM)
        in the cache first, so runs sharing the cache never generate one request twice:
        what another run stored meanwhile is taken from the cache, what another live run
        holds is waited for (and taken over if that run dies)."""
        size = backend.claim_size() or max(len(requests), 1)
        # similar prompt lengths in one slice: batches pad little, as the backend's own order would
        pending = sorted(requests, key=lambda r: (len(r.text), r.key)) if size < len(requests) else requests
        try:
            while pending:
                waiting = []
                for start in range(0, len(pending), size):
                    if sink.stopped():
                        return
                    part = pending[start:start + size]
                    mine, cached, held = self.cache.claim([r.key for r in part])
                    if cached:
                        sink.cached_meanwhile(cached)
                    waiting += [r for r in part if r.key in held]
                    backend.generate([r for r in part if r.key in mine], sink)
                if waiting:
                    log.info("%d request(s) are being generated by another run sharing the cache: waiting",
                             len(waiting))
                    time.sleep(CLAIM_POLL_S)
                pending = waiting
        finally:
            self.cache.release()

    def _record_speed(self, teacher: TeacherConfig, spend: _Spend, seconds: float, ctx: StepContext) -> None:
        spend.seconds += seconds
        if spend.new_tokens:
            speed = spend.new_tokens / max(spend.seconds, 1e-9)
            # typeshed's Counter holds ints only; a step's metrics may be floats.
            ctx.metrics[f"{teacher.name}.tokens_per_s"] = round(speed, 2)  # type: ignore[assignment]
            log.info("teacher %r: %d new tokens, %.1f tokens/s", teacher.name, spend.new_tokens, speed)

    def _rows(self, teacher: TeacherConfig, plan: list[list[Request]], problem_ids: list[str],
              sink: _TeacherSink, over: dict[str, str]) -> pl.DataFrame:
        backend = self.backends[teacher.name]
        # One split over the batch: polars per completion would cost a millisecond each.
        done = {r.key: sink.results[r.key] for samples in plan for r in samples if r.key in sink.results}
        splits = dict(zip(done, split_reasoning_batch([c.text for c in done.values()],
                                                      [c.reasoning_content for c in done.values()],
                                                      teacher.reasoning.start, teacher.reasoning.end), strict=True))
        records = [self._record(teacher, row, problem_ids[row], request, sink, over, splits)
                   for row, samples in enumerate(plan) for request in samples]
        split = [r for r in records if r["_needs_count"]]
        counts = backend.count_tokens([r["reasoning"] for r in split])
        per_record: list[int | None] = list(counts) if counts else [None] * len(split)
        for record, count in zip(split, per_record, strict=True):
            record["reasoning_tokens"], record["answer_tokens"] = split_token_counts(
                record["_completion_tokens"], record["reasoning"], record["answer_text"], count
            )
        columns = ["_row", *TRACE_ONLY, "reject_reason", "reject_detail"]
        schema = {c.name: c.dtype for c in TRACE_COLUMNS if c.name in columns}
        return pl.DataFrame(
            {c: [r[c] for r in records] for c in columns},
            schema={"_row": pl.UInt32, **schema, "reject_reason": pl.String, "reject_detail": pl.String},
        )

    def _record(self, teacher: TeacherConfig, row: int, problem_id: str, request: Request,
                sink: _TeacherSink, over: dict[str, str], splits: dict[str, tuple[str, str, str]]) -> dict:
        params = {**sampling_identity(teacher), "seed": request.seed, "backend": teacher.backend}
        identity = {**params, "prompt": content_hash(request.text)}  # a new template is a new trace
        record = {
            "_row": row, "teacher": teacher.name, "model": teacher.model, "sample_index": request.sample_index,
            "trace_id": trace_id(problem_id, teacher.name, teacher.model, request.sample_index, identity),
            "prompt": request.text, "generation_params": json.dumps(params, sort_keys=True),
            "completion": None, "reasoning": None, "answer_text": None, "prompt_tokens": None,
            "reasoning_tokens": None, "answer_tokens": None, "finish_reason": None,
            "reject_reason": None, "reject_detail": None, "_needs_count": False,
        }
        completion = sink.results.get(request.key)
        if completion is None:
            reason, detail = (("over_budget", {"limit": over[request.key]}) if request.key in over
                              else ("generation_error", {"error": sink.errors.get(request.key, "no result")}))
            record["reject_reason"] = reason
            record["reject_detail"] = json.dumps({"teacher": teacher.name, **detail})
            return record
        text, reasoning, answer = splits[request.key]
        record.update(completion=text, reasoning=reasoning, answer_text=answer,
                      prompt_tokens=completion.prompt_tokens, finish_reason=completion.finish_reason,
                      _completion_tokens=completion.completion_tokens)
        if completion.reasoning_content is not None and completion.reasoning_tokens is not None:
            record["reasoning_tokens"], record["answer_tokens"] = split_token_counts(
                completion.completion_tokens, reasoning, answer, completion.reasoning_tokens)
        elif not reasoning:
            record["reasoning_tokens"], record["answer_tokens"] = 0, completion.completion_tokens
        else:
            record["_needs_count"] = True
        return record


def plan_requests(frame: pl.DataFrame, config: GenerateConfig | dict, cache_dir: Path) -> pl.DataFrame:
    """What `generate` would do, per teacher, without sending anything or loading models.

    Columns: teacher, backend, model, requests (within budget), cached, to_send,
    over_budget (cut by max_requests; a max_tokens cut shows only while running),
    est_prompt_tokens and est_completion_tokens for the requests to send. Estimates
    come from the cached completions of the same teacher when there are any (tokens
    per prompt character, mean completion length), else 4 characters per token and
    max_tokens per completion (an upper bound).
    """
    config = config if isinstance(config, GenerateConfig) else GenerateConfig.model_validate(config)
    cache = ResponseCache(Path(cache_dir) / CACHE_FILE)
    rows = []
    try:
        for teacher in config.teachers:
            check_columns(teacher.prompt, frame.columns, teacher.name)
            ordered = [r for samples in build_requests(teacher, frame) for r in samples]
            limit = teacher.budget.max_requests
            within = ordered if limit is None else ordered[:limit]
            cached = cache.get_many(r.key for r in within)
            unsent = [r for r in within if r.key not in cached]
            unsent_chars = sum(len(r.text) for r in unsent)
            if cached:
                cached_chars = sum(len(r.text) for r in within if r.key in cached)
                tokens_per_char = sum(c.prompt_tokens for c in cached.values()) / max(cached_chars, 1)
                completion_each = sum(c.completion_tokens for c in cached.values()) / len(cached)
            else:
                tokens_per_char, completion_each = 1 / _CHARS_PER_TOKEN, teacher.sampling.max_tokens
            rows.append({
                "teacher": teacher.name, "backend": teacher.backend, "model": teacher.model,
                "requests": len(within), "cached": len(cached), "to_send": len(unsent),
                "over_budget": len(ordered) - len(within),
                "est_prompt_tokens": round(unsent_chars * tokens_per_char),
                "est_completion_tokens": round(len(unsent) * completion_each),
            })
    finally:
        cache.close()
    return pl.DataFrame(rows)

"""curate's vLLM backend against vLLM's own `LLM.chat` on the same requests, on one engine;
and per-request seeds against none. Run in the vLLM venv (bench/vllm_env.sh builds it):

    OMP_NUM_THREADS=1 .venv-vllm/bin/python bench/vllm_overhead.py [--prompts 32] [--max-tokens 64] [--repeats 5]

Both sides send the same prompts with the same per-sample seeds to the same loaded engine,
so they generate the same tokens: the tokens/s ratio is curate's overhead (the prompt-length
check, sampling parameters, result handling). Runs alternate (ABBA) so that drift in the
machine's load falls on both sides; each pair gives one ratio, and the spread of the ratios
is reported with their median. Beside it, curate's own share of each of its runs (the time
outside `LLM.chat`), which a busy machine disturbs far less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import polars as pl

from curate.llm.backends.vllm_offline import VLLMBackend
from curate.llm.config import TeacherConfig
from curate.llm.engine import build_requests
from curate.models.bundled import smollm2_gguf
from curate.models.gguf import converted_gguf_dir

GSM8K = Path(__file__).parents[1] / "curate" / "data" / "gsm8k" / "train_sample.jsonl"


class Collect:
    """A backend sink keeping the completions."""

    def __init__(self):
        self.tokens = 0
        self.failures: list[str] = []

    def done(self, results):
        self.tokens += sum(completion.completion_tokens for _, completion in results)

    def failed(self, request, message):
        self.failures.append(message)

    def stopped(self):
        return False

    def retried(self):
        pass


def prompts(count: int) -> pl.DataFrame:
    questions = [json.loads(line)["question"] for line in GSM8K.read_text().splitlines()][:count]
    return pl.DataFrame({"problem": questions})


class TimedEngine:
    """The engine as curate's backend sees it, timing the `LLM.chat` calls: the rest of a
    run's time is curate's own work (a measure of the overhead that the load of a shared
    machine disturbs far less than the tokens/s ratio)."""

    def __init__(self, llm):
        self.llm = llm
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.llm, name)

    def chat(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.llm.chat(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def curate_run(backend: VLLMBackend, requests, own_shares: list[float] | None = None) -> tuple[int, float]:
    sink = Collect()
    engine = backend._llm
    engine.seconds = 0.0
    started = time.perf_counter()
    backend.generate(requests, sink)
    elapsed = time.perf_counter() - started
    assert not sink.failures, sink.failures
    if own_shares is not None:
        own_shares.append(1 - engine.seconds / elapsed)
    return sink.tokens, elapsed


def direct_run(llm, requests, teacher: TeacherConfig, seeded: bool = True) -> tuple[int, float]:
    from vllm import SamplingParams

    sampling = teacher.sampling
    started = time.perf_counter()
    params = [SamplingParams(n=1, temperature=sampling.temperature, top_p=sampling.top_p,
                             max_tokens=sampling.max_tokens, seed=r.seed if seeded else None) for r in requests]
    outputs = llm.chat([r.prompt for r in requests], sampling_params=params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    return sum(len(o.outputs[0].token_ids) for o in outputs), elapsed


def alternate(first, second, repeats: int) -> list[float]:
    """tokens/s of `first` over `second`, one ratio per ABBA pair of runs."""
    ratios = []
    for repeat in range(repeats):
        order = (first, second) if repeat % 2 == 0 else (second, first)
        results = {id(run): run() for run in order}
        (tokens_a, seconds_a), (tokens_b, seconds_b) = results[id(first)], results[id(second)]
        ratios.append((tokens_a / seconds_a) / (tokens_b / seconds_b))
    return ratios


def spread(name: str, ratios: list[float]) -> dict:
    line = {"measure": name, "median": round(statistics.median(ratios), 4), "min": round(min(ratios), 4),
            "max": round(max(ratios), 4), "runs": len(ratios)}
    print(json.dumps(line), flush=True)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/bench-vllm"))
    args = parser.parse_args()

    from vllm import LLM

    model = str(converted_gguf_dir(smollm2_gguf(), args.cache_dir))
    teacher = TeacherConfig.model_validate({
        "name": "t", "backend": "vllm", "model": model, "prompt": {"user": "{problem}"},
        "sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": args.max_tokens},
        "options": {"enforce_eager": True, "max_model_len": 1024}})
    started = time.perf_counter()
    llm = LLM(model=model, enforce_eager=True, max_model_len=1024, seed=0)
    print(json.dumps({"engine_start_s": round(time.perf_counter() - started, 1)}), flush=True)
    backend = VLLMBackend(teacher, args.cache_dir)
    backend.check()
    backend._llm = TimedEngine(llm)  # the same engine for both sides
    backend._defaults = {}  # as the direct side: no generation-config defaults (SmolLM2 sets none)
    requests = [r for row in build_requests(teacher, prompts(args.prompts)) for r in row]

    direct_run(llm, requests, teacher)  # warm-up: first-call allocations on neither side's clock
    curate_tokens, _ = curate_run(backend, requests)
    direct_tokens, _ = direct_run(llm, requests, teacher)
    assert curate_tokens == direct_tokens, (curate_tokens, direct_tokens)  # same requests, same tokens
    own_shares: list[float] = []
    spread("curate/direct tokens_per_s", alternate(lambda: curate_run(backend, requests, own_shares),
                                                   lambda: direct_run(llm, requests, teacher), args.repeats))
    spread("curate's own share of its run time", own_shares)
    spread("seeded/unseeded tokens_per_s", alternate(lambda: direct_run(llm, requests, teacher, seeded=True),
                                                     lambda: direct_run(llm, requests, teacher, seeded=False),
                                                     args.repeats))
    backend.close()


if __name__ == "__main__":
    main()

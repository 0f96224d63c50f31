"""`generate` overhead: the operator vs the same backend called directly, same prompts.

    python bench/generate.py                               # SmolLM2, transformers + llama.cpp
    python bench/generate.py --problems 16 --n 4 --max-tokens 64 --threads 2
    python bench/generate.py --data path/to/gsm8k.jsonl --backends transformers

Both sides get the same GSM8K prompts (chat template applied), the same sampling and the
same seeds, in one process, models loaded beforehand (load time excluded). "Direct" is
what a hand-written script would do: for transformers, `model.generate` over the same
left-padded batches then decode, in two forms: with transformers' own sampler (one
`torch.manual_seed` per batch: the plain script, whose text depends on the batch) and
with curate's per-row sampler (`RowSampler`, the same text as the operator); for
llama.cpp, `Llama.create_chat_completion` per request. "Operator" is `Generate.apply` on
the problem table with an empty response cache: prompt rendering, cache lookups, one
durable SQLite commit per batch/completion, reasoning split, token counting, building
the trace table. Figures are completion tokens per second; the sides run in a rotating
order `--repeats` times and the best of each is kept (the machine is shared, so the best
run is the one least disturbed by others). The operator's texts must equal the
same-sampler direct loop's, request by request; the script exits 1 when they do not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from curate.core.operator import StepContext
from curate.generate.operators import Generate
from curate.llm.backends.hf_transformers import RowSampler, cut_at_stop
from curate.llm.cache import CACHE_FILE, ResponseCache
from curate.llm.engine import build_requests
from curate.schema import problem_id_expr

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "generate" / "gsm8k_test_20.jsonl"


def problem_frame(path: Path, count: int) -> pl.DataFrame:
    records = [json.loads(line) for line in path.read_text().splitlines()][:count]
    return pl.DataFrame({
        "problem": [r["question"] for r in records],
        "reference_answer": [r["answer"].split("####")[-1].strip() for r in records],
        "source": "gsm8k", "domain": "math",
        "tests": pl.Series([None] * len(records), dtype=pl.String), "metadata": "{}",
    }).with_columns(problem_id=problem_id_expr(pl.col("problem")))


def teacher_config(backend: str, args) -> dict:
    options = ({"batch_size": args.batch_size, "threads": args.threads} if backend == "transformers"
               else {"n_threads": args.threads})
    return {
        "name": backend, "backend": backend, "model": "bundled:smollm2",
        "prompt": {"system": "Solve the problem step by step. End with 'Answer: N'.", "user": "{problem}"},
        "sampling": {"n": args.n, "max_tokens": args.max_tokens, "temperature": 0.7, "top_p": 0.95, "seed": 0},
        "options": options,
    }


def run_operator(operator: Generate, frame: pl.DataFrame, run_dir: Path) -> tuple[float, int, dict[str, str]]:
    """One operator run against an empty response cache, reusing the loaded model."""
    operator.engine.cache = ResponseCache(run_dir / CACHE_FILE)
    ctx = StepContext(step_id="bench", step_dir=run_dir, cache_dir=run_dir)
    started = time.perf_counter()
    out = operator.apply(frame, ctx)
    seconds = time.perf_counter() - started
    operator.engine.cache.close()
    return seconds, int(ctx.metrics["completion_tokens"]), out["completion"].to_list()


def direct_transformers(backend, requests, row_sampler: bool) -> tuple[float, int, dict[str, str]]:
    """The loop a script would write: template, left-pad, model.generate, decode; sampling
    with transformers' own sampler (one seed per batch) or with curate's `RowSampler`."""
    import torch
    from transformers import LogitsProcessorList

    tokenizer, model = backend.tokenizer, backend.model
    sampling = backend.teacher.sampling
    started = time.perf_counter()
    texts = [tokenizer.apply_chat_template(r.prompt, tokenize=False, add_generation_prompt=True) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: (len(texts[i]), requests[i].key))
    tokens, outputs = 0, {}
    for start in range(0, len(order), backend.options.batch_size):
        batch = order[start:start + backend.options.batch_size]
        encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        if row_sampler:
            sampler = RowSampler([requests[i].seed for i in batch], sampling.temperature, sampling.top_p, "cpu")
            options = {"do_sample": False, "logits_processor": LogitsProcessorList([sampler])}
        else:
            torch.manual_seed(requests[batch[0]].seed)
            options = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        with torch.inference_mode():
            generated = model.generate(**encoded, max_new_tokens=sampling.max_tokens,
                                       pad_token_id=tokenizer.pad_token_id, **options)
        new = generated[:, encoded["input_ids"].shape[1]:]
        for row, i in enumerate(batch):
            ids = new[row].tolist()
            used = next((p + 1 for p, t in enumerate(ids) if t in backend.eos_ids), len(ids))
            tokens += used
            outputs[requests[i].key] = cut_at_stop(tokenizer.decode(ids[:used], skip_special_tokens=True), [])[0]
    return time.perf_counter() - started, tokens, outputs


def direct_llama_cpp(backend, requests) -> tuple[float, int, dict[str, str]]:
    llm, sampling = backend._llm, backend.teacher.sampling
    started = time.perf_counter()
    tokens, outputs = 0, {}
    for request in requests:
        response = llm.create_chat_completion(messages=request.prompt, max_tokens=sampling.max_tokens,
                                              temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
                                              seed=request.seed)
        tokens += response["usage"]["completion_tokens"]
        outputs[request.key] = response["choices"][0]["message"]["content"] or ""
    return time.perf_counter() - started, tokens, outputs


def bench(backend_name: str, frame: pl.DataFrame, args, work: Path) -> dict:
    config = Generate.Config.model_validate({"teachers": [teacher_config(backend_name, args)]})
    operator = Generate(config)
    operator.setup(StepContext(step_id="bench", step_dir=work, cache_dir=work / "models"))
    backend = operator.backends[backend_name]
    requests = [r for samples in build_requests(config.teachers[0], frame) for r in samples]
    backend.generate(requests[:1], _NullSink())  # load and warm up outside every timing
    if backend_name == "transformers":
        sides = {"direct_hf_sampler": lambda: direct_transformers(backend, requests, row_sampler=False),
                 "direct_row_sampler": lambda: direct_transformers(backend, requests, row_sampler=True)}
    else:
        sides = {"direct": lambda: direct_llama_cpp(backend, requests)}
    same_sampler = list(sides)[-1]  # the direct loop whose texts the operator must reproduce
    keys = [r.key for r in requests]
    sides["operator"] = None
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in sides}
    mismatches = 0
    names = list(sides)
    for repeat in range(args.repeats):
        texts = {}
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotate who goes first
            if name == "operator":
                seconds, tokens, completions = run_operator(operator, frame, work / f"{backend_name}-{repeat}")
                texts[name] = completions  # plan order = the order of `requests`
            else:
                seconds, tokens, outputs = sides[name]()
                texts[name] = [outputs[k] for k in keys]
            runs[name].append((seconds, tokens))
        mismatches = max(mismatches, sum(a != b for a, b in zip(texts["operator"], texts[same_sampler], strict=True)))
    speed = {name: max(tokens / seconds for seconds, tokens in side) for name, side in runs.items()}
    row = {"backend": backend_name, "requests": len(requests),
           "completion_tokens": runs["operator"][0][1],
           **{f"{name}_tok_s": round(value, 1) for name, value in speed.items()}}
    for name in sides:
        if name != "operator":
            row[f"ratio_vs_{name}"] = round(speed["operator"] / speed[name], 3)
    row["texts_differing"] = mismatches
    row["runs_s"] = " | ".join(" ".join(f"{s:.1f}" for s, _ in runs[name]) for name in sides)
    return row


class _NullSink:
    def done(self, results):
        pass

    def failed(self, request, message):
        pass

    def stopped(self):
        return False

    def retried(self):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K-style jsonl (question, answer)")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="transformers,llama_cpp")
    args = parser.parse_args()
    frame = problem_frame(args.data, args.problems)
    backends = [b for b in args.backends.split(",")
                if b != "llama_cpp" or importlib.util.find_spec("llama_cpp") is not None]
    with tempfile.TemporaryDirectory() as work:
        rows = [bench(name, frame, args, Path(work)) for name in backends]
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(pl.DataFrame(rows))
    differing = [row["backend"] for row in rows if row["texts_differing"]]
    if differing:
        raise SystemExit(f"FAIL: the operator's texts differ from the direct loop's for {', '.join(differing)}: "
                         "the comparison is void")


if __name__ == "__main__":
    main()

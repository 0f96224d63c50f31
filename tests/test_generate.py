"""`generate` pieces that need no model: prompts, reasoning split, config, cache keys,
bad input, and the vLLM / llama.cpp backends (skipped without their packages)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from curate.catalogue import registry
from curate.core.operator import StepContext
from curate.generate.operators import Generate
from curate.llm.backends.base import GenerationError
from curate.llm.config import GenerateConfig, PromptConfig, TeacherConfig
from curate.llm.engine import build_requests
from curate.llm.prompts import fill, render, template_fields
from curate.llm.reasoning import split_reasoning, split_token_counts
from curate.schema import problem_id_expr

FIXTURE = Path(__file__).parent / "fixtures" / "generate" / "gsm8k_test_20.jsonl"


def problem_frame(count: int) -> pl.DataFrame:
    records = [json.loads(line) for line in FIXTURE.read_text().splitlines()][:count]
    return pl.DataFrame({
        "problem": [r["question"] for r in records],
        "reference_answer": [r["answer"].split("####")[-1].strip() for r in records],
        "source": "gsm8k",
        "domain": "math",
        "tests": pl.Series([None] * count, dtype=pl.String),
        "metadata": "{}",
    }).with_columns(problem_id=problem_id_expr(pl.col("problem")))


def teacher(**fields) -> dict:
    return {"name": "t", "model": "bundled:smollm2", "prompt": {"user": "{problem}"}, **fields}


def test_templates_fill_columns_and_leave_latex_braces_alone():
    template = "Solve {problem}; put the answer in \\boxed{} or {{literal}} ({source})"
    assert template_fields(template) == {"problem", "source"}
    assert fill(template, {"problem": "1+1", "source": "gsm8k"}) == (
        "Solve 1+1; put the answer in \\boxed{} or {literal} (gsm8k)"
    )


def test_chat_prompt_with_system_and_few_shot_turns():
    prompt = PromptConfig(system="Be brief ({domain}).", user="Q: {problem}",
                          examples=[{"problem": "2+2", "response": "4"}])
    assert render(prompt, {"problem": "3+3", "domain": "math"}) == [
        {"role": "system", "content": "Be brief (math)."},
        {"role": "user", "content": "Q: 2+2"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Q: 3+3"},
    ]


def test_completion_prompt_with_few_shot_examples():
    prompt = PromptConfig(completion="Question: {problem}\nAnswer:", examples=[
        {"problem": "2+2", "response": " 4"}, {"problem": "1+2", "response": " 3"}])
    assert render(prompt, {"problem": "3+3"}) == (
        "Question: 2+2\nAnswer: 4\n\nQuestion: 1+2\nAnswer: 3\n\nQuestion: 3+3\nAnswer:"
    )


@pytest.mark.parametrize("text, content, expected", [
    ("<think>add them</think>The answer is 4.", None, ("add them", "The answer is 4.")),
    ("add them</think>\n4", None, ("add them", "4")),  # template opened <think> itself
    ("<think>add them and then", None, ("add them and then", "")),  # cut off mid-reasoning
    ("The answer is 4.", None, ("", "The answer is 4.")),
    ("The answer is 4.", "add them", ("add them", "The answer is 4.")),  # server's reasoning_content
])
def test_reasoning_split(text, content, expected):
    completion, reasoning, answer = split_reasoning(text, content, "<think>", "</think>")
    assert (reasoning, answer) == expected
    assert "add them" in completion or not content


def test_token_shares_add_up_to_the_completion():
    assert split_token_counts(10, "abc", "d", 7) == (7, 3)
    assert split_token_counts(10, "abc", "d", None) == (8, 2)  # by characters: 3/4 of 10, rounded
    assert split_token_counts(10, "", "", None) == (0, 10)
    assert split_token_counts(5, "x", "y", 9) == (5, 0)


@pytest.mark.parametrize("config, message", [
    (teacher(prompt={"user": "{problem}", "completion": "{problem}"}), "exactly one of 'user'"),
    (teacher(prompt={"user": "{problem}", "examples": [{"problem": "x"}]}), r"examples\[0\] lacks \['response'\]"),
    (teacher(options={"batch_sise": 4}), "batch_sise"),
    (teacher(backend="openai", options={"concurency": 4}), "concurency"),
    (teacher(sampling={"n": 0}), "n"),
])
def test_config_mistakes_fail_when_the_recipe_loads(config, message):
    with pytest.raises(ValidationError, match=message):
        GenerateConfig.model_validate({"teachers": [config]})


def test_teacher_names_must_be_unique():
    with pytest.raises(ValidationError, match="repeated: \\['t'\\]"):
        GenerateConfig.model_validate({"teachers": [teacher(), teacher()]})


def test_cache_key_ignores_speed_options_and_teacher_name_but_not_sampling():
    frame = problem_frame(2)

    def keys(**fields):
        return [r.key for samples in build_requests(TeacherConfig.model_validate(teacher(**fields)), frame)
                for r in samples]

    base = keys(sampling={"n": 2})
    assert len(set(base)) == 4
    assert keys(sampling={"n": 2}, options={"batch_size": 3, "threads": 1}) == base
    assert keys(sampling={"n": 2}, name="other") == base
    assert keys(sampling={"n": 3})[:2] == base[:2]  # a larger n reuses the first samples
    assert set(keys(sampling={"n": 2, "temperature": 0.1})).isdisjoint(base)
    assert set(keys(sampling={"n": 2, "seed": 1})).isdisjoint(base)
    assert set(keys(sampling={"n": 2}, options={"dtype": "bfloat16"})).isdisjoint(base)


def test_cache_key_changes_when_a_local_model_is_retrained_in_place(tmp_path):
    model_dir = tmp_path / "student"
    model_dir.mkdir()
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"old weights")
    frame = problem_frame(1)

    def key():
        config = TeacherConfig.model_validate(teacher(model=str(model_dir)))
        return build_requests(config, frame)[0][0].key

    before = key()
    assert key() == before, "an unchanged model keeps its cached answers"
    weights.write_bytes(b"new weights, retrained")
    assert key() != before, "retrained weights in the same folder must not reuse old answers"


def test_registered_with_its_columns():
    operator_class = registry()["generate"]
    operator = operator_class(operator_class.Config.model_validate(
        {"teachers": [teacher(prompt={"user": "{problem} ({domain})"})]}))
    assert operator.input_columns() == {"problem_id", "problem", "domain"}
    assert {"completion", "reasoning", "answer_text", "trace_id"} <= operator.output_columns()


def test_importing_the_operator_loads_no_heavy_library():
    code = ("import sys, curate.generate.operators, curate.llm.backends; "
            "heavy = [m for m in ('torch', 'transformers', 'httpx', 'vllm', 'llama_cpp') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def setup_only(config: dict, tmp_path: Path) -> Generate:
    operator = Generate(Generate.Config.model_validate({"teachers": [config]}))
    operator.setup(StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache"))
    return operator


@pytest.mark.parametrize("model", ["/no/such/model.gguf", "./missing-dir", "bundled:no-such-model"])
def test_unknown_model_path_fails_at_setup(tmp_path, model):
    with pytest.raises((GenerationError, FileNotFoundError), match="does not exist|unknown bundled model"):
        setup_only(teacher(model=model), tmp_path)


def test_unknown_hub_model_offline_fails_clearly_before_generating(tmp_path):
    operator = setup_only(teacher(model="no-such-org/no-such-model"), tmp_path)
    ctx = StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(GenerationError, match="cannot load .*'no-such-org/no-such-model'"):
        operator.apply(problem_frame(1), ctx)


def test_progress_counts_problems(tmp_path, monkeypatch):
    """Progress advances in problems whatever the number of teachers and samples."""
    operator = setup_only(teacher(sampling={"n": 3}), tmp_path)
    backend = operator.backends["t"]

    def fake_generate(requests, sink):
        from curate.llm.backends.base import Completion
        for start in range(0, len(requests), 4):
            sink.done([(r, Completion("ok", "stop", 3, 1)) for r in requests[start:start + 4]])

    monkeypatch.setattr(backend, "load", lambda: None)
    monkeypatch.setattr(backend, "generate", fake_generate)
    monkeypatch.setattr(backend, "count_tokens", lambda texts: [1] * len(texts))
    advances = []
    ctx = StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache", on_progress=advances.append)
    out = operator.apply(problem_frame(5), ctx)
    assert out.height == 15 and sum(advances) == 5 and len(advances) > 1


class _FakeVLLM:
    """Stand-in for the documented vLLM offline API: LLM(...).chat/generate with
    SamplingParams, returning RequestOutput-like objects."""

    calls: list = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LLM:
        def __init__(self, model, **kwargs):
            _FakeVLLM.calls.append(("init", model, kwargs))

        def chat(self, messages, sampling_params, use_tqdm, chat_template_kwargs=None):
            _FakeVLLM.calls.append(("chat", messages, sampling_params))
            return [self._output(p) for p in sampling_params]

        def _output(self, params):
            i = params.seed % 3  # the text depends on the request's own seed
            samples = [types.SimpleNamespace(text=f"<think>r{i}</think>a{i}", token_ids=[1] * (i + 3),
                                             finish_reason="stop" if i else "length")]
            return types.SimpleNamespace(prompt_token_ids=[1] * 11, outputs=samples)


def test_vllm_backend_sends_a_whole_chunk_in_one_call_one_request_per_sample(tmp_path, monkeypatch):
    from curate.llm.backends.base import seed_for

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = _FakeVLLM.LLM, _FakeVLLM.SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else None)
    _FakeVLLM.calls.clear()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = teacher(backend="vllm", model=str(model_dir), sampling={"n": 3, "max_tokens": 9},
                     options={"tensor_parallel_size": 2})
    operator = setup_only(config, tmp_path)
    monkeypatch.setattr(operator.backends["t"], "count_tokens", lambda texts: [2] * len(texts))
    out = operator.apply(problem_frame(4), StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache"))
    init, chat = _FakeVLLM.calls
    assert init[2]["tensor_parallel_size"] == 2
    assert len(chat[1]) == 12 and [p.n for p in chat[2]] == [1] * 12
    assert [p.seed for p in chat[2]] == [seed_for(0, i) for i in range(3)] * 4
    assert chat[2][0].max_tokens == 9
    expected = [f"a{seed_for(0, i) % 3}" for i in range(3)]
    assert out.height == 12 and out["answer_text"].to_list()[:3] == expected
    assert out["finish_reason"].to_list()[:3] == ["stop" if seed_for(0, i) % 3 else "length" for i in range(3)]
    assert (out["prompt_tokens"] == 11).all() and (out["reasoning_tokens"] == 2).all()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm")
def test_vllm_on_gpu_with_smollm2(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from curate.models.bundled import smollm2_gguf
    from curate.models.gguf import converted_gguf_dir

    model_dir = converted_gguf_dir(smollm2_gguf(), tmp_path / "cache")
    operator = setup_only(teacher(backend="vllm", model=str(model_dir), sampling={"n": 4, "max_tokens": 32},
                                  options={"gpu_memory_utilization": 0.3, "enforce_eager": True}), tmp_path)
    out = operator.apply(problem_frame(8), StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache"))
    assert out.height == 32 and out["reject_reason"].null_count() == 32
    assert (out["reasoning_tokens"] + out["answer_tokens"] <= 32).all()


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_llama_cpp_backend_with_smollm2(tmp_path):
    config = teacher(backend="llama_cpp", sampling={"n": 2, "max_tokens": 8, "seed": 1}, options={"n_threads": 1})
    out = setup_only(config, tmp_path).apply(
        problem_frame(2), StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache"))
    assert out.height == 4 and out["reject_reason"].null_count() == 4
    assert (out["reasoning_tokens"] + out["answer_tokens"] <= 8).all() and (out["prompt_tokens"] > 20).all()
    again = setup_only(config, tmp_path / "other").apply(
        problem_frame(2), StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "other" / "cache"))
    assert again["completion"].to_list() == out["completion"].to_list()  # seeded per sample


def test_ray_resources_follow_the_teachers():
    from curate.generate.operators import Generate

    def config(*teachers):
        return Generate.Config.model_validate({"teachers": list(teachers)})

    vllm = {"name": "big", "backend": "vllm", "model": "org/model", "prompt": {"user": "{problem}"},
            "options": {"tensor_parallel_size": 4}}
    cpu = {"name": "small", "backend": "transformers", "model": "bundled:smollm2", "prompt": {"user": "{problem}"},
           "options": {"device": "cpu"}}
    cuda = {**cpu, "name": "gpu", "options": {"device": "cuda"}}
    assert Generate(config(cpu)).resources() == {}
    assert Generate(config(cpu, cuda)).resources() == {"num_gpus": 1}
    assert Generate(config(cuda, vllm)).resources() == {"num_gpus": 4}
    from curate.prune.rewrite import RewriteTraces  # the rewriter asks for its teacher's GPUs too

    assert RewriteTraces(RewriteTraces.Config.model_validate({"teacher": vllm})).resources() == {"num_gpus": 4}
    assert RewriteTraces(RewriteTraces.Config.model_validate({"teacher": cuda})).resources() == {"num_gpus": 1}
    assert RewriteTraces(RewriteTraces.Config.model_validate({"teacher": cpu})).resources() == {}


def _fake_backend(operator: Generate, monkeypatch, generated: list[str], batch: int = 2):
    """The teacher's backend answers 'mine <key>' and records which keys it generated."""
    from curate.llm.backends.base import Completion

    backend = operator.backends["t"]

    def fake_generate(requests, sink):
        generated.extend(r.key for r in requests)
        if requests:
            sink.done([(r, Completion(f"mine {r.key}", "stop", 3, 1)) for r in requests])

    monkeypatch.setattr(backend, "load", lambda: None)
    monkeypatch.setattr(backend, "generate", fake_generate)
    monkeypatch.setattr(backend, "claim_size", lambda: batch)
    monkeypatch.setattr(backend, "count_tokens", lambda texts: [1] * len(texts))
    return backend


def test_runs_sharing_a_cache_never_generate_one_request_twice(tmp_path, monkeypatch):
    """Requests another live run has claimed are waited for and read from the cache,
    not generated again (the other run here is a second cache object in this process)."""
    import threading

    from curate.llm import engine
    from curate.llm.backends.base import Completion
    from curate.llm.cache import CACHE_FILE, ResponseCache

    monkeypatch.setattr(engine, "CLAIM_POLL_S", 0.05)
    operator = setup_only(teacher(sampling={"n": 2}), tmp_path)
    generated: list[str] = []
    _fake_backend(operator, monkeypatch, generated)
    frame = problem_frame(3)
    requests = [r for samples in build_requests(operator.config.teachers[0], frame) for r in samples]
    other = ResponseCache(tmp_path / "cache" / CACHE_FILE)
    theirs = requests[1::2]
    claimed, cached, held = other.claim([r.key for r in theirs])
    assert claimed == {r.key for r in theirs} and not cached and not held

    def other_run_finishes():
        other.put("transformers", "m", [(r, Completion(f"theirs {r.key}", "stop", 3, 1)) for r in theirs])

    timer = threading.Timer(0.5, other_run_finishes)
    timer.start()
    ctx = StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    out = operator.apply(frame, ctx)
    timer.join()
    assert sorted(generated) == sorted(r.key for r in requests[0::2])  # only the unclaimed half
    assert ctx.metrics["cache_hits"] == len(theirs) and ctx.metrics["requests"] == 3
    texts = dict(zip(out["sample_index"].cast(str) + out["problem_id"], out["completion"], strict=True))
    assert sum(t.startswith("theirs") for t in texts.values()) == 3
    assert other._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # all released


def test_a_dead_runs_claims_are_taken_over(tmp_path, monkeypatch):
    from curate.llm.cache import CACHE_FILE, ResponseCache

    operator = setup_only(teacher(sampling={"n": 2}), tmp_path)
    generated: list[str] = []
    _fake_backend(operator, monkeypatch, generated)
    frame = problem_frame(2)
    requests = [r for samples in build_requests(operator.config.teachers[0], frame) for r in samples]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    other = ResponseCache(tmp_path / "cache" / CACHE_FILE)
    other.pid = int(dead.stdout)  # claims as if made by that process, which has exited
    other.claim([r.key for r in requests])
    ctx = StepContext(step_id="g", step_dir=tmp_path, cache_dir=tmp_path / "cache")
    out = operator.apply(frame, ctx)
    assert sorted(generated) == sorted(r.key for r in requests)
    assert out["completion"].str.starts_with("mine").all()


def _full_sort_sampler(logits, seeds, temperature, top_p, steps):
    """The sampler's definition, plainly: the whole vocabulary sorted every step."""
    import torch

    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    picks = []
    for _ in range(steps):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        if top_p < 1:
            sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs >= top_p, 0.0)
        cdf = sorted_probs.cumsum(-1)
        draws = torch.stack([torch.rand((), generator=g) for g in generators])
        position = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True)
        picks.append(order.gather(1, position.clamp_(max=cdf.shape[1] - 1)).squeeze(1).tolist())
    return picks


@pytest.mark.parametrize("top_p", [0.3, 0.95, 0.999, 1.0])
def test_row_sampler_picks_what_the_full_sort_picks(top_p):
    """The top-candidates shortcut gives the token the full sort gives: peaked and flat rows
    (a nucleus wider than the candidates), and ties that straddle the candidates' edge
    (logits rounded to a coarse grid, as low-precision models produce)."""
    torch = pytest.importorskip("torch")
    from curate.llm.backends.hf_transformers import RowSampler

    generator = torch.Generator().manual_seed(1)
    vocab = 3000
    peaked = torch.randn(4, vocab, generator=generator) * 6
    flat = torch.randn(2, vocab, generator=generator) * 0.3
    tied = (torch.randn(4, vocab, generator=generator) * 4).round()  # many equal logits
    tied[:, :40] = 9.0  # a block of equal top tokens
    wide_tie = torch.full((2, vocab), -30.0)
    wide_tie[:, 500:2500] = 0.0  # 2,000 equal tokens: more than the candidates hold
    logits = torch.cat([peaked, flat, tied, wide_tie])
    seeds = list(range(len(logits)))
    sampler = RowSampler(seeds, 0.7, top_p, "cpu")
    ours = [sampler(None, logits).argmax(-1).tolist() for _ in range(25)]
    assert ours == _full_sort_sampler(logits, seeds, 0.7, top_p, 25)


def test_row_sampler_draws_each_row_from_its_own_generator():
    """A row's tokens depend on its seed and logits only: alone, or in a batch in any
    order, the same; top_p keeps to the nucleus; the draws follow the softmax."""
    torch = pytest.importorskip("torch")
    from curate.llm.backends.hf_transformers import RowSampler

    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3

    def tokens(rows: list[int], seeds: list[int], steps: int = 30, top_p: float = 1.0) -> list[list[int]]:
        sampler = RowSampler(seeds, 0.8, top_p, "cpu")
        picks = [sampler(None, logits[rows]).argmax(-1).tolist() for _ in range(steps)]
        return [list(column) for column in zip(*picks, strict=True)]

    alone = [tokens([row], [100 + row])[0] for row in range(4)]
    assert tokens([0, 1, 2, 3], [100, 101, 102, 103]) == alone
    assert tokens([3, 1, 0, 2], [103, 101, 100, 102]) == [alone[3], alone[1], alone[0], alone[2]]
    assert tokens([2], [999])[0] != alone[2]  # another seed, other draws

    probs = torch.softmax(logits[0] / 0.8, -1)
    ranked = probs.argsort(descending=True).tolist()
    nucleus = set(ranked[:int((probs[ranked].cumsum(0) < 0.5).sum()) + 1])
    assert set(tokens([0], [5], steps=300, top_p=0.5)[0]) <= nucleus
    counts = torch.bincount(torch.tensor(tokens([0], [6], steps=3000)[0]), minlength=50).float() / 3000
    assert (counts - probs).abs().max() < 0.05

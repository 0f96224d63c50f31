"""The GPU check's measurements (run by bench/gpu_check.sh; see there).

    python bench/gpu_check.py student DIR     # the student: config + tokenizer, random weights
    python bench/gpu_check.py train DIR       # SFT and LoRA through curate's trainer
    python bench/gpu_check.py dpo DIR         # DPO, full weights and LoRA, through curate's trainer
    python bench/gpu_check.py generate DIR    # curate's transformers backend vs the raw loop

Each part adds its figures to $OUT/gpu_check.json (read, updated, written back) and
catches its own failure, so one broken part still leaves the others' figures.
CURATE_GPU_CHECK_DRY=1: a tiny model and a few steps, for checking this script on a CPU.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("OUT") or "/tmp/gpu_check_out")
RESULTS = OUT / "gpu_check.json"
DRY = os.environ.get("CURATE_GPU_CHECK_DRY") == "1"
# Config + tokenizer of SmolLM2-135M-Instruct (its GGUF is too big to carry): bench/gpu_check_prepare.sh
CARRIED = ROOT / ".whl" / "student.tar.gz"
GSM8K = ROOT / "curate" / "data" / "gsm8k" / "train_sample.jsonl"
SYSTEM = "Think step by step, then give the final answer in \\boxed{}."


def record(part: str, figures: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[part] = figures
    RESULTS.write_text(json.dumps(data, indent=2, default=str))
    print(f"[{part}] " + json.dumps(figures, default=str), flush=True)


def guarded(part: str, function, *args) -> bool:
    started = time.perf_counter()
    try:
        figures = function(*args)
    except Exception as error:  # noqa: BLE001 - one part's failure must not stop the others
        traceback.print_exc()
        record(part, {"ok": False, "error": f"{type(error).__name__}: {error}",
                      "seconds": round(time.perf_counter() - started, 1)})
        return False
    record(part, {"ok": True, **figures, "seconds": round(time.perf_counter() - started, 1)})
    return True


def device_info() -> dict:
    import torch
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "cuda": torch.cuda.is_available(),
            "dry_run": DRY}
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        info["trl"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return info


def make_student(target: Path) -> dict:
    """SmolLM2-135M-Instruct's architecture and tokenizer with random weights (bf16 on GPU)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if CARRIED.is_file():
        import tarfile

        with tarfile.open(CARRIED) as archive:
            archive.extractall(target.parent / "carried", filter="data")
        source = target.parent / "carried" / "student"
    else:  # no carried copy: read them off the bundled GGUF
        from curate.models.bundled import smollm2_gguf

        gguf = smollm2_gguf()
        source = target.parent / "from-gguf"
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(source)
        AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    if DRY:
        config.update({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return {"student": str(target), "weights": "random init (SmolLM2-135M-Instruct config + tokenizer; the GGUF "
            "is over the carry limit): tokens/s and memory are real, loss values are not the real model's",
            "parameters": sum(p.numel() for p in model.parameters()), **device_info()}


def publish_like(folder: Path, rows: int) -> Path:
    """A published dataset version: data/train-*.parquet with `messages` (GSM8K solutions)."""
    import polars as pl

    records = [json.loads(line) for line in GSM8K.read_text().splitlines()][:rows]
    messages = []
    for r in records:
        reasoning, answer = r["answer"].rsplit("####", 1)
        messages.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["question"]},
                         {"role": "assistant", "content": f"<think>\n{reasoning.strip()}\n</think>\n\n"
                                                          f"\\boxed{{{answer.strip()}}}"}])
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"messages": messages}).write_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


def preference_pairs(file: Path, rows: int) -> Path:
    """DPO pairs (prompt, chosen, rejected as message lists): a GSM8K solution against the
    same solution ending in a wrong answer."""
    import polars as pl

    records = [json.loads(line) for line in GSM8K.read_text().splitlines()][:rows]
    prompt, chosen, rejected = [], [], []
    for r in records:
        reasoning, answer = r["answer"].rsplit("####", 1)
        wrong = str(int(answer.strip().replace(",", "")) + 1) if answer.strip().replace(",", "").isdigit() else "0"
        prompt.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["question"]}])
        for side, final in ((chosen, answer.strip()), (rejected, wrong)):
            side.append([{"role": "assistant", "content": f"<think>\n{reasoning.strip()}\n</think>\n\n"
                                                          f"\\boxed{{{final}}}"}])
    file.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"prompt": prompt, "chosen": chosen, "rejected": rejected}).write_parquet(file)
    return file


def train_run(student: Path, work: Path, lora: bool, method: str = "sft") -> dict:
    import gc

    import torch

    from curate.train import LoraSettings, TrainConfig, train

    dpo = method == "dpo"
    steps = 3 if DRY else (20 if dpo else 40)
    batch = 2 if DRY else (8 if dpo else 16)
    if dpo:
        dataset = preference_pairs(work / "pairs" / "train.parquet", rows=steps * batch)
    else:
        dataset = publish_like(work / "dataset", rows=steps * batch)
    cuda = torch.cuda.is_available()
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    memory_before = torch.cuda.memory_allocated() if cuda else None
    name = f"{method}-{'lora' if lora else 'full'}"
    config = TrainConfig(student=str(student), dataset=str(dataset), output_dir=work / name, method=method,
                         cache_dir=work / "cache", max_length=256 if DRY else 1024, batch_size=batch,
                         grad_accumulation=1, max_steps=steps, logging_steps=1, warmup_ratio=0.0,
                         lr_scheduler="constant", learning_rate=None if lora else (1e-6 if dpo else 1e-4),
                         save_steps=10_000, lora=LoraSettings(r=16) if lora else None, resume=False)
    result = train(config)
    # What train() left on the GPU once it returned (the issue: an eval or vLLM engine loads next).
    memory_after = torch.cuda.memory_allocated() if cuda else None
    losses = [e["loss"] for e in result.loss_history]
    from curate.train.trainer import choose_precision

    gib = lambda value: round(value / 2**30, 3) if value is not None else None  # noqa: E731
    return {"method": method, "lora": lora, "steps": result.steps, "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_second, 1),
            "train_seconds": round(result.seconds, 2), "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "loss_first5_mean": sum(losses[:5]) / max(len(losses[:5]), 1),
            "loss_last5_mean": sum(losses[-5:]) / max(len(losses[-5:]), 1),
            "rewards_accuracy_last": next((e["rewards/accuracies"] for e in reversed(result.loss_history)
                                           if "rewards/accuracies" in e), None),
            "precision": choose_precision(None, cuda),
            "peak_gpu_mem_gib": gib(torch.cuda.max_memory_allocated()) if cuda else None,
            "gpu_mem_before_gib": gib(memory_before),
            "gpu_mem_after_train_returned_gib": gib(memory_after),
            "gpu_mem_left_by_train_gib": gib(memory_after - memory_before) if cuda else None,
            "final_model": (result.model_dir / "config.json").is_file()}


def prompts(count: int) -> list[str]:
    return [json.loads(line)["question"] for line in GSM8K.read_text().splitlines()][:count]


def curate_generation(student: Path, work: Path, questions: list[str], max_tokens: int, batch: int, seed: int,
                      backend=None):
    """Tokens/s of curate's transformers backend through the generate operator (fresh cache)."""
    import polars as pl

    from curate.core.operator import StepContext
    from curate.generate.operators import Generate

    teacher = {"name": "student", "backend": "transformers", "model": str(student), "prompt": {"user": "{problem}"},
               "reasoning": {"start": "", "end": ""},
               "sampling": {"n": 1, "max_tokens": max_tokens, "temperature": 0.7, "top_p": 0.95, "seed": seed},
               "options": {"batch_size": batch, "dtype": "bfloat16" if _cuda() else "float32"}}
    operator = Generate(Generate.Config.model_validate({"teachers": [teacher]}))
    ctx = StepContext(step_id="g", step_dir=work / f"gen-{seed}", cache_dir=work / f"gen-cache-{seed}")
    operator.setup(ctx)
    if backend is not None:  # the model loaded by an earlier run: only the timing differs
        operator.backends["student"] = backend
    operator.backends["student"].load()
    frame = pl.DataFrame({"problem": questions, "problem_id": [f"p{i}" for i in range(len(questions))],
                          "reference_answer": "", "source": "gsm8k", "domain": "math",
                          "tests": pl.Series([None] * len(questions), dtype=pl.String), "metadata": "{}"})
    _sync()
    started = time.perf_counter()
    out = operator.apply(frame, ctx)
    _sync()
    seconds = time.perf_counter() - started
    tokens = int((out["reasoning_tokens"] + out["answer_tokens"]).sum())
    return tokens / seconds, tokens, operator.backends["student"]


def raw_generation(model, tokenizer, questions: list[str], max_tokens: int, batch: int, seed: int):
    """The plain loop: chat template, left-padded batches in input order, model.generate."""
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in questions]
    eos = tokenizer.eos_token_id
    _sync()
    started = time.perf_counter()
    tokens = 0
    torch.manual_seed(seed)
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start:start + batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=max_tokens, do_sample=True, temperature=0.7, top_p=0.95,
                                    top_k=0, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, encoded["input_ids"].shape[1]:].tolist():
            used = len(row)
            for position, token in enumerate(row):
                if token == eos:
                    used = position + 1
                    break
                if token == tokenizer.pad_token_id:
                    used = position
                    break
            tokens += used
    _sync()
    return tokens / (time.perf_counter() - started), tokens


def generation(student: Path, work: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    count, max_tokens, batch, repeats = (8, 8, 4, 2) if DRY else (64, 128, 32, 3)
    questions = prompts(count)
    tokenizer = AutoTokenizer.from_pretrained(student, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if _cuda() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if _cuda() else torch.float32).to(device)
    model.eval()
    # warm-up of both paths (CUDA context, kernels) outside the measurements
    # Same max_tokens as the measured runs: the loaded backend is reused and keeps its teacher's sampling.
    _, _, backend = curate_generation(student, work, questions[:batch], max_tokens, batch, seed=1000)
    raw_generation(model, tokenizer, questions[:batch], max_tokens, batch, seed=1000)
    runs = []
    for repeat in range(repeats):
        order = ("curate", "raw") if repeat % 2 == 0 else ("raw", "curate")
        for path in order:
            if path == "curate":
                speed, tokens, backend = curate_generation(student, work, questions, max_tokens, batch, repeat, backend)
            else:
                speed, tokens = raw_generation(model, tokenizer, questions, max_tokens, batch, repeat)
            runs.append({"path": path, "repeat": repeat, "tokens_per_s": round(speed, 1), "new_tokens": tokens})
    # Equal work or no figure: both paths must have generated about as many tokens.
    curate_tokens = sum(r["new_tokens"] for r in runs if r["path"] == "curate")
    raw_tokens = sum(r["new_tokens"] for r in runs if r["path"] == "raw")
    if not 0.9 <= curate_tokens / max(raw_tokens, 1) <= 1.1:
        raise RuntimeError(f"unequal work: curate generated {curate_tokens} tokens, raw {raw_tokens}")
    curate_speeds = [r["tokens_per_s"] for r in runs if r["path"] == "curate"]
    raw_speeds = [r["tokens_per_s"] for r in runs if r["path"] == "raw"]
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {"prompts": count, "max_new_tokens": max_tokens, "batch_size": batch, "runs": runs,
            "curate_median_tok_s": median(curate_speeds), "raw_median_tok_s": median(raw_speeds),
            "curate_over_raw": round(median(curate_speeds) / median(raw_speeds), 3),
            "note": "random weights rarely emit EOS: both paths generate close to max_new_tokens per prompt"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str]) -> int:
    part, folder = argv[0], Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    student = folder / "student"
    if part == "student":
        return 0 if guarded("student", make_student, student) else 1
    if part == "train":
        ok = guarded("sft", train_run, student, folder / "train", False)
        return 0 if guarded("lora", train_run, student, folder / "train", True) and ok else 1
    if part == "dpo":  # full weights: precomputed reference log-probs, no second copy; LoRA: adapters off
        ok = guarded("dpo_full", train_run, student, folder / "train", False, "dpo")
        return 0 if guarded("dpo_lora", train_run, student, folder / "train", True, "dpo") and ok else 1
    if part == "generate":
        return 0 if guarded("generation", generation, student, folder) else 1
    raise SystemExit(f"unknown part {part!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Training throughput: `curate.train.train` vs TRL's SFTTrainer called directly.

Both train the same student on the same examples with the same settings; the figure is
trained (non-padding) tokens per second, end to end (model load, tokenization, steps,
final save) and for the training loop alone. Every library both sides use is imported
before the first timing (otherwise the first run pays for it); the side that runs first
alternates between repeats (TRL, curate / curate, TRL / ...), and each side's median,
minimum and maximum are reported with the per-repeat ratio, since other processes on a
shared machine make single timings noisy.

    python bench/train.py                       # bundled SmolLM2-135M, 16 GSM8K examples
    python bench/train.py --dataset published/v1 --student HuggingFaceTB/SmolLM2-360M-Instruct
    python bench/train.py --method dpo          # DPO: curate's method: dpo vs TRL's DPOTrainer
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
GSM8K_TRAIN = REPO / "curate" / "data" / "gsm8k" / "train_sample.jsonl"


def gsm8k_dataset(folder: Path, rows: int) -> Path:
    """A published-layout folder of GSM8K solutions written as think-then-answer turns."""
    records = [json.loads(line) for line in GSM8K_TRAIN.read_text().splitlines()[:rows]]
    messages = []
    for record in records:
        reasoning, answer = record["answer"].rsplit("####", 1)
        messages.append([
            {"role": "user", "content": record["question"]},
            {"role": "assistant", "content": f"<think>\n{reasoning.strip()}\n</think>\n\n\\boxed{{{answer.strip()}}}"},
        ])
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"messages": messages}).write_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


def run_curate(config) -> dict:
    from curate.train import train

    started = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - started
    shutil.rmtree(config.output_dir)  # a saved student is ~0.5 GB; the next run does not need it
    return {"tokens": result.tokens, "total_s": seconds, "loop_s": result.seconds}


def trainer_arguments(config, learning_rate: float) -> dict:
    """The TrainingArguments a user sets by hand for either trainer: the same as curate's."""
    return dict(
        output_dir=str(config.output_dir), learning_rate=learning_rate, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accumulation,
        activation_checkpointing=False, bf16=False, use_cpu=True, seed=config.seed, data_seed=config.seed,
        save_steps=config.save_steps, logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding", report_to="none",
    )


def train_timed(trainer, config, started: float) -> dict:
    """Train, save, and report tokens, total time and the loop's own time."""
    timer = loop_timer()
    trainer.add_callback(timer)
    trainer.train()
    trainer.save_model(str(config.output_dir / "final"))
    seconds = time.perf_counter() - started
    shutil.rmtree(config.output_dir)  # a saved student is ~0.5 GB; the next run does not need it
    return {"tokens": trainer.state.num_input_tokens_seen, "total_s": seconds, "loop_s": timer.seconds}


def loop_timer():
    """A TRL callback that times the training loop alone (`.seconds`), as curate's result does."""
    from transformers import TrainerCallback

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    return LoopTimer()


def run_trl_direct(config, student_dir: str, learning_rate: float) -> dict:
    """What a user would write by hand with TRL: load, split messages, SFTConfig, train, save."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    files = sorted((Path(config.dataset) / "data").glob(f"{config.split}-*.parquet"))
    messages = pl.concat([pl.read_parquet(f, columns=["messages"]) for f in files])["messages"].to_list()
    dataset = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in messages])
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    args = SFTConfig(max_length=config.max_length, packing=config.packing, completion_only_loss=True,
                     **trainer_arguments(config, learning_rate))
    return train_timed(SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer),
                       config, started)


# --- DPO: `curate.train.train(method="dpo")` vs TRL's DPOTrainer called directly ---------

PAIR_TRACES = REPO / "tests" / "fixtures" / "preference"


def preference_dataset(folder: Path) -> Path:
    """A published-layout folder whose preference config holds pairs of real MATH-500 traces
    (Qwen2.5-14B vs Sky-T1, one right and one wrong), formed by `preference_pairs`."""
    from curate.select.pairs import PreferencePairsConfig, form_pairs
    from curate.sources.skythought import read_skythought

    traces = pl.concat([read_skythought(PAIR_TRACES / f"math500_{name}.jsonl", name)
                        for name in ("qwen25_shortcot", "skyt1_longcot")])
    # The files' own labels stand in for verify here: the benchmark times training, not verification.
    status = pl.when(pl.col("correct")).then(pl.lit("correct")).otherwise(pl.lit("wrong"))
    traces = traces.with_columns(verify_status=status)
    pairs, _ = form_pairs(traces, PreferencePairsConfig())

    def turn(role: str, column: str) -> pl.Expr:
        return pl.concat_list(pl.struct(pl.lit(role).alias("role"), pl.col(column).alias("content")))

    (folder / "preference").mkdir(parents=True, exist_ok=True)
    pairs.select(prompt=turn("user", "problem"), chosen=turn("assistant", "chosen_completion"),
                 rejected=turn("assistant", "rejected_completion")).write_parquet(
        folder / "preference" / "train-00000-of-00001.parquet")
    return folder


def run_dpo_trl_direct(config, student_dir: str, learning_rate: float) -> dict:
    """What a user would write by hand with TRL: read the pairs, DPOConfig, DPOTrainer, train, save."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    started = time.perf_counter()
    files = sorted((Path(config.dataset) / "preference").glob(f"{config.split}-*.parquet"))
    pairs = pl.concat([pl.read_parquet(f, columns=["prompt", "chosen", "rejected"]) for f in files])
    dataset = Dataset.from_polars(pairs)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    args = DPOConfig(max_length=config.max_length, beta=config.dpo.beta, loss_type=list(config.dpo.loss_type),
                     **trainer_arguments(config, learning_rate))
    return train_timed(DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer),
                       config, started)


def dpo_main(args, work: Path, student_dir: str) -> None:
    """Same pairs, same settings; the order alternates (trl, curate, curate, trl, ...) so
    a slow spell on a shared machine hits both sides; median and spread (min-max) reported."""
    from curate.train import TrainConfig

    dataset = args.dataset or preference_dataset(work / "dpo-dataset")
    learning_rate = 5e-6

    def config(name: str, repeat: int) -> TrainConfig:
        return TrainConfig(
            method="dpo", student=student_dir, dataset=str(dataset), output_dir=work / f"dpo-{name}-{repeat}",
            cache_dir=work / "cache", max_length=args.max_length, overlong="truncate", max_steps=args.steps,
            batch_size=args.batch_size, grad_accumulation=args.grad_accumulation, learning_rate=learning_rate,
            save_steps=10_000, logging_steps=1, bf16=False, gradient_checkpointing=False,
        )

    runs: dict[str, list[dict]] = {"trl": [], "curate": []}
    for repeat in range(args.repeats):
        order = ("trl", "curate") if repeat % 2 == 0 else ("curate", "trl")
        for name in order:
            if name == "trl":
                runs["trl"].append(run_dpo_trl_direct(config("trl", repeat), student_dir, learning_rate))
            else:
                runs["curate"].append(run_curate(config("curate", repeat)))
    tokens = {name: {r["tokens"] for r in results} for name, results in runs.items()}
    if tokens["trl"] != tokens["curate"]:
        sys.exit(f"the two sides trained different token counts: {tokens}")
    print(f"DPO, student {args.student}, {args.steps} steps x {args.batch_size} pairs x {args.grad_accumulation}, "
          f"max_length {args.max_length}, {tokens['trl'].pop()} tokens per run, {args.repeats} runs each, "
          "alternating order")
    print(f"{'':8} {'end-to-end tok/s median (min-max)':>36} {'loop tok/s median (min-max)':>30}")
    medians = {}
    for name, results in runs.items():
        totals = [r["tokens"] / r["total_s"] for r in results]
        loops = [r["tokens"] / r["loop_s"] for r in results]
        medians[name] = (statistics.median(totals), statistics.median(loops))
        print(f"{name:8} {medians[name][0]:12.1f} ({min(totals):.1f}-{max(totals):.1f}){'':8}"
              f"{medians[name][1]:10.1f} ({min(loops):.1f}-{max(loops):.1f})")
    print(f"ratio curate/trl: end-to-end {medians['curate'][0] / medians['trl'][0]:.3f}, "
          f"loop {medians['curate'][1] / medians['trl'][1]:.3f} (goal >= 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft",
                        help="dpo: DPO on real MATH-500 trace pairs (default dataset) instead of SFT.")
    parser.add_argument("--dataset", type=Path, help="Published dataset version folder (default: GSM8K sample).")
    parser.add_argument("--student", default="bundled:smollm2")
    parser.add_argument("--rows", type=int, default=16, help="GSM8K examples when --dataset is not given.")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accumulation", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work_name:
        run_all(args, Path(work_name))


def run_all(args, work: Path) -> None:
    from curate.train import TrainConfig
    from curate.train.student import resolve_student

    student_dir = resolve_student(args.student, work / "cache")  # converted once, outside the timings
    if args.method == "dpo":
        dpo_main(args, work, student_dir)
        return
    dataset = args.dataset or gsm8k_dataset(work / "dataset", args.rows)
    learning_rate = 5e-5

    def config(name: str, repeat: int) -> TrainConfig:
        return TrainConfig(
            student=student_dir, dataset=str(dataset), output_dir=work / f"{name}-{repeat}", cache_dir=work / "cache",
            max_length=args.max_length, max_steps=args.steps, batch_size=args.batch_size,
            grad_accumulation=args.grad_accumulation, learning_rate=learning_rate, save_steps=10_000,
            logging_steps=1, bf16=False, gradient_checkpointing=False,
        )

    import datasets  # noqa: F401 - imports are paid here, before any timing
    import trl  # noqa: F401

    import curate.train  # noqa: F401

    runs: dict[str, list[dict]] = {"trl": [], "curate": []}
    sides = {"trl": lambda r: run_trl_direct(config("trl", r), student_dir, learning_rate),
             "curate": lambda r: run_curate(config("curate", r))}
    for repeat in range(args.repeats):
        order = ["trl", "curate"] if repeat % 2 == 0 else ["curate", "trl"]
        for name in order:
            runs[name].append(sides[name](repeat))
        print(f"repeat {repeat + 1} ({' then '.join(order)}): " + ", ".join(
            f"{n} {runs[n][-1]['tokens'] / runs[n][-1]['total_s']:.1f} tok/s" for n in order), flush=True)
    tokens = {name: {r["tokens"] for r in results} for name, results in runs.items()}
    if tokens["trl"] != tokens["curate"]:
        sys.exit(f"the two sides trained different token counts: {tokens}")

    print(f"student {args.student}, {args.steps} steps x {args.batch_size} x {args.grad_accumulation}, "
          f"{tokens['trl'].pop()} tokens per run, {args.repeats} runs each, first side alternating")
    print(f"{'':8} {'end-to-end tok/s median [min-max]':>36} {'loop tok/s median [min-max]':>30}")
    for name, results in runs.items():
        end_to_end = [r["tokens"] / r["total_s"] for r in results]
        loop = [r["tokens"] / r["loop_s"] for r in results]
        print(f"{name:8} {_spread(end_to_end):>36} {_spread(loop):>30}")
    for label, field in (("end-to-end", "total_s"), ("loop", "loop_s")):
        ratios = [t[field] / c[field] for t, c in zip(runs["trl"], runs["curate"], strict=True)]
        print(f"ratio curate/trl {label}: {_spread(ratios, 3)} (per repeat: "
              f"{', '.join(f'{r:.3f}' for r in ratios)}; goal >= 0.95)")


def _spread(values: list[float], digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]")

if __name__ == "__main__":
    main()

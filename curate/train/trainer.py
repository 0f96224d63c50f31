"""`train(config)`: fine-tuning of a student with TRL's SFTTrainer (`method: sft`) or
DPOTrainer (`method: dpo`, on the dataset's preference pairs).

The work is TRL's; this module decides what a distillation run needs around it: which
student weights to load (GGUF dequantized once), which examples fit (over-long traces
dropped rather than cut), a learning rate for the student's size, precision for the
device, resuming from the newest checkpoint, and a `final/` model plus `train.json`.
Run under `accelerate launch` (or torchrun) for several GPUs; Trainer handles the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.core.io import write_json
from curate.llm.backends.base import free_accelerator_memory
from curate.train.config import TrainConfig
from curate.train.data import DatasetError, read_conversations, read_preferences
from curate.train.student import resolve_student

log = logging.getLogger(__name__)

FINAL_DIR = "final"
RESULT_FILE = "train.json"


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    student: str
    examples: int
    dropped_overlong: int
    steps: int
    train_loss: float
    loss_history: list[dict] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    resumed_from: str | None = None
    method: str = "sft"

    def to_json(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass
class PreparedRun:
    trainer: Any  # trl.SFTTrainer or trl.DPOTrainer
    student: str
    examples: int
    dropped_overlong: int


def default_learning_rate(parameters: int, lora: bool) -> float:
    """Peak LR by student size: the rates common SFT-distillation recipes use.

    Full fine-tuning uses ~1e-5 for 7B-32B students and larger steps for small ones;
    adapters train far fewer weights and take ~10x larger rates.
    """
    if lora:
        return 2e-4 if parameters < 10e9 else 1e-4
    if parameters < 1e9:
        return 5e-5
    if parameters < 4e9:
        return 2e-5
    if parameters < 15e9:
        return 1e-5
    return 5e-6


def train(config: TrainConfig, callbacks: Sequence = ()) -> TrainResult:
    """Fine-tune `config.student` on `config.dataset`; resumes from the newest checkpoint.

    `callbacks` are transformers TrainerCallbacks (progress display, early stop).
    """
    prepared = prepare(config)
    trainer = prepared.trainer
    resume = _checkpoint_to_resume(config)
    meter = _token_meter()
    for callback in (meter, *callbacks):
        trainer.add_callback(callback)
    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        model_dir = config.output_dir / FINAL_DIR
        _save_final(trainer, config, model_dir)
        state, main_process = trainer.state, trainer.is_world_process_zero()
    finally:  # the student's memory goes back before an eval or vLLM engine loads next
        release_trainer(trainer)
    result = TrainResult(
        output_dir=config.output_dir,
        model_dir=model_dir,
        student=prepared.student,
        examples=prepared.examples,
        dropped_overlong=prepared.dropped_overlong,
        steps=state.global_step,
        train_loss=float(output.training_loss),
        loss_history=[{k: e[k] for k in ("step", "loss", *_DPO_LOGS) if k in e}
                      for e in state.log_history if "loss" in e],
        tokens=int(state.num_input_tokens_seen),
        seconds=meter.seconds,
        tokens_per_second=meter.tokens_per_second(state.num_input_tokens_seen),
        resumed_from=str(resume) if resume else None,
        method=config.method,
    )
    del prepared, trainer  # the last references: the student's memory can go back now
    free_accelerator_memory()
    if main_process:
        write_json({"config": config.model_dump(mode="json"), "result": result.to_json()},
                   config.output_dir / RESULT_FILE)
    return result


def release_trainer(trainer) -> None:
    """Drop what a finished trainer holds on the accelerator: the model (and DPO's reference
    model), optimizer and scheduler, and accelerate's references to them, so that they are
    freed once the caller's last reference goes (the trainer state and its log stay)."""
    trainer.accelerator.free_memory()
    for name in ("model", "model_wrapped", "ref_model", "optimizer", "lr_scheduler"):
        if hasattr(trainer, name):
            setattr(trainer, name, None)


# DPO's own figures kept in the loss history beside the loss.
_DPO_LOGS = ("rewards/accuracies", "rewards/margins")


def prepare(config: TrainConfig) -> PreparedRun:
    """The trainer for `config`, data tokenized and labels masked, before any step."""
    from transformers import AutoTokenizer, set_seed

    set_seed(config.seed)  # before the model exists: LoRA adapters are initialised in the trainer
    student = resolve_student(config.student, config.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(student, trust_remote_code=config.trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"student {config.student} has no chat template: train an instruct/chat model")
    _dataset(config)  # fail before loading the model
    if config.method == "dpo":
        return _prepare_dpo(config, student, tokenizer)
    return _prepare_sft(config, student, tokenizer)


def _prepare_sft(config: TrainConfig, student: str, tokenizer) -> PreparedRun:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    conversations = read_conversations(_dataset(config), config.split)
    examples = conversations.height
    if config.overlong == "drop":
        conversations = _drop_overlong(conversations, tokenizer, config.max_length)
    if conversations.is_empty():
        raise DatasetError(f"{config.dataset}: no example fits max_length={config.max_length} tokens")
    dataset = Dataset.from_polars(conversations.select("prompt", "completion"))

    use_cuda = torch.cuda.is_available()
    precision = choose_precision(config.bf16, use_cuda)
    model = AutoModelForCausalLM.from_pretrained(student, **_model_kwargs(config, precision))
    learning_rate = config.learning_rate or default_learning_rate(
        parameter_count(model), lora=config.lora is not None
    )
    args = sft_config(config, learning_rate=learning_rate, precision=precision, use_cuda=use_cuda)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=_lora_config(config))
    return PreparedRun(trainer, student, examples, examples - conversations.height)


def _prepare_dpo(config: TrainConfig, student: str, tokenizer) -> PreparedRun:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    pairs = read_preferences(_dataset(config), config.split)
    examples = pairs.height
    if config.overlong == "drop":
        # TRL would cut an over-long pair at max_length, possibly before the two sides differ.
        fits = (_fits(pairs, "chosen", tokenizer, config.max_length)
                & _fits(pairs, "rejected", tokenizer, config.max_length))
        pairs = pairs.filter(fits)
    if pairs.is_empty():
        raise DatasetError(f"{config.dataset}: no preference pair fits max_length={config.max_length} tokens")
    dataset = Dataset.from_polars(pairs.select("prompt", "chosen", "rejected"))

    use_cuda = torch.cuda.is_available()
    precision = choose_precision(config.bf16, use_cuda)
    model = AutoModelForCausalLM.from_pretrained(student, **_model_kwargs(config, precision))
    # DPO moves less than SFT: a tenth of the SFT rate for the student's size, as DPO recipes do.
    learning_rate = config.learning_rate or default_learning_rate(
        parameter_count(model), lora=config.lora is not None) / 10
    args = dpo_config(config, learning_rate=learning_rate, precision=precision, use_cuda=use_cuda)
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=_lora_config(config))
    return PreparedRun(trainer, student, examples, examples - pairs.height)


def choose_precision(bf16: bool | None, use_cuda: bool) -> str:
    """'bf16', 'fp16' or 'fp32'. Automatic (bf16 None): bf16 on GPUs that compute in it
    natively (compute capability 8.0+: A100, H100, RTX 30xx+), fp16 mixed precision on
    older ones (V100, T4 only emulate bf16, several times slower), fp32 on CPU."""
    if bf16 is not None:
        return "bf16" if bf16 else "fp32"
    if not use_cuda:
        return "fp32"
    import torch

    major, _ = torch.cuda.get_device_capability()
    return "bf16" if major >= 8 else "fp16"


def parameter_count(model) -> int:
    """Parameters of the student as trained, counting 4-bit weights (bitsandbytes packs two
    per byte of storage, so `numel()` halves them) at their real number."""
    total = 0
    for parameter in model.parameters():
        if type(parameter).__name__ == "Params4bit":
            total += parameter.numel() * 2 * parameter.element_size()  # uint8 storage: 2 per byte
        else:
            total += parameter.numel()
    return total


def sft_config(config: TrainConfig, learning_rate: float, precision: str, use_cuda: bool):
    from trl import SFTConfig

    return SFTConfig(
        max_length=config.max_length,
        packing=config.packing,
        completion_only_loss=config.loss_on == "assistant",
        **_trainer_arguments(SFTConfig, config, learning_rate, precision, use_cuda),
    )


def dpo_config(config: TrainConfig, learning_rate: float, precision: str, use_cuda: bool):
    from trl import DPOConfig

    settings = config.dpo
    return DPOConfig(
        max_length=config.max_length,
        beta=settings.beta,
        loss_type=list(settings.loss_type),
        loss_weights=settings.loss_weights,
        label_smoothing=settings.label_smoothing,
        # Full weights: the reference log-probs are computed once before training, from the
        # student as loaded, instead of TRL holding a second copy of the model all along
        # (with LoRA the reference is the base with the adapters off: no copy either way).
        precompute_ref_log_probs=settings.precompute_ref_log_probs or config.lora is None,
        **_trainer_arguments(DPOConfig, config, learning_rate, precision, use_cuda),
    )


def _dataset(config: TrainConfig) -> str:
    if config.dataset is None:  # a recipe's train section gets the version it just published
        raise DatasetError("train: no dataset given (set `dataset`, or publish in the same recipe)")
    return config.dataset


def _trainer_arguments(config_class, config: TrainConfig, learning_rate: float, precision: str,
                       use_cuda: bool) -> dict:
    """The transformers.TrainingArguments both methods share: schedule, batch, precision, checkpoints."""
    import dataclasses

    checkpointing = config.gradient_checkpointing
    checkpointing = use_cuda if checkpointing is None else checkpointing
    # `activation_checkpointing` from transformers 5.23; vLLM pins older ones, which call it
    # `gradient_checkpointing` (an alias, deprecated, on 5.23+).
    names = {f.name for f in dataclasses.fields(config_class)}
    checkpoint_field = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    version_options: dict[str, Any] = {checkpoint_field: checkpointing}
    # TRL loads more from the student's name (DPO's reference model, the processing class):
    # with the same permission to run its code as the student got.
    if "trust_remote_code" in names:
        version_options["trust_remote_code"] = config.trust_remote_code
    return dict(
        output_dir=str(config.output_dir),
        learning_rate=learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a value below 1 is a share of the steps (transformers 5)
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        **version_options,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not use_cuda,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
    )


def _attention(config: TrainConfig, use_cuda: bool) -> str | None:
    """The attention kernel: the configured one; for packing on a GPU, flash attention when
    installed (packed sequences are kept apart only by kernels that read position_ids)."""
    if config.attn_implementation or not (config.packing and use_cuda):
        return config.attn_implementation
    import importlib.util

    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    log.warning("packing without flash attention (pip install flash-attn): packed examples may attend "
                "to each other; set attn_implementation, or packing: false")
    return None


def _model_kwargs(config: TrainConfig, precision: str) -> dict:
    import torch

    use_cuda = torch.cuda.is_available()
    # fp16 mixed precision keeps fp32 master weights (the GradScaler refuses fp16 ones).
    kwargs = {"dtype": torch.bfloat16 if precision == "bf16" else torch.float32,
              "trust_remote_code": config.trust_remote_code}
    attention = _attention(config, use_cuda)
    if attention:
        kwargs["attn_implementation"] = attention
    if config.lora and config.lora.load_in_4bit:
        from transformers import BitsAndBytesConfig

        if not use_cuda:
            raise ValueError("lora.load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
        )
        # Each rank (accelerate launch / torchrun) puts its copy on its own GPU; without a
        # device_map every rank would load onto GPU 0 and accelerate refuses to train it.
        kwargs["device_map"] = {"": local_device_index()}
    return kwargs


def local_device_index() -> int:
    """This process's GPU under accelerate/torchrun (LOCAL_RANK), 0 when run alone."""
    import os

    try:
        from accelerate import PartialState

        return int(PartialState().local_process_index)
    except Exception:  # noqa: BLE001 - accelerate absent or not initialisable: the launcher's variable
        return int(os.environ.get("LOCAL_RANK", 0))


def _lora_config(config: TrainConfig):
    if config.lora is None:
        return None
    from peft import LoraConfig

    settings = config.lora
    return LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=settings.target_modules, task_type="CAUSAL_LM",
    )


def _fits(pairs: pl.DataFrame, side: str, tokenizer, max_length: int) -> pl.Series:
    """Whether prompt + `side` fits max_length, tokenized as TRL's DPOTrainer tokenizes it."""
    full = [p + c for p, c in zip(pairs["prompt"].to_list(), pairs[side].to_list(), strict=True)]
    token_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    return pl.Series([len(ids) <= max_length for ids in token_ids])


def _drop_overlong(conversations: pl.DataFrame, tokenizer, max_length: int) -> pl.DataFrame:
    # The same call TRL tokenizes with, so a kept example is never truncated by it.
    prompts, completions = conversations["prompt"].to_list(), conversations["completion"].to_list()
    full = [p + c for p, c in zip(prompts, completions, strict=True)]
    token_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    lengths = pl.Series("tokens", [len(ids) for ids in token_ids])
    return conversations.filter(lengths <= max_length)


def _checkpoint_to_resume(config: TrainConfig) -> Path | None:
    if config.resume is False:
        return None
    if config.resume is not True:
        checkpoint = Path(config.resume)
        if not (checkpoint / "trainer_state.json").is_file():
            raise FileNotFoundError(f"resume: {checkpoint} is not a checkpoint folder (no trainer_state.json)")
        return checkpoint
    if not config.output_dir.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(config.output_dir))
    return Path(last) if last else None


def _save_final(trainer, config: TrainConfig, model_dir: Path) -> None:
    if config.lora is None or not config.lora.merges():
        trainer.save_model(str(model_dir))
        return
    trainer.save_model(str(config.output_dir / "adapter"))
    if trainer.is_world_process_zero():
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(model_dir))
        trainer.processing_class.save_pretrained(str(model_dir))


def _token_meter():
    """A callback timing the training loop and counting the tokens it saw (a resumed run: its own)."""
    from transformers import TrainerCallback

    class TokenMeter(TrainerCallback):
        start_tokens = 0
        started = 0.0
        seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start_tokens = state.num_input_tokens_seen
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

        def tokens_per_second(self, tokens_seen: int) -> float:
            return (tokens_seen - self.start_tokens) / self.seconds if self.seconds else 0.0

    return TokenMeter()

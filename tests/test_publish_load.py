"""Each published version loads as itself with `datasets.load_dataset`, whatever else the
Hugging Face cache holds (issue 30, item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.publish import PublishConfig, publish_run
from tests.test_publish import make_run


def run_with_pairs(tmp_path: Path, name: str, keep: int, pairs: int) -> Path:
    """The fixture run with its first `keep` rows, and `pairs` preference pairs beside the
    last step's output (as a preference_pairs step leaves them)."""
    run_dir = make_run(tmp_path, name, transform=lambda frame: frame.head(keep))
    last = json.loads((run_dir / "run.json").read_text())["steps"][-1]["output"]
    pl.DataFrame({
        "pair_id": [f"{name}-pair-{i}" for i in range(pairs)],
        "problem_id": [f"p{i}" for i in range(pairs)],
        "problem": [f"{name}: problem {i}" for i in range(pairs)],
        "chosen_completion": [f"right {i}" for i in range(pairs)],
        "rejected_completion": [f"wrong {i}" for i in range(pairs)],
        "chosen_trace_id": [f"c{i}" for i in range(pairs)],
        "rejected_trace_id": [f"r{i}" for i in range(pairs)],
    }).write_parquet(run_dir / Path(last).parent / "pairs.parquet")
    return run_dir


@pytest.fixture
def fresh_hf_cache(tmp_path, monkeypatch) -> Path:
    """One HF datasets cache for the whole test, as a user's ~/.cache/huggingface is."""
    import datasets.config

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


def test_two_datasets_with_a_v1_each_load_their_own_rows(tmp_path, fresh_hf_cache):
    from datasets import load_dataset

    versions = {}
    for name, keep, pairs in (("a", 3, 2), ("b", 5, 4)):
        result = publish_run(run_with_pairs(tmp_path, f"run-{name}", keep, pairs),
                             PublishConfig(output_dir=tmp_path / "published" / name))
        assert result.version == "v1"
        versions[name] = (result.folder, keep, pairs)

    for name, (folder, rows, pairs) in versions.items():  # a first: b must not get a's cached rows
        default = load_dataset(str(folder), split="train")
        preference = load_dataset(str(folder), "preference", split="train")
        assert default.num_rows == rows, name
        assert preference.num_rows == pairs, name
        assert preference["pair_id"] == [f"run-{name}-pair-{i}" for i in range(pairs)]
    assert any(fresh_hf_cache.rglob("*.arrow"))


def test_a_folder_republished_with_other_rows_loads_the_new_rows(tmp_path, fresh_hf_cache):
    """The same path, deleted and published again from another run: no stale cache entry."""
    import shutil

    from datasets import load_dataset

    config = PublishConfig(output_dir=tmp_path / "published")
    first = publish_run(run_with_pairs(tmp_path, "run-1", 3, 2), config)
    assert load_dataset(str(first.folder), "preference", split="train").num_rows == 2
    for path in first.folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(first.folder)

    second = publish_run(run_with_pairs(tmp_path, "run-2", 5, 4), config)
    assert second.folder == first.folder
    assert load_dataset(str(second.folder), split="train").num_rows == 5
    assert load_dataset(str(second.folder), "preference", split="train").num_rows == 4

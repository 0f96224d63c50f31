"""Publish: Hub-layout version folders, dataset card, lineage, versioning, diff."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from curate.publish import (
    PublishConfig,
    RunDirError,
    diff_versions,
    list_versions,
    publish_run,
)
from curate.schema import content_hash

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "publish" / "run"


def make_run(tmp_path: Path, name: str = "run", transform=None, manifest_changes: dict | None = None) -> Path:
    """A copy of the fixture run, its output rewritten by `transform` and run.json updated."""
    run_dir = tmp_path / name
    shutil.copytree(FIXTURE_RUN, run_dir)
    if transform is not None:
        output = transform(pl.read_parquet(run_dir / "output.parquet"))
        output.write_parquet(run_dir / "output.parquet")
    if manifest_changes:
        manifest = json.loads((run_dir / "run.json").read_text())
        manifest.update(manifest_changes)
        (run_dir / "run.json").write_text(json.dumps(manifest))
    return run_dir


def fixture_output() -> pl.DataFrame:
    return pl.read_parquet(FIXTURE_RUN / "output.parquet")


def fixture_manifest() -> dict:
    return json.loads((FIXTURE_RUN / "run.json").read_text())


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime_ns) of every file under `folder`."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def config(tmp_path) -> PublishConfig:
    return PublishConfig(output_dir=tmp_path / "published", system_prompt="Think, then answer in \\boxed{}.")


# --- layout, format, loading ------------------------------------------------------------


def test_version_folder_has_hub_layout_and_loads_with_datasets(tmp_path, config):
    from datasets import load_dataset

    result = publish_run(FIXTURE_RUN, config)

    assert result.created and result.version == "v1" and result.folder == config.output_dir / "v1"
    files = sorted(str(p.relative_to(result.folder)) for p in result.folder.rglob("*") if p.is_file())
    assert files == ["README.md", "data/train-00000-of-00001.parquet", "lineage.json"]
    dataset = load_dataset(str(result.folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    output = fixture_output()
    assert dataset.num_rows == output.height == result.rows
    row = dataset[0]
    source = output.filter(pl.col("trace_id") == row["trace_id"]).row(0, named=True)
    assert [turn["role"] for turn in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == config.system_prompt
    assert row["messages"][1]["content"] == source["problem"]
    assistant = row["messages"][2]["content"]
    assert assistant == f"<think>\n{source['reasoning'].strip()}\n</think>\n\n{source['answer_text'].strip()}"
    for column in ("problem", "reasoning", "answer_text", "teacher", "pass_rate", "band", "trace_id", "problem_id"):
        assert row[column] == source[column]


def test_messages_follow_template_and_think_tags(tmp_path):
    # One trace without reasoning: its assistant turn is the answer alone, no empty think block.
    no_reasoning = fixture_output()["trace_id"][0]
    run_dir = make_run(tmp_path, transform=lambda f: f.with_columns(
        reasoning=pl.when(pl.col("trace_id") == no_reasoning).then(pl.lit("")).otherwise(pl.col("reasoning"))
    ))
    config = PublishConfig(
        output_dir=tmp_path / "out", think_open="<reasoning>", think_close="</reasoning>",
        user_template="Solve:\n{problem}\nAnswer in \\boxed{}.",
    )
    folder = publish_run(run_dir, config).folder
    published = pl.read_parquet(folder / "data").join(
        pl.read_parquet(run_dir / "output.parquet"), on="trace_id", suffix="_run"
    )

    for row in published.iter_rows(named=True):
        user, assistant = row["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert user["content"] == f"Solve:\n{row['problem']}\nAnswer in \\boxed{{}}."
        if row["trace_id"] == no_reasoning:
            assert assistant["content"] == row["answer_text"].strip()
        else:
            assert assistant["content"].startswith("<reasoning>\n")
            assert assistant["content"].endswith(f"\n</reasoning>\n\n{row['answer_text'].strip()}")
            assert "<think>" not in assistant["content"]


def test_absent_stage_columns_are_skipped(tmp_path):
    run_dir = make_run(tmp_path, transform=lambda f: f.drop(
        "pass_rate", "band", "correct", "reasoning_tokens", "answer_tokens"
    ))
    folder = publish_run(run_dir, PublishConfig(output_dir=tmp_path / "out")).folder

    columns = pl.read_parquet_schema(next((folder / "data").glob("*.parquet")))
    assert "band" not in columns and "pass_rate" not in columns and "messages" in columns
    card = (folder / "README.md").read_text()
    assert "### Difficulty" not in card
    assert "| `reasoning` | characters |" in card  # lengths fall back to characters


def test_large_outputs_are_split_into_numbered_shards(tmp_path):
    from datasets import load_dataset

    output = fixture_output()
    shard_size_mb = output.estimated_size("mb") / 3.5  # about 4 shards
    folder = publish_run(FIXTURE_RUN, PublishConfig(output_dir=tmp_path / "out", shard_size_mb=shard_size_mb)).folder

    shards = sorted((folder / "data").iterdir())
    assert len(shards) > 1
    assert [p.name for p in shards] == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    lineage = json.loads((folder / "lineage.json").read_text())
    assert [f["path"] for f in lineage["files"]] == [f"data/{p.name}" for p in shards]
    for entry in lineage["files"]:
        assert entry["sha256"] == hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest()
    assert sum(f["rows"] for f in lineage["files"]) == output.height
    loaded = load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(loaded["trace_id"]) == sorted(output["trace_id"].to_list())


# --- dataset card ---------------------------------------------------------------------------


class _Structure(HTMLParser):
    """Headings, and per table its header cells and body row count, from rendered HTML."""

    def __init__(self):
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.tables: list[dict] = []
        self._tag: str | None = None
        self._text = ""
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3", "th"):
            self._tag, self._text = tag, ""
        elif tag == "table":
            self.tables.append({"headers": [], "rows": 0})
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.tables[-1]["rows"] += 1

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        if tag == self._tag:
            if tag == "th":
                self.tables[-1]["headers"].append(self._text.strip())
            else:
                self.headings.append((tag, self._text.strip()))
            self._tag = None

    def handle_data(self, data):
        if self._tag:
            self._text += data


def test_card_renders_to_well_formed_markdown_with_the_funnel(tmp_path, config):
    from huggingface_hub import DatasetCard
    from markdown_it import MarkdownIt

    folder = publish_run(FIXTURE_RUN, config).folder
    text = (folder / "README.md").read_text()
    manifest = fixture_manifest()

    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "mit"  # the only source's license
    assert header["size_categories"] == ["n<1K"]
    lineage = json.loads((folder / "lineage.json").read_text())
    checksum = content_hash(*(f"{f['path']}:{f['sha256']}" for f in lineage["files"]))
    assert header["configs"] == [{"config_name": "default", "description": f"version v1, data files sha256 {checksum}",
                                  "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert header["pretty_name"] == manifest["recipe"]["name"]
    assert {"task_categories", "tags"} <= set(header)
    assert DatasetCard(text).data.license == "mit"  # the Hub's own parser agrees

    body = DatasetCard(text).text
    structure = _Structure()
    structure.feed(MarkdownIt("commonmark").enable("table").render(body))
    headings = structure.headings
    assert headings[0] == ("h1", manifest["recipe"]["name"])
    assert [h for level, h in headings if level == "h2"] == [
        "Load it", "Format", "How it was made", "Sources and licenses", "Recipe", "Lineage", "Citation",
    ]
    assert [h for level, h in headings if level == "h3"] == [
        "Funnel", "Teachers and sampling", "Deduplication and decontamination", "Difficulty", "Lengths",
    ]
    funnel = next(t for t in structure.tables if t["headers"][:2] == ["#", "Step"])
    assert funnel["rows"] == len(manifest["steps"])
    teachers = next(t for t in structure.tables if t["headers"][0] == "Teacher")
    assert teachers["rows"] == fixture_output()["teacher"].n_unique()
    columns = next(t for t in structure.tables if t["headers"][0] == "Column")
    assert columns["rows"] == len(pl.read_parquet_schema(next((folder / "data").glob("*.parquet"))))

    chain = " → ".join(f"`{s['id']}` {s['rows_out']:,}" for s in manifest["steps"])
    assert f"{chain} → **{fixture_output().height} published**" in body
    for step in manifest["steps"]:
        for reason, count in (step.get("rejected") or {}).items():
            assert f"`{reason}` {count:,}" in body
    assert "eval_sets=" in body and "aime24" in body  # which eval sets decontamination checked
    assert "Removed per eval set: `amc23` 2." in body  # from the rejections' reject_detail
    assert "cf98f3b3bbb457ad9e2bb7baf9a0125b6b88caa8" in body  # teacher model revision
    assert "temperature=0.7" in body
    assert manifest["recipe"]["text"].strip() in body
    assert "@misc{" in body
    # '<think>' from a column description is text, not a swallowed HTML tag.
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert "&lt;think&gt;" in html and "<think>" not in html.replace("<code>&lt;think&gt;</code>", "")


def test_card_says_when_no_dedup_or_decontamination_ran(tmp_path):
    manifest = fixture_manifest()
    steps = [s for s in manifest["steps"] if s["op"] not in ("dedup", "decontaminate")]
    run_dir = make_run(tmp_path, manifest_changes={"steps": steps})
    card = (publish_run(run_dir, PublishConfig(output_dir=tmp_path / "out")).folder / "README.md").read_text()
    assert "No deduplication or decontamination step ran" in card


# --- lineage -----------------------------------------------------------------------------------


def test_lineage_records_recipe_steps_sources_models_and_row_lineage(tmp_path, config):
    folder = publish_run(FIXTURE_RUN, config).folder
    lineage = json.loads((folder / "lineage.json").read_text())
    manifest = fixture_manifest()

    assert lineage["recipe"]["text"] == manifest["recipe"]["text"]
    assert lineage["recipe"]["sha256"] == manifest["recipe"]["sha256"]
    assert [(s["id"], s["fingerprint"], s["rows_in"], s["rows_out"]) for s in lineage["steps"]] == [
        (s["id"], s["fingerprint"], s["rows_in"], s["rows_out"]) for s in manifest["steps"]
    ]
    assert [s["sha256"] for s in lineage["sources"]] == [s["sha256"] for s in manifest["sources"]]
    assert lineage["packages"]["run"] == manifest["packages"]
    assert {"polars", "huggingface-hub"} <= set(lineage["packages"]["publish"])
    models = {m["model"]: m for m in lineage["models"]}
    output = fixture_output()
    assert set(models) == set(output["model"].unique())
    assert models["Qwen/Qwen2.5-14B-Instruct"]["revision"] == "cf98f3b3bbb457ad9e2bb7baf9a0125b6b88caa8"
    assert sum(m["rows"] for m in lineage["models"]) == output.height

    rows = pl.read_parquet(folder / "data")
    for column in ("trace_id", "problem_id", "teacher", "sampling_params_hash", "verifier_version"):
        assert rows[column].null_count() == 0, column
    # One sampling-parameter set per teacher in the fixture.
    per_teacher = rows.group_by("teacher").agg(pl.col("sampling_params_hash").n_unique())
    assert per_teacher["sampling_params_hash"].to_list() == [1, 1]
    assert rows["sampling_params_hash"].n_unique() == 2
    assert rows["verifier_version"].str.contains("math-verify 0.9.0").all()


def test_hf_token_never_reaches_card_or_lineage(tmp_path, monkeypatch):
    token = "hf_" + "Q7x" * 12
    monkeypatch.setenv("HF_TOKEN", token)
    recipe = fixture_manifest()["recipe"] | {"text": fixture_manifest()["recipe"]["text"] + f"# token: {token}\n"}
    run_dir = make_run(tmp_path, manifest_changes={"recipe": recipe})
    folder = publish_run(run_dir, PublishConfig(output_dir=tmp_path / "out")).folder
    for path in folder.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert "<redacted>" in (folder / "lineage.json").read_text()


# --- versions ------------------------------------------------------------------------------------


def test_same_content_is_the_same_version(tmp_path, config):
    first = publish_run(FIXTURE_RUN, config)
    before = snapshot(config.output_dir)
    # Same rows in another order, and another shard size: still the same content.
    reordered = make_run(tmp_path, transform=lambda f: f.reverse())
    again = publish_run(reordered, config.model_copy(update={"shard_size_mb": 0.001}))

    assert (again.version, again.fingerprint, again.created) == (first.version, first.fingerprint, False)
    assert snapshot(config.output_dir) == before
    assert list_versions(config.output_dir)["version"].to_list() == ["v1"]


def test_changed_content_makes_a_new_version_and_leaves_old_ones_untouched(tmp_path, config):
    output = fixture_output()
    dropped, edited = output["trace_id"][0], output["trace_id"][1]
    v1 = publish_run(FIXTURE_RUN, config)
    v1_files = snapshot(v1.folder)

    changed = make_run(tmp_path, transform=lambda f: f.filter(pl.col("trace_id") != dropped).with_columns(
        answer_text=pl.when(pl.col("trace_id") == edited).then(pl.lit("The answer is 42.")).otherwise("answer_text")
    ))
    v2 = publish_run(changed, config)

    assert v2.created and v2.version == "v2" and v2.fingerprint != v1.fingerprint
    assert v2.rows == output.height - 1
    assert snapshot(v1.folder) == v1_files  # byte-identical and not rewritten
    assert all(p.stat().st_mode & 0o222 == 0 for p in v1.folder.rglob("*") if p.is_file())  # read-only
    versions = list_versions(config.output_dir)
    assert versions.select("version", "rows").rows() == [("v1", output.height), ("v2", output.height - 1)]
    assert versions["fingerprint"].to_list() == [v1.fingerprint, v2.fingerprint]

    diff = diff_versions(config.output_dir, "v1", "v2")
    assert (diff.key, diff.added, diff.removed, diff.changed) == ("trace_id", [], [dropped], [edited])
    assert diff.unchanged == output.height - 2
    assert "1 removed, 1 changed" in diff.summary()


def test_changed_recipe_alone_makes_a_new_version(tmp_path, config):
    v1 = publish_run(FIXTURE_RUN, config)
    recipe = fixture_manifest()["recipe"] | {"sha256": "0" * 16, "text": "name: math500-distill\nversion: 2\n"}
    v2 = publish_run(make_run(tmp_path, manifest_changes={"recipe": recipe}), config)
    assert v2.created and v2.version == "v2"
    diff = diff_versions(config.output_dir, v1.version, v2.version)
    assert (diff.added, diff.removed, diff.changed) == ([], [], [])


def test_semver_bumps_by_kind_of_change(tmp_path):
    config = PublishConfig(output_dir=tmp_path / "out", version_scheme="semver")
    recipe = fixture_manifest()["recipe"] | {"sha256": "1" * 16}
    first_id = fixture_output()["trace_id"][0]

    assert publish_run(FIXTURE_RUN, config).version == "1.0.0"
    assert publish_run(make_run(tmp_path, "recipe", manifest_changes={"recipe": recipe}), config).version == "1.0.1"
    fewer_rows = make_run(tmp_path, "rows", transform=lambda f: f.filter(pl.col("trace_id") != first_id))
    assert publish_run(fewer_rows, config).version == "1.1.0"
    other_columns = config.model_copy(update={"columns": ["problem", "answer_text"]})
    assert publish_run(fewer_rows, other_columns).version == "2.0.0"
    assert list_versions(config.output_dir)["version"].to_list() == ["1.0.0", "1.0.1", "1.1.0", "2.0.0"]


def test_explicit_version_must_be_new(tmp_path, config):
    publish_run(FIXTURE_RUN, config.model_copy(update={"version": "2025.06"}))
    changed = make_run(tmp_path, transform=lambda f: f.head(3))
    with pytest.raises(FileExistsError, match="2025.06"):
        publish_run(changed, config.model_copy(update={"version": "2025.06"}))


def test_failed_publish_leaves_no_half_version(tmp_path, monkeypatch):
    config = PublishConfig(output_dir=tmp_path / "out", shard_size_mb=fixture_output().estimated_size("mb") / 3)
    real_write = pl.DataFrame.write_parquet
    calls = []

    def failing_write(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", failing_write)
    with pytest.raises(OSError, match="disk full"):
        publish_run(FIXTURE_RUN, config)
    monkeypatch.undo()

    assert len(calls) == 2  # it failed between two shards
    assert list(config.output_dir.iterdir()) == [config.output_dir / ".publish.lock"]
    assert list_versions(config.output_dir).height == 0
    assert publish_run(FIXTURE_RUN, config).version == "v1"


def test_killed_publish_leaves_no_half_version(tmp_path):
    out = tmp_path / "out"
    # The process is killed (SIGKILL) at the worst moment: all files written, folder not yet renamed.
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from curate.publish import PublishConfig, publish_run
        real_rename = os.rename
        def rename(src, dst, *args, **kwargs):
            if Path(src).name.startswith(".building-"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_rename(src, dst, *args, **kwargs)
        os.rename = rename
        publish_run(Path({str(FIXTURE_RUN)!r}), PublishConfig(output_dir=Path({str(out)!r})))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)

    assert completed.returncode == -signal.SIGKILL, completed.stderr.decode()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".building-")]
    assert len(leftovers) == 1  # the half-built version is hidden, not a version
    assert list_versions(out).height == 0
    assert not (out / "v1").exists()

    result = publish_run(FIXTURE_RUN, PublishConfig(output_dir=out))
    assert result.version == "v1" and result.created
    assert not [p for p in out.iterdir() if p.name.startswith(".building-")]


# --- errors ---------------------------------------------------------------------------------


def test_bad_run_directories_give_clear_errors(tmp_path, config):
    with pytest.raises(RunDirError, match="run.json is missing"):
        publish_run(tmp_path, config)
    with pytest.raises(RunDirError, match="has not finished"):
        publish_run(make_run(tmp_path, "unfinished", manifest_changes={"finished_at": None}), config)
    with pytest.raises(RunDirError, match="'problem' column"):
        publish_run(make_run(tmp_path, "no-problem", transform=lambda f: f.drop("problem")), config)
    with pytest.raises(RunDirError, match="no rows"):
        publish_run(make_run(tmp_path, "empty", transform=lambda f: f.clear()), config)
    repeated = make_run(tmp_path, "repeated", transform=lambda f: pl.concat([f, f.head(1)]))
    with pytest.raises(RunDirError, match="repeated trace_id"):
        publish_run(repeated, config)
    bad_params = make_run(tmp_path, "bad-params", transform=lambda f: f.with_columns(generation_params=pl.lit("{oops")))
    with pytest.raises(RunDirError, match="generation_params of trace .* is not JSON"):
        publish_run(bad_params, config)


def test_config_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValidationError, match="extra"):
        PublishConfig(output_dri="x")
    with pytest.raises(ValidationError, match="problem"):
        PublishConfig(user_template="no placeholder")
    with pytest.raises(ValidationError, match="version"):
        PublishConfig(version="../v1")
    with pytest.raises(ValidationError):
        PublishConfig(hub_repo_id="not a repo id")
    assert PublishConfig().private is True


def test_diff_names_the_missing_version(tmp_path, config):
    publish_run(FIXTURE_RUN, config)
    with pytest.raises(FileNotFoundError, match="versions: v1"):
        diff_versions(config.output_dir, "v1", "v9")

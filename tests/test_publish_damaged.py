"""A published version edited by hand (a data file deleted, rows changed, a shard added) is
never reported as "unchanged, already published": `publish`, `versions` and `diff` check
the sha256 lineage.json records and name the file that differs (issue 34)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.test_hostile import _invoke, _snapshot
from tests.test_publish import make_run

SHARD = "data/train-00000-of-00001.parquet"


@pytest.fixture
def published(tmp_path) -> Path:
    """A dataset folder with v1 (the fixture run) and v2 (its first three rows)."""
    for run in (make_run(tmp_path, "run"), make_run(tmp_path, "smaller", transform=lambda frame: frame.head(3))):
        code, err = _invoke(["publish", str(run), "--to", "pub"], tmp_path)
        assert code == 0, err
    return tmp_path / "pub"


def change_rows(path: Path) -> None:
    path.chmod(0o644)  # published files are read-only; a hand edit starts here
    pl.read_parquet(path).head(1).write_parquet(path)


DAMAGE = {
    "rows-changed": (change_rows, "sha256", "differs"),
    "file-deleted": (Path.unlink, "missing", "records it"),
    "shard-added": (lambda path: (path.parent / "train-00009-of-00010.parquet").write_bytes(path.read_bytes()),
                    "train-00009-of-00010.parquet: not recorded", "load_dataset"),
}


def _one_error(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_publish_of_the_same_run_refuses_a_damaged_version(published, damage):
    edit, *expect = DAMAGE[damage]
    edit(published / "v1" / SHARD)
    before = _snapshot(published)

    code, err = _invoke(["publish", "run", "--to", "pub"], published.parent)

    line = _one_error(err)
    assert code == 2
    assert str(Path("pub") / "v1" / "data") in line and all(fragment in line for fragment in expect), line
    assert "publish the run again" in line  # what to do
    assert "unchanged" not in err
    assert _snapshot(published) == before


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_versions_marks_the_damaged_version_and_names_the_file(published, damage):
    edit, *expect = DAMAGE[damage]
    edit(published / "v1" / SHARD)

    code, err = _invoke(["versions", "pub"], published.parent)

    line = _one_error(err)
    assert code == 2
    assert str(Path("pub") / "v1") in line and all(fragment in line for fragment in expect), line


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_diff_refuses_a_damaged_version(published, damage):
    edit, *expect = DAMAGE[damage]
    edit(published / "v2" / SHARD)

    code, err = _invoke(["diff", "pub", "v1", "v2"], published.parent)

    line = _one_error(err)
    assert code == 2
    assert str(Path("pub") / "v2") in line and all(fragment in line for fragment in expect), line


def test_push_refuses_a_damaged_version_before_reaching_the_hub(published, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a request would fail otherwise
    change_rows(published / "v1" / SHARD)

    code, err = _invoke(["push", "pub/v1", "--repo", "someone/data"], published.parent)

    line = _one_error(err)
    assert code == 2 and SHARD in line and "differs" in line, line


def test_intact_versions_list_diff_and_republish_as_before(published):
    from curate.publish import list_versions

    (published / "v1" / "data" / ".DS_Store").write_bytes(b"\0")  # hidden: datasets' globs skip it

    assert list_versions(published)["damaged"].to_list() == [None, None]
    assert _invoke(["versions", "pub"], published.parent)[0] == 0
    assert _invoke(["diff", "pub", "v1", "v2"], published.parent)[0] == 0
    code, err = _invoke(["publish", "run", "--to", "pub"], published.parent)
    assert code == 0 and "unchanged, already published" in err

"""The command line, point by point (issue 36, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.publish import HubPushResult
from tests.test_runner import run_cli

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_ablate_without_an_ablate_section_is_one_line_and_exit_2():
    line = one_error_line(run_cli("ablate", RECIPES / "quickstart.yaml"))
    assert "has no `ablate:` section" in line and "Traceback" not in line


def test_validate_offline_checks_an_openai_recipe_without_its_server_and_says_what_it_skipped(tmp_path):
    recipe = tmp_path / "openai-server.yaml"
    # port 9 (discard) answers nothing: the server check fails, and says how to check the rest
    text = (RECIPES / "openai-server.yaml").read_text()
    recipe.write_text(text.replace("http://127.0.0.1:8000/v1", "http://127.0.0.1:9/v1"))
    unreachable = run_cli("validate", recipe)
    assert "does not answer" in unreachable.stderr and "--offline" in unreachable.stderr
    assert unreachable.returncode == 2
    offline = run_cli("validate", recipe, "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "ok (" in offline.stdout
    assert "http://127.0.0.1:9/v1 not contacted" in offline.stderr


def test_a_repeated_push_says_nothing_was_uploaded(monkeypatch, tmp_path):
    import io

    import curate.publish
    from curate import cli

    def already_there(folder, repo_id, **options):
        return HubPushResult(repo_id, "v1", "main", "abc123", f"https://hub/{repo_id}", created=False)

    monkeypatch.setattr(curate.publish, "push_to_hub", already_there)
    monkeypatch.setattr(cli.console, "file", io.StringIO())
    with pytest.raises(SystemExit) as exit_info:
        cli.app(["push", str(tmp_path), "--repo", "me/data"])
    assert exit_info.value.code in (0, None)
    printed = cli.console.file.getvalue()
    assert "nothing uploaded" in printed and "pushed" not in printed


def test_operators_is_a_table_of_one_line_each_with_details_by_name():
    import os
    import subprocess
    import sys

    def curate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "curate.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"})

    listing = curate("operators")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:-1] if line and not line.startswith(" ")]
    assert names == list(json.loads(curate("operators", "--json").stdout))
    assert len(listing.stdout.splitlines()) < 2 * len(names) + 3
    details = run_cli("operators", "sample")
    assert details.returncode == 0 and "seed" in details.stdout and "'problem_id'" in details.stdout
    single = json.loads(run_cli("operators", "sample", "--json").stdout)
    assert list(single) == ["sample"] and single["sample"]["fields"]["seed"]["type"] == "int"
    assert "did you mean sample" in one_error_line(run_cli("operators", "sampel"))


def test_a_finished_run_with_every_row_rejected_says_which_steps_rejected_them(tmp_path):
    from tests.test_runner import make_recipe

    recipe, _ = make_recipe(tmp_path, max_length=0)
    recipe.write_text(recipe.read_text() + f"publish:\n  messages: false\n  output_dir: {tmp_path / 'published'}\n")
    for command in (("run", recipe), ("publish", tmp_path / "run")):
        line = one_error_line(run_cli(*command))
        assert "the run finished, but no row is left to publish" in line, command
        assert "drop_long rejected 12 (mostly too_long)" in line and "rerun" not in line, command
    assert not (tmp_path / "published").exists()


def test_output_option_moves_the_published_dataset_with_the_run(tmp_path):
    from tests.test_runner import make_recipe

    recipe, _ = make_recipe(tmp_path)
    recipe.write_text(recipe.read_text() + "publish:\n  messages: false\n")
    result = run_cli("run", recipe, "-o", tmp_path / "elsewhere", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "published" / "v1" / "lineage.json").is_file()
    assert not (tmp_path / "published").exists() and not (tmp_path / "run").exists()
    placed = tmp_path / "placed"
    recipe.write_text(recipe.read_text() + f"  output_dir: {placed}\n")  # the recipe's own choice wins
    assert run_cli("run", recipe, "-o", tmp_path / "other", cwd=tmp_path).returncode == 0
    assert (placed / "v1").is_dir() and not (tmp_path / "other" / "published").exists()

"""The runner: checkpoints, resume after SIGKILL, rejections, atomic outputs, summary."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from curate.core.io import atomic_path, write_parquet

SUPPORT = Path(__file__).parent / "support"


def make_recipe(tmp_path, seconds=0.0, rows=12, max_length=40):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"problem {i} " + "x" * (i * 5), "answer": str(i)}) + "\n"
                            for i in range(rows)))
    log = tmp_path / "calls.log"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""\
name: resume-test
sources:
  - name: toy
    path: {data.name}
steps:
  - op: slow_copy
    log: {log}
    seconds: {seconds}
    chunk_size: 1
  - op: drop_long
    max_length: {max_length}
output:
  dir: {tmp_path / 'run'}
""")
    return recipe, log


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, str(SUPPORT / "run_cli.py"), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, **kwargs)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_run_writes_outputs_rejections_and_manifest(tmp_path):
    recipe, log = make_recipe(tmp_path)
    result = run_cli("run", recipe)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    output = pl.read_parquet(run_dir / "output.parquet")
    rejections = pl.read_parquet(run_dir / "rejections.parquet")
    assert (output["length"] <= 40).all()
    assert rejections.height == 12 - output.height > 0
    assert set(rejections["reject_reason"]) == {"too_long"} and set(rejections["step"]) == {"drop_long"}
    manifest = json.loads((run_dir / "run.json").read_text())
    assert [s["id"] for s in manifest["steps"]] == ["load", "slow_copy", "drop_long"]
    assert manifest["steps"][2]["rejected"] == {"too_long": rejections.height}
    assert manifest["steps"][2]["rows_out"] == output.height
    assert manifest["sources"][0]["rows"] == 12 and len(manifest["sources"][0]["sha256"]) == 64
    assert "rows in" in result.stderr and "too_long" in result.stderr  # the summary table


def test_rerun_skips_finished_steps_and_a_config_change_reruns_from_there(tmp_path):
    recipe, log = make_recipe(tmp_path)
    assert run_cli("run", recipe).returncode == 0
    assert len(calls(log)) == 12
    second = run_cli("run", recipe)
    assert second.returncode == 0 and len(calls(log)) == 12  # nothing re-executed
    assert "cached" in second.stderr
    changed = run_cli("run", recipe, "--set", "drop_long.max_length=60")
    assert changed.returncode == 0 and len(calls(log)) == 12  # only the filter reran
    assert pl.read_parquet(tmp_path / "run" / "output.parquet")["length"].max() > 40


def test_sigkill_mid_step_resumes_without_redoing_finished_chunks(tmp_path):
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference_recipe, _ = make_recipe(reference_dir)
    assert run_cli("run", reference_recipe).returncode == 0

    recipe, log = make_recipe(tmp_path, seconds=0.3)
    process = subprocess.Popen([sys.executable, str(SUPPORT / "run_cli.py"), "run", str(recipe)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(calls(log)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = len(calls(log))
    assert 5 <= done_before_kill < 12
    # Everything on disk after the kill is whole: no partial parquet anywhere.
    for parquet in (tmp_path / "run").rglob("*.parquet"):
        pl.read_parquet(parquet)
    assert not (tmp_path / "run" / "output.parquet").exists()

    result = run_cli("run", recipe)
    assert result.returncode == 0, result.stderr
    processed = [line.split()[2] for line in calls(log)]
    # Each chunk is processed once, except at most the one in flight at the kill.
    assert len(set(processed)) == 12 and len(processed) <= 13
    resumed = pl.read_parquet(tmp_path / "run" / "output.parquet")
    expected = pl.read_parquet(reference_dir / "run" / "output.parquet")
    assert resumed.equals(expected)
    assert pl.read_parquet(tmp_path / "run" / "rejections.parquet").drop("step").equals(
        pl.read_parquet(reference_dir / "run" / "rejections.parquet").drop("step"))
    # run.json sums both attempts: the killed one counted up to its last finished chunk
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    killed, resumed_attempt = manifest["attempts"]
    assert (killed["status"], resumed_attempt["status"]) == ("killed", "done")
    assert done_before_kill - 2 <= killed["requests"] <= done_before_kill
    # The chunks the resumed attempt had to (re)do. A kill after a chunk's part is stored but
    # before run.json is rewritten loses that one chunk's count: neither attempt records it.
    assert 12 - killed["requests"] - 1 <= resumed_attempt["requests"] <= 12 - killed["requests"]
    assert killed["requests"] + resumed_attempt["requests"] >= 11
    assert manifest["totals"]["requests"] == killed["requests"] + resumed_attempt["requests"]
    assert manifest["totals"]["attempts"] == 2
    assert manifest["totals"]["seconds"] == pytest.approx(killed["seconds"] + resumed_attempt["seconds"], abs=0.01)


def test_a_run_dir_is_used_by_one_run_at_a_time(tmp_path):
    from curate.core.rundir import LOCK, RunDir

    recipe, log = make_recipe(tmp_path)
    with RunDir(tmp_path / "run").lock():
        blocked = run_cli("run", recipe)
    assert blocked.returncode == 2 and calls(log) == []
    message = " ".join(blocked.stderr.split())
    assert f"pid {os.getpid()} on {os.uname().nodename}, started 20" in message
    assert "in use by another run" in message
    # a lock file left by a killed run (no process holds it any more) is taken over
    (tmp_path / "run" / LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "started_at": "x"}))
    assert run_cli("run", recipe).returncode == 0 and len(calls(log)) == 12


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_parquet(pl.DataFrame({"a": [1]}), tmp_path / "out.parquet")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.parquet").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("killed")
    assert pl.read_parquet(target)["a"].to_list() == [1]  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # and no temp file is left


def test_validate_command_checks_without_running(tmp_path):
    recipe, log = make_recipe(tmp_path)
    result = run_cli("validate", recipe)
    assert result.returncode == 0 and "slow_copy -> drop_long" in result.stdout
    assert not (tmp_path / "run").exists() and not log.exists()
    bad = run_cli("validate", recipe, "--set", "drop_long.max_length=long")
    assert bad.returncode == 2 and f"{recipe} (--set 'drop_long.max_length=long'): steps[1].max_length" in bad.stderr

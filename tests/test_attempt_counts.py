"""run.json counts what a killed attempt spent inside a step, not only up to its last
finished chunk (issue 36, item 7: '12 requests against 24 made')."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One global step that sends "requests" one at a time, logging each (fsync'd) as it is made.
SCRIPT = textwrap.dedent("""
    import os, sys, time
    import polars as pl
    from curate.core.operator import Operator, OperatorConfig, register

    class RequestingConfig(OperatorConfig):
        log: str

    @register
    class Requesting(Operator):
        name = "requesting"
        Config = RequestingConfig
        scope = "global"
        reads = ("problem",)
        adds = ("length",)

        def apply(self, frame, ctx):
            for _ in range(frame.height):
                time.sleep(0.1)
                with open(self.config.log, "a") as log:
                    log.write("request\\n")
                    log.flush()
                    os.fsync(log.fileno())
                ctx.count("requests")
            return frame.with_columns(length=pl.col("problem").str.len_chars())

    from curate.cli import app
    app(sys.argv[1:])
""")


def test_a_killed_attempt_counts_the_requests_it_made_mid_step(tmp_path):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"problem {i}", "answer": str(i)}) + "\n" for i in range(200)))
    log = tmp_path / "requests.log"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: counts\nsources:\n  - name: toy\n    path: {data.name}\nsteps:\n"
                      f"  - op: requesting\n    log: {log}\noutput:\n  dir: {tmp_path / 'run'}\n")
    script = tmp_path / "run_requesting.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    process = subprocess.Popen([sys.executable, str(script), "run", str(recipe)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while (not log.exists() or len(log.read_text().splitlines()) < 30) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    made = len(log.read_text().splitlines())
    assert 30 <= made < 200, "the kill must land mid-step"
    (attempt,) = json.loads((tmp_path / "run" / "run.json").read_text())["attempts"]
    # Counted up to the last write, at most about a second (10 requests here) before the kill.
    assert made - 12 <= attempt["requests"] <= made

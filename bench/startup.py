"""How long `curate --help` and `curate operators` take (the target: under 2 s).

    python bench/startup.py [--repeat 5]

Baseline in the same run: `python -c pass`, the interpreter's own start-up.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(command: list[str], repeat: int) -> float:
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    curate = shutil.which("curate") or sys.exit("curate is not installed in this environment")
    baseline = timed([sys.executable, "-c", "pass"], args.repeat)
    print(f"python -c pass        {baseline:6.3f} s (baseline)")
    for command in (["--help"], ["operators"]):
        seconds = timed([curate, *command], args.repeat)
        print(f"curate {' '.join(command):<14} {seconds:6.3f} s  ({seconds / baseline:4.1f}x baseline)")


if __name__ == "__main__":
    main()

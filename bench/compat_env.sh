#!/usr/bin/env bash
# The training tests again under the highest transformers the latest vLLM allows (vLLM pins
# an upper bound, so `pip install '.[vllm,train]'` trains with an older transformers than
# the main venv's). No second torch: only that transformers goes into a small folder put
# ahead of the main venv's packages on PYTHONPATH; everything else (torch, trl, peft,
# tokenizers) is the main venv's.
#   bash bench/compat_env.sh [PYTHON] [DIR]       (make compat; .ci/run calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DIR=${2:-.venv-compat}
started=$(date +%s)
# vLLM's own transformers requirement, read from its metadata only (no multi-GB download).
spec=$("$PY" -m pip install --dry-run --no-deps --ignore-installed --quiet --report - vllm 2>/dev/null \
  | "$PY" -c 'import json, sys
r = json.load(sys.stdin)["install"][0]["metadata"]
print(next((d.split(";")[0].replace(" ", "") for d in r.get("requires_dist", []) if d.startswith("transformers")), ""))' \
  || true)
spec=${spec:-"transformers>=5.16.1,<5.21.0"}  # vllm 0.33's, when the index cannot be asked
echo "vLLM allows: $spec"
if [ "$(cat "$DIR/spec" 2>/dev/null)" != "$spec" ] || [ ! -d "$DIR/site/transformers" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PY" -m pip install -q --no-deps --target "$DIR/site" "$spec"
  echo "$spec" >"$DIR/spec"
fi
version=$(PYTHONPATH="$DIR/site" "$PY" -c "import transformers; print(transformers.__version__)")
echo "transformers $version (main venv: $("$PY" -c "import transformers; print(transformers.__version__)"))"
PYTHONPATH="$DIR/site:$PWD" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_train_compat.py tests/test_gpu_paths.py tests/test_train.py
echo "compat: transformers $version, $(($(date +%s) - started)) s"

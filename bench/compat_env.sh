#!/usr/bin/env bash
# The training tests again under the transformers the latest vLLM allows (vLLM pins an upper
# bound, so `pip install '.[vllm,train]'` trains with an older transformers than the main
# venv's). The version is locked in requirements/compat.txt. No second torch: only that
# transformers goes into a small folder put ahead of the main venv's packages on PYTHONPATH;
# everything else (torch, trl, peft, tokenizers) is the main venv's.
#   bash bench/compat_env.sh [PYTHON] [DIR]          (make compat; .ci/run calls it)
#   bash bench/compat_env.sh [PYTHON] [DIR] --lock   (make lock: re-read vLLM's bound)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DIR=${2:-.venv-compat}
LOCK=requirements/compat.txt
started=$(date +%s)
if [ "${3:-}" = "--lock" ]; then
  # vLLM's own transformers requirement, read from its metadata only (no multi-GB download),
  # resolved to the highest version it allows.
  spec=$("$PY" -m pip install --dry-run --no-deps --ignore-installed --quiet --report - vllm \
    | "$PY" -c 'import json, sys
r = json.load(sys.stdin)["install"][0]["metadata"]
print(next(d.split(";")[0].replace(" ", "") for d in r["requires_dist"] if d.startswith("transformers")))')
  version=$("$PY" -m pip install --dry-run --no-deps --ignore-installed --quiet --report - "$spec" \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])')
  printf '# The highest transformers that vLLM allows (%s); written by `make lock`.\ntransformers==%s\n' \
    "$spec" "$version" >"$LOCK"
  cat "$LOCK"
  exit 0
fi
if ! cmp -s "$LOCK" "$DIR/lock" || [ ! -d "$DIR/site/transformers" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  "$PY" -m pip install -q --no-deps --target "$DIR/site" -r "$LOCK"
  cp "$LOCK" "$DIR/lock"
fi
version=$(PYTHONPATH="$DIR/site" "$PY" -c "import transformers; print(transformers.__version__)")
echo "transformers $version (main venv: $("$PY" -c "import transformers; print(transformers.__version__)"))"
PYTHONPATH="$DIR/site:$PWD" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_train_compat.py tests/test_gpu_paths.py tests/test_train.py
echo "compat: transformers $version, $(($(date +%s) - started)) s"

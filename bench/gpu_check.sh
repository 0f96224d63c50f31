#!/usr/bin/env bash
# The prepared GPU check (issue #24): run once on a GPU machine with no network.
#   bash bench/gpu_check.sh            (under the device tool: carry [".whl"]; figures to $OUT)
#   CURATE_GPU_CHECK_DRY=1 PYTHON=.venv/bin/python bash bench/gpu_check.sh   (this script's logic, on a CPU)
# Missing packages travel as wheels in .whl/ (bench/gpu_check_prepare.sh fills it), with the
# student's config and tokenizer in .whl/student.tar.gz. Parts, each guarded so one failure leaves
# the others' figures: the student (random weights), GPU SFT and LoRA, then DPO with full
# weights and with LoRA, through curate's trainer (each with the GPU memory left allocated once
# train() has returned), transformers-backend generation through curate vs the raw generate
# loop, and the `gpu` tests. Everything goes to $OUT/gpu_check.log and $OUT/gpu_check.json;
# under 9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${CURATE_GPU_CHECK_DRY:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check_out}
WORK=${WORK:-/tmp/gpu_check}
export OUT PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT" "$WORK"
rm -f "$OUT/gpu_check.json"
LOG=$OUT/gpu_check.log
: >"$LOG"
started=$(date +%s)
part() {  # part NAME SECONDS COMMAND...: time-limited, logged, never fatal
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(($(date +%s) - started))s in) ===" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc ===" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; } | tee -a "$LOG"
part student 90 "$PY" bench/gpu_check.py student "$WORK"
part train 140 "$PY" bench/gpu_check.py train "$WORK"
part dpo 100 "$PY" bench/gpu_check.py dpo "$WORK"
part generate 110 "$PY" bench/gpu_check.py generate "$WORK"
# The gpu tests on the same student (the bundled GGUF is not carried; CURATE_GPU_STUDENT points them at it).
export CURATE_GPU_STUDENT=$WORK/student
pytest_marker=gpu
[ "${CURATE_GPU_CHECK_DRY:-0}" = 1 ] && pytest_marker="gpu or not gpu"  # on a CPU the gpu tests skip: collect all
part pytest 80 "$PY" -m pytest -q -p no:cacheprovider -m "$pytest_marker" -rs \
  tests/test_train_gpu.py tests/test_gpu_paths.py --junitxml="$OUT/gpu_check_pytest.xml"
"$PY" - "$OUT" "$started" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys, time, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1]); results = out / "gpu_check.json"
data = json.loads(results.read_text()) if results.exists() else {}
try:
    suite = ET.parse(out / "gpu_check_pytest.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    data["pytest"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except Exception as error:  # noqa: BLE001
    data["pytest"] = {"error": str(error)}
data["total_seconds"] = round(time.time() - int(sys.argv[2]), 1)
results.write_text(json.dumps(data, indent=2))
print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "runs"} if isinstance(v, dict) else v)
                  for k, v in data.items()}, indent=1))
EOF

#!/usr/bin/env bash
# One device check for a GPU machine lent for a few minutes: the CUDA tests (tests/test_cuda.py,
# CPU against CUDA) and a GPU benchmark (experiments/bench_gpu.py: LightGCN-3 trained briefly on
# full Gowalla, then IFRU / IF / AltEraser for one user and a random 1 %, each timed beside the
# training epoch measured in the same run), every step under `timeout`, all of it inside
# DEVICE_CHECK_SECONDS (default 450 s; the script itself stops well inside 8 minutes).
#
#   bash experiments/device_check.sh                 # on the GPU machine
#   bash experiments/device_check.sh --cpu-dry-run   # here: demo data, tiny sizes, CPU, < 2 min
#                                                    # (or DEVICE_CHECK_DRY_RUN=1)
#
# Everything goes under $OUT (default experiments/results/device_check/), at most 7 files:
#   versions.txt      python / torch / CUDA / package versions, the checkout's commit
#   nvidia-smi.txt    nvidia-smi before and after (absent GPU: says so)
#   pytest_cuda.xml   junit (xunit1: each test's measured CPU/GPU differences in property 'measured')
#   pytest_cuda.log   pytest's output
#   bench_gpu.jsonl   benchmark rows (JSON lines, flushed one by one)
#   bench_gpu.log     benchmark output
#   device_check.log  each step's exit status and seconds, then a summary of the two above
# Exit status: 0 when the tests and the benchmark passed, else 1 (a step's own status is logged).
#
# Python: no venv is built there and nothing can be installed from a registry. The first
# interpreter of $PYTHON, python3, python (on a dry run .venv/bin/python first) that imports
# torch, numpy, tqdm and pytest is used, with this checkout on PYTHONPATH (no install). If none
# does and the checkout carries wheels in .whl/ (see /work/.library/device/README.md), they are
# installed with --no-index into /tmp/site first. The machine's image has python3 with torch,
# numpy, tqdm, pytest and torch-geometric.
#
# Gowalla: read from shared/data/gowalla in the checkout, else ../shared/data/gowalla; only the
# checkout's shared/ travels to the device machine, so copy it in first (6.8 MB):
#   mkdir -p shared/data && cp -r ../shared/data/gowalla shared/data/ && echo /shared/ >> .git/info/exclude
# Without it the benchmark runs on the demo data and device_check.log says so.
set -u
set -o pipefail

DRY=${DEVICE_CHECK_DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument $arg (use --cpu-dry-run or --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=${OUT:-experiments/results/device_check}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/device_check.log
rm -f "$OUT"/bench_gpu.jsonl "$OUT"/pytest_cuda.xml
if [ "$DRY" = 1 ]; then TOTAL=${DEVICE_CHECK_SECONDS:-115}; else TOTAL=${DEVICE_CHECK_SECONDS:-450}; fi
START=$SECONDS
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

exec 3>&1  # the console: log lines stay out of the steps' redirected output
log() { local m="[device_check +$((SECONDS - START))s] $*"; echo "$m" >> "$LOG"; echo "$m" >&3; }
: > "$LOG"
log "start: dry_run=$DRY total_budget=${TOTAL}s out=$OUT root=$ROOT"

if command -v timeout >/dev/null 2>&1; then HAVE_TIMEOUT=1; else HAVE_TIMEOUT=0; log "no timeout(1): steps run without a limit"; fi
# run NAME LIMIT CMD...: CMD (a program: functions go through `bash -c` after `export -f`)
# under timeout, the limit cut to what is left of the budget
FAILED=0
# (RESERVE seconds are kept for the last two steps, which pass RESERVE=0)
RESERVE=20
run() {
  local name=$1 limit=$2; shift 2
  local left=$((TOTAL - (SECONDS - START) - RESERVE))
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  if [ "$limit" -lt 5 ]; then log "step $name: skipped, budget spent"; return 124; fi
  local t0=$SECONDS rc
  if [ "$HAVE_TIMEOUT" = 1 ]; then timeout -k 10 "$limit" "$@"; rc=$?; else "$@"; rc=$?; fi
  log "step $name: rc=$rc in $((SECONDS - t0))s (limit ${limit}s)$([ "$rc" = 124 ] && echo ' TIMED OUT')"
  return $rc
}

# ---------------------------------------------------------------- python
# the first candidate with the packages; on a GPU run the first whose torch sees CUDA, if any
PY= ; PY_CUDA=0
if [ "$DRY" = 1 ]; then CANDIDATES=("${PYTHON:-}" .venv/bin/python python3 python)
else CANDIDATES=("${PYTHON:-}" python3 python .venv/bin/python); fi
PROBE='import torch, numpy, tqdm, pytest; print(int(torch.cuda.is_available()))'
for cand in "${CANDIDATES[@]}"; do
  [ -n "$cand" ] || continue
  command -v "$cand" >/dev/null 2>&1 || continue
  cuda=$(timeout 90 "$cand" -c "$PROBE" 2>/dev/null) || continue
  if [ -z "$PY" ]; then PY=$cand; PY_CUDA=$cuda; fi
  if [ "$DRY" = 1 ] || [ "$cuda" = 1 ]; then PY=$cand; PY_CUDA=$cuda; break; fi
done
if [ -z "$PY" ] && [ -d .whl ] && command -v python3 >/dev/null 2>&1; then
  log "no interpreter with torch, numpy, tqdm, pytest: installing .whl/*.whl into /tmp/site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/site" && PY=python3
  PY_CUDA=$(timeout 90 python3 -c "$PROBE" 2>/dev/null) || PY=
fi
if [ -z "$PY" ]; then
  log "FATAL: no python with torch, numpy, tqdm and pytest (tried ${CANDIDATES[*]})"
  exit 1
fi
log "python: $(command -v "$PY") ($("$PY" --version 2>&1)), torch sees CUDA: $PY_CUDA"

# ---------------------------------------------------------------- versions, nvidia-smi
versions() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "cpus: $(nproc --all 2>/dev/null)"
  echo "python: $(command -v "$PY")"
  if git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
    echo "commit: $(git -C "$ROOT" rev-parse HEAD) ($(git -C "$ROOT" status --porcelain | wc -l) paths changed)"
  else
    echo "commit: not a git checkout (a copy of the working tree)"
  fi
  "$PY" - <<'EOF'
import importlib, platform, sys
import torch
print("python_version:", platform.python_version(), sys.executable)
print("torch:", torch.__version__, "cuda:", torch.version.cuda, "cudnn:",
      torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("cuda_available:", torch.cuda.is_available(), "devices:", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name} {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}")
print("torch threads:", torch.get_num_threads())
for name in ("numpy", "tqdm", "pytest", "torch_geometric", "hypothesis", "scipy"):
    try:
        print(f"{name}:", getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: not importable ({type(exc).__name__})")
import graphforget
print("graphforget:", graphforget.__version__, graphforget.__file__)
EOF
}
export PY ROOT OUT
export -f versions
run versions 60 bash -c versions > "$OUT/versions.txt" 2>&1

smi() {
  echo "== nvidia-smi $1 ($(date -u +%H:%M:%SZ))"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu --format=csv
  else
    echo "nvidia-smi not found (no NVIDIA driver on this machine)"
  fi
}
export -f smi
run nvidia-smi-before 30 bash -c "smi before" > "$OUT/nvidia-smi.txt" 2>&1
if [ "$PY_CUDA" != 1 ]; then
  if [ "$DRY" = 1 ]; then log "CUDA not available (dry run): the CUDA tests will skip"
  else log "WARNING: CUDA not available on a GPU run: the CUDA tests will skip"; fi
fi

# ---------------------------------------------------------------- CUDA tests
if [ "$DRY" = 1 ]; then TEST_LIMIT=70; else TEST_LIMIT=210; fi
run pytest "$TEST_LIMIT" "$PY" -m pytest tests/test_cuda.py -v -rA --durations=10 -p no:cacheprovider \
  --junitxml="$OUT/pytest_cuda.xml" -o junit_family=xunit1 2>&1 | tee "$OUT/pytest_cuda.log"
TEST_RC=${PIPESTATUS[0]}
[ "$TEST_RC" = 0 ] || FAILED=1

# ---------------------------------------------------------------- benchmark
DATA=demo
for d in "$ROOT/shared/data/gowalla" "$ROOT/../shared/data/gowalla"; do
  if [ -f "$d/train.txt" ]; then DATA=$(cd "$d" && pwd); break; fi
done
if [ "$DRY" = 1 ]; then
  DATA=demo
  BENCH=(--data demo --device cpu --dim 8 --layers 2 --epochs 2 --fraction 0.005
         --method ifru:max_iter=30 --method if:max_iter=30 --method alteraser:rounds=2)
  BENCH_LIMIT=60
else
  [ "$DATA" = demo ] && log "WARNING: no gowalla under shared/data or ../shared/data: benchmark on the demo data"
  BENCH=(--data "$DATA" --device cuda:0 --layers 3 --dim 64 --epochs 2 --finish-seconds 30 --fraction 0.01)
  BENCH_LIMIT=240
fi
LEFT=$((TOTAL - (SECONDS - START) - RESERVE))
[ "$BENCH_LIMIT" -gt "$LEFT" ] && BENCH_LIMIT=$LEFT
BUDGET=$((BENCH_LIMIT * 3 / 4))  # no new request after 3/4 of the step's limit
log "benchmark: data=$DATA limit=${BENCH_LIMIT}s requests start within ${BUDGET}s"
run bench "$BENCH_LIMIT" "$PY" experiments/bench_gpu.py "${BENCH[@]}" --budget-seconds "$BUDGET" \
  --out "$OUT/bench_gpu.jsonl" 2>&1 | tee "$OUT/bench_gpu.log"
BENCH_RC=${PIPESTATUS[0]}
[ "$BENCH_RC" = 0 ] || FAILED=1

RESERVE=0
run nvidia-smi-after 20 bash -c "smi after" >> "$OUT/nvidia-smi.txt" 2>&1

# ---------------------------------------------------------------- summary
summary() {
  "$PY" - "$OUT" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
junit = out / "pytest_cuda.xml"
if junit.exists():
    cases = list(ET.parse(junit).iter("testcase"))
    state = lambda c: next((t.tag for t in c if t.tag in ("failure", "error", "skipped")), "passed")
    counts = {}
    for c in cases:
        counts[state(c)] = counts.get(state(c), 0) + 1
    print("tests:", json.dumps(counts))
    for c in cases:
        line = f"  {state(c):8} {c.get('name')} ({float(c.get('time', 0)):.1f}s)"
        props = {p.get("name"): p.get("value") for p in c.iter("property")}
        if "measured" in props:
            line += " measured " + props["measured"][:1500]
        print(line)
else:
    print("tests: no junit file (pytest did not finish)")
rows = [json.loads(l) for l in open(out / "bench_gpu.jsonl")] if (out / "bench_gpu.jsonl").exists() else []
print(f"benchmark rows: {len(rows)}")
for r in rows:
    k = r.get("kind")
    if k == "train":
        print(f"  train: epochs {r['epoch_seconds_each']} s, epoch_seconds {r['epoch_seconds']:.3f} ({r['epoch_seconds_basis']})")
    elif k == "finish":
        print(f"  finish: {r['iterations']} iterations in {r['seconds']:.1f}s, grad_norm_rel {r['grad_norm_rel']:.3g}")
    elif k == "unlearn":
        rep = r["report"]
        print(f"  {r['scenario']:<28} {r['method']:<10} {r['wall_seconds']:8.3f}s = {r['epochs_equivalent']:6.2f} epochs"
              f" = {r['fge']:7.1f} FGE  iters={rep['solver_iterations']} converged={rep['converged']}")
    elif k in ("skipped", "done", "evaluate"):
        print(f"  {k}: " + json.dumps({a: b for a, b in r.items() if a != "kind"}))
EOF
}
export -f summary
run summary 30 bash -c summary >> "$LOG" 2>&1
log "end: tests rc=$TEST_RC, benchmark rc=$BENCH_RC, $((SECONDS - START))s in all; files: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $FAILED

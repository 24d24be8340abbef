#!/usr/bin/env bash
# What a lent GPU machine should tell us at paper scale, in one run of at most ~8 minutes:
#   env           the card, its memory, the dense bf16 peak assumed for MFU (benchmarks/gpu_check.py)
#   step          bench_step.py, R50 + ViT-S at the paper's shapes (2x224 + 8x96 crops, K 65536), batch 64
#                 per GPU, bf16: the MOKD pair step against the two DINO steps, peak memory, FLOPs -> MFU
#   data_pil      the multi-crop pipeline on the CPU (torchvision PIL transforms): one worker, and a
#                 DataLoader with W workers, against the images/s the pair step consumes
#   data_batched  the same with `crops.pipeline: batched` (the loader decodes, the GPU augments)
#   syncbn        SyncBatchNorm as the pre-training converts it: 2 processes on half a batch each against
#                 1 process on the whole batch (outputs, running statistics, gradients; syncbn_check.py;
#                 not in --cpu-smoke: torch's SyncBatchNorm runs on GPUs only)
#   pretrain      a real `python -m mokd pretrain` of the pair on a synthetic 224-px ImageFolder: an
#                 uninterrupted run against one stopped (--stop-after) and resumed, checkpoints compared
#   compile       the step benchmark again with `compile: true` (cold compile included; last, as the
#                 slowest stage, with whatever time is left)
# and a summary at the end, whatever failed. Results (JSON, logs, summary.txt) go to OUT_DIR.
#
#   benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]     (OUT_DIR default: $OUT, else gpu_check_out/<time>)
#
# Without a GPU it stops at once with one line and exit code 3. --cpu-smoke runs every stage on the
# CPU at tiny sizes (config/test.yaml): a check of the script, not a measurement.
# Environment: PYTHON (default .venv/bin/python), GPU_CHECK_BUDGET_S (default 470; smoke 1500),
# GPU_CHECK_WORKERS (DataLoader workers; default: cores - 2).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

SMOKE=0
OUT_DIR=""
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) SMOKE=1 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_check: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) OUT_DIR="$arg" ;;
    esac
done
OUT_DIR="${OUT_DIR:-${OUT:-gpu_check_out/$(date +%Y%m%d-%H%M%S)}}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
START=$(date +%s)

SMOKE_FLAG=()
if [ "$SMOKE" = 1 ]; then SMOKE_FLAG=(--cpu-smoke); fi

# ---- the device first: without a GPU, one line and exit 3 (nothing else runs)
env_out=$(timeout -k 5 120 "$PY" benchmarks/gpu_check.py env "$OUT_DIR" "${SMOKE_FLAG[@]}" 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
    if [ "$rc" -eq 3 ]; then
        printf '%s\n' "$env_out" | tail -n 1 >&2
    else
        echo "gpu_check: device check failed (exit $rc): $(printf '%s\n' "$env_out" | tail -n 1)" >&2
    fi
    exit 3
fi
printf '%s\n' "$env_out"

CORES=$(nproc 2>/dev/null || echo 2)
if [ "$SMOKE" = 1 ]; then
    BUDGET=${GPU_CHECK_BUDGET_S:-1500}
    CFG=config/test.yaml; BATCH=8; DEVICE=(--device cpu); STEPS=(--steps 2 --warmup 1)
    WORKERS=${GPU_CHECK_WORKERS:-1}; DATA_IMAGES=16; LOADER_BATCHES=1
    CAP_STEP=240; CAP_DATA=150; CAP_PRETRAIN=400; CAP_COMPILE=600
else
    BUDGET=${GPU_CHECK_BUDGET_S:-470}
    CFG=config/paper.yaml; BATCH=64; DEVICE=(--device cuda --precision bf16); STEPS=(--steps 10 --warmup 3)
    WORKERS=${GPU_CHECK_WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}; DATA_IMAGES=$(( BATCH * 5 )); LOADER_BATCHES=4
    CAP_STEP=150; CAP_DATA=90; CAP_PRETRAIN=150; CAP_COMPILE=240
fi
RESERVE=20  # kept for the summary
BENCH=("$PY" benchmarks/bench_step.py --config "$CFG" --pair r50 vit_s --batch "$BATCH" "${DEVICE[@]}")
echo "gpu_check: $CFG, batch $BATCH, $WORKERS loader workers, budget ${BUDGET} s, results in $OUT_DIR"
: > "$OUT_DIR/stages.tsv"

stage_time() {  # stage_time CAP: the seconds a stage may run now (its cap, or what is left)
    local left=$(( BUDGET - ($(date +%s) - START) - RESERVE ))
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

stage() {  # stage NAME SECONDS CMD...: run under timeout, stdout shown and logged, stderr logged
    local name=$1 t=$2 log="$OUT_DIR/$1.log" t0 rc status wall
    shift 2
    if [ "$t" -lt 15 ]; then
        printf '%s\t%s\t%s\n' "$name" "skipped (no time left)" 0 >> "$OUT_DIR/stages.tsv"
        echo "[gpu_check] $name: skipped, no time left"
        return
    fi
    echo "[gpu_check] $name (at most $t s): $*"
    t0=$(date +%s)
    timeout -k 10 "$t" "$@" 2>>"$log" | tee -a "$log"
    rc=${PIPESTATUS[0]}
    wall=$(( $(date +%s) - t0 ))
    case "$rc" in
        0) status=ok ;;
        124|137) status="timed out after $t s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    printf '%s\t%s\t%s\n' "$name" "$status" "$wall" >> "$OUT_DIR/stages.tsv"
    echo "[gpu_check] $name: $status in $wall s (log $log)"
    if [ "$rc" -ne 0 ]; then tail -n 5 "$log" | sed 's/^/    | /'; fi
}

stage step "$(stage_time $CAP_STEP)" "${BENCH[@]}" --variants current --flops "${STEPS[@]}" --data-images 0 \
    --out "$OUT_DIR/step.json"
for pipeline in pil batched; do
    stage "data_$pipeline" "$(stage_time $CAP_DATA)" "${BENCH[@]}" --variants current --no-timing --no-memory \
        --warmup 1 --steps 1 --data-images "$DATA_IMAGES" --pipeline "$pipeline" --loader-workers "$WORKERS" \
        --loader-batches "$LOADER_BATCHES" --out "$OUT_DIR/data_$pipeline.json"
done
if [ "$SMOKE" = 0 ]; then
    stage syncbn "$(stage_time 90)" "$PY" benchmarks/syncbn_check.py --out "$OUT_DIR/syncbn.json"
fi
T=$(stage_time $CAP_PRETRAIN)
stage pretrain "$T" "$PY" benchmarks/gpu_check.py pretrain-check "$OUT_DIR" "${SMOKE_FLAG[@]}" --deadline-s $(( T - 10 ))
stage compile "$(stage_time $CAP_COMPILE)" "${BENCH[@]}" --variants current,compile "${STEPS[@]}" --no-memory \
    --data-images 0 --out "$OUT_DIR/step_compile.json"

if ! timeout -k 5 60 "$PY" benchmarks/gpu_check.py summary "$OUT_DIR"; then
    echo "gpu_check: the summary failed; stages:"
    cat "$OUT_DIR/stages.tsv"
fi
echo "gpu_check: $(( $(date +%s) - START )) s in all; results in $OUT_DIR"
if cut -f2 "$OUT_DIR/stages.tsv" | grep -qv '^ok$'; then exit 1; fi
exit 0

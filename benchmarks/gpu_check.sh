#!/usr/bin/env bash
# One-call GPU check (about 8 minutes on one GPU): on a machine with CUDA, torch, torchvision
# and the test tools installed, and this checkout (anchorage importable from it, no install):
#
#   1. the tests (not slow ones; the CUDA-only ones run because CUDA is there),
#   2. the torchvision twin suite (benchmarks/vs_torchvision.yaml) at batch 8, float32 and AMP,
#   3. whole training loop vs bare model step images/s for tiny_ssd_shapes and
#      faster_rcnn_r18_fpn_bccd (tools/loop_throughput.py), float32 and AMP + channels_last,
#
# writing Markdown records to benchmarks/results/*_cuda.md (tests_cuda.md,
# vs_torchvision_fp32_cuda.md, vs_torchvision_amp_cuda.md, loop_throughput_cuda.md).
#
# usage: benchmarks/gpu_check.sh [--cpu-dry-run] [--out DIR] [--bccd DIR] [--jobs N]
#   --cpu-dry-run  the same entry points on the CPU with tiny sizes (records go to
#                  work_dirs/gpu_check_dry_run unless --out is given): checks the script only
#   --out DIR      where the records go (default benchmarks/results)
#   --bccd DIR     the BCCD folder holding Annotations/, ImageSets/, JPEGImages/ (default: the
#                  spec's ../shared/datasets/bccd/BCCD, else .data/bccd/BCCD in the checkout)
#   --jobs N       pytest-xdist workers for the tests (default 8; 0 = no xdist)
# environment: PYTHON (default python3); WHEELS: a folder of wheels (e.g. pycocotools) installed
# with --target into a temporary site folder when the module is missing.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY=0
OUT=""
BCCD=""
JOBS=8
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu-dry-run) DRY=1 ;;
        --out) OUT="${2:?--out needs a folder}"; shift ;;
        --bccd) BCCD="${2:?--bccd needs a folder}"; shift ;;
        --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# anchorage from this checkout, without installing it: a namespace folder of symlinks
mkdir -p "$TMP/ns/anchorage" "$TMP/site"
for d in core plugins specs benchmarking; do ln -sfn "$ROOT/$d" "$TMP/ns/anchorage/$d"; done
export PYTHONPATH="$TMP/ns:$TMP/site${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import pycocotools" 2>/dev/null; then
    if [[ -n "${WHEELS:-}" ]] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-deps --target "$TMP/site" "$WHEELS"/*.whl
    else
        echo "note: pycocotools is missing (set WHEELS=folder-of-wheels): COCO tests will fail"
    fi
fi

if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    SUFFIX=cpu_dry_run
    OUT="${OUT:-work_dirs/gpu_check_dry_run}"
else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: CUDA is not available to $PY (use --cpu-dry-run to check the script)" >&2
        exit 2
    fi
    DEVICE=cuda
    SUFFIX=cuda
    OUT="${OUT:-benchmarks/results}"
fi
mkdir -p "$OUT"
if [[ -z "$BCCD" ]]; then
    for c in ../shared/datasets/bccd/BCCD .data/bccd/BCCD; do
        [[ -d "$c/Annotations" ]] && BCCD="$c" && break
    done
fi

FAILED=()
START=$SECONDS
step() {  # step NAME SECONDS COMMAND...: run with a time limit, remember failures
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit} s, $((SECONDS - START)) s elapsed)"
    timeout "$limit" "$@"
    local rc=$?
    if [[ $rc != 0 ]]; then
        echo "   FAILED: $name (exit $rc$([[ $rc == 124 ]] && echo ', time limit'))"
        FAILED+=("$name")
    fi
    return 0
}

header() {  # header FILE TITLE COMMAND: start a Markdown record
    "$PY" - "$1" "$2" "$3" <<'EOF'
import datetime, subprocess, sys
import torch, torchvision
path, title, command = sys.argv[1:]
if torch.cuda.is_available():
    device = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
else:
    device = "CPU only (dry run: not a GPU measurement)"
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
except OSError:
    commit = "unknown"
with open(path, "w", encoding="utf-8") as f:
    f.write(f"# {title}\n\n- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
            f"- device: {device}\n- torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}, commit {commit}\n- command: `{command}`\n\n")
EOF
}

# 1. tests ------------------------------------------------------------------------------------
TESTS_MD="$OUT/tests_$SUFFIX.md"
if [[ $DRY == 1 ]]; then
    TEST_ARGS=(tests/plugins/models/test_sync_free_cuda.py tests/core/engine/test_acceleration.py
               tests/benchmarking/test_benchmarking_loop.py -m "not slow")
    TEST_LIMIT=240
else
    TEST_ARGS=(tests -m "not slow")
    [[ $JOBS != 0 ]] && TEST_ARGS+=(-n "$JOBS")
    TEST_LIMIT=170
fi
header "$TESTS_MD" "Tests on $DEVICE" "pytest -q -rs ${TEST_ARGS[*]}"
step tests "$TEST_LIMIT" bash -c '"$0" -m pytest -q -rs -p no:cacheprovider "${@:3}" > "$2" 2>&1; rc=$?; { echo "\`\`\`"; tail -n 40 "$2"; echo "\`\`\`"; } >> "$1"; exit $rc' "$PY" "$TESTS_MD" "$TMP/tests.log" "${TEST_ARGS[@]}"

# 2. twin suite, float32 and AMP ---------------------------------------------------------------
if [[ $DRY == 1 ]]; then
    SUITE_ARGS=(--only tv:fcn_resnet50,specs/fcn_resnet50_coco.yaml --batch-sizes 1
                --train-batch-sizes 1 --image-size 64 --rounds 1 --warmup 0 --stage-iters 1
                --threads 1 --clock cpu)
    SUITE_LIMIT=240
else
    SUITE_ARGS=(--batch-sizes 8 --train-batch-sizes 8 --rounds 10 --warmup 2)
    SUITE_LIMIT=90
fi
for mode in fp32 amp; do
    extra=()
    [[ $mode == amp ]] && extra=(--amp)
    md="$OUT/vs_torchvision_${mode}_$SUFFIX.md"
    cmd=(tools/benchmark.py --suite benchmarks/vs_torchvision.yaml --device "$DEVICE"
         "${SUITE_ARGS[@]}" "${extra[@]}" --no-progress --markdown "$TMP/suite.md")
    header "$md" "torchvision twins, $mode, batch 8" "${cmd[*]}"
    step "twin suite $mode" "$SUITE_LIMIT" "$PY" "${cmd[@]}"
    [[ -f "$TMP/suite.md" ]] && cat "$TMP/suite.md" >> "$md" && rm -f "$TMP/suite.md"
done

# 3. whole loop vs model step -------------------------------------------------------------------
LOOP_MD="$OUT/loop_throughput_$SUFFIX.md"
if [[ $DRY == 1 ]]; then
    LOOP_COMMON=(--device cpu --steps 2 --warmup 1 --batch-size 2)
    SSD_SET=(--set data.train.dataset.num_images=8)
    LOOP_LIMIT=240
else
    LOOP_COMMON=(--device cuda --steps 50 --warmup 5)
    SSD_SET=()
    LOOP_LIMIT=30  # the first call gets 15 s more: it generates the shapes set (~1000 images)
fi
header "$LOOP_MD" "Whole training loop vs bare model step" \
    "tools/loop_throughput.py SPEC ${LOOP_COMMON[*]} [--set train.amp=auto --set train.channels_last=true]"
for mode in fp32 amp; do
    extra=()
    [[ $mode == amp ]] && extra=(--set train.amp=auto --set train.channels_last=true)
    echo -e "\n### $mode\n" >> "$LOOP_MD"
    limit=$LOOP_LIMIT
    [[ $mode == fp32 ]] && limit=$((LOOP_LIMIT + 15))
    step "loop tiny_ssd_shapes $mode" "$limit" "$PY" tools/loop_throughput.py \
        specs/tiny_ssd_shapes.yaml "${LOOP_COMMON[@]}" "${SSD_SET[@]}" "${extra[@]}" \
        --markdown "$TMP/loop.md"
    [[ -f "$TMP/loop.md" ]] && cat "$TMP/loop.md" >> "$LOOP_MD" && rm -f "$TMP/loop.md"
    if [[ -n "$BCCD" ]]; then
        step "loop faster_rcnn_r18_fpn_bccd $mode" "$LOOP_LIMIT" "$PY" tools/loop_throughput.py \
            specs/faster_rcnn_r18_fpn_bccd.yaml "${LOOP_COMMON[@]}" "${extra[@]}" \
            --set "data.train.dataset.root=$BCCD" --markdown "$TMP/loop.md"
        [[ -f "$TMP/loop.md" ]] && tail -n 1 "$TMP/loop.md" >> "$LOOP_MD" && rm -f "$TMP/loop.md"
    else
        echo "note: BCCD not found (--bccd DIR): faster_rcnn_r18_fpn_bccd skipped" | tee -a "$LOOP_MD"
        FAILED+=("loop faster_rcnn_r18_fpn_bccd $mode (no data)")
    fi
done

echo
echo "records in $OUT: $(cd "$OUT" && ls -- *_"$SUFFIX".md | tr '\n' ' ')"
echo "total $((SECONDS - START)) s"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    printf 'failed: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all steps passed"

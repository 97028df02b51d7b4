#!/usr/bin/env bash
# One prepared command for a bare GPU machine (Python 3.12 with torch, timm, safetensors, onnx,
# onnxruntime, OpenCV, numpy; no network; the repository is the working directory):
#
#   scripts/gpu_check.sh                        # CUDA: tests, benchmarks -> docs/benchmarks/*-gpu.*
#   scripts/gpu_check.sh --device cpu --quick   # every step small and on the CPU (the test suite)
#   scripts/gpu_check.sh --prepare-wheels DIR   # here, with pip: wheels the GPU machine lacks
#
# Steps, each under its own time limit and all under --budget-s (default 450 s, so the whole run
# ends within 8 minutes): environment report; the CUDA tests (pytest, when it is installed or its
# wheels are in gpu_wheels/); model forward (fp32, bf16, fp16, channels-last, CUDA graph; batch 1,
# 8, 32); Predictor (defaults = fp32 + CUDA graph, against no graph, bf16, fp16); torch eager
# against ONNX Runtime (every provider present); training steps at paper size; the node end to
# end (only where rclpy imports); torch.compile last, batch 1 only, tiny then paper (one compile
# took minutes), so that a compile running out of time loses nothing else. A step that fails or
# runs out of time is reported and the next one runs. Summary: <output>/gpu-check-<tag>.md.
# Options: --output DIR (default docs/benchmarks), --tag TAG (default gpu; cpu-quick with
# --device cpu --quick), --budget-s SECONDS. Python: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 output=docs/benchmarks tag='' budget=450 wheels=''
while (($#)); do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --output) output=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --budget-s) budget=$2; shift 2 ;;
        --prepare-wheels) wheels=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [[ -n $wheels ]]; then
    # pytest for the GPU machine's Python 3.12 (it has no network); copy DIR there as gpu_wheels/.
    exec "$PYTHON" -m pip download --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform any -d "$wheels" \
        pytest==9.2.0 pytest-timeout==2.4.0
fi
if [[ $device != cuda && $device != cpu ]]; then
    echo "gpu_check.sh: --device must be cuda or cpu, got $device" >&2; exit 2
fi
[[ -z $tag ]] && if [[ $device == cuda ]]; then tag=gpu; else tag=cpu-quick; fi
mkdir -p "$output"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
summary="$output/gpu-check-$tag.md"
deadline=$((SECONDS + budget))
failed=0
{
    echo "## scripts/gpu_check.sh --device $device$( ((quick)) && echo ' --quick') (tag $tag)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); budget ${budget} s"
    echo
    echo '| step | result | seconds |'
    echo '|---|---|---|'
} > "$summary"

# step NAME LIMIT_S COMMAND...: run under min(LIMIT_S, time left), record the outcome.
# COMMAND `bench PART ...` is convitac_benchmark writing PART-<tag>.{md,json} into the output.
step() {
    local name=$1 limit=$2 left=$((deadline - SECONDS - 5)) start=$SECONDS rc result
    shift 2
    if [[ $1 == bench ]]; then
        shift
        set -- "$PYTHON" -m benchmarks "$@" --output "$output" --tag "$tag"
    fi
    ((limit > left)) && limit=$left
    if ((limit < 10)); then
        echo "== $name: skipped, out of time" >&2
        echo "| $name | skipped: out of time | 0 |" >> "$summary"
        return
    fi
    echo "== $name (limit ${limit} s): $*" >&2
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    case $rc in
        0) result=ok ;;
        124|137) result="TIMED OUT after ${limit} s"; failed=1 ;;
        *) result="FAILED (exit $rc)"; failed=1 ;;
    esac
    echo "== $name: $result in $((SECONDS - start)) s" >&2
    echo "| $name | $result | $((SECONDS - start)) |" >> "$summary"
}

skip() {
    echo "== $1: skipped, $2" >&2
    echo "| $1 | skipped: $2 | 0 |" >> "$summary"
}

step environment 30 "$PYTHON" - "$device" <<'EOF'
import platform, sys
import numpy, onnx, onnxruntime, safetensors, timm, torch
print(f'python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, '
      f'onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__} '
      f'{onnxruntime.get_available_providers()}, numpy {numpy.__version__}')
cuda = torch.cuda.is_available()
print('GPU:', torch.cuda.get_device_name(0) if cuda else 'none')
if sys.argv[1] == 'cuda' and not cuda:
    sys.exit('gpu_check: --device cuda but torch sees no CUDA device')
EOF

if ((quick)); then
    configs=tiny runs=(--runs 3 --warmup 1 --budget-s 0.3)
    step model 120 bench model --device "$device" --configs $configs --variants eager,cuda_graph \
        --batch-sizes 2 "${runs[@]}"
    step predictor 120 bench predictor --device "$device" --configs $configs "${runs[@]}" \
        --variants eager
    step onnx 120 bench onnx --device "$device" --configs $configs "${runs[@]}"
    step training 120 bench training --device "$device" --steps 2 --batch-size 4
    skip tests 'quick mode (the test suite runs them)'
    skip node 'quick mode'
    skip compile 'quick mode'
else
    if ! "$PYTHON" -c 'import pytest' 2>/dev/null && [[ -d gpu_wheels ]]; then
        timeout 60 "$PYTHON" -m pip install --no-index --find-links gpu_wheels pytest \
            pytest-timeout >&2
    fi
    if "$PYTHON" -c 'import pytest' 2>/dev/null; then
        step tests 90 "$PYTHON" -m pytest -q -p no:cacheprovider -m 'not slow' \
            test/test_inference.py test/test_export.py test/test_model.py
    else
        skip tests 'no pytest (scripts/gpu_check.sh --prepare-wheels gpu_wheels, then copy it)'
    fi
    runs=(--runs 30 --warmup 5 --budget-s 1.5)
    step model 110 bench model --device cuda --configs tiny,paper --batch-sizes 8,32 \
        --variants eager,channels_last,autocast_bf16,autocast_fp16,channels_last+bf16,cuda_graph,cuda_graph+bf16 \
        "${runs[@]}"
    step predictor 80 bench predictor --device cuda --configs tiny,paper "${runs[@]}" \
        --variants eager,no_graph,bf16,bf16_no_graph,fp16
    step onnx 70 bench onnx --device all --configs tiny,paper "${runs[@]}"
    step training 80 bench training --device cuda --train-preset paper --steps 8 \
        --batch-size 64 --num-workers 8
    if "$PYTHON" -c 'import rclpy' 2>/dev/null; then
        step node 90 bench node --device cuda --reliable --duration-s 10 --step-s 3 \
            --overload-s 10 --input-rounds 0
    else
        skip node 'rclpy does not import here (ROS wheels not installed)'
    fi
    step compile-tiny 60 "$PYTHON" -m benchmarks model --device cuda \
        --configs tiny --variants compile,compile+bf16 --batch-sizes '' "${runs[@]}" \
        --output "$output" --tag "$tag-compile-tiny"
    step compile-paper 300 "$PYTHON" -m benchmarks model --device cuda \
        --configs paper --variants compile --batch-sizes '' "${runs[@]}" \
        --output "$output" --tag "$tag-compile-paper"
fi

echo >> "$summary"
echo "Files: $(cd "$output" && ls -- *"$tag"*.md | tr '\n' ' ')" >> "$summary"
cat "$summary"
exit $failed

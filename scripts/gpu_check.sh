#!/usr/bin/env bash
# One prepared command for a bare GPU machine (Python 3.12 with torch, timm, safetensors, onnx,
# onnxruntime, OpenCV, numpy; no network; the repository is the working directory):
#
#   scripts/fetch_gpu_wheels.sh                # first, here: wheels/cp312/ (carried with the tree)
#   scripts/gpu_check.sh                       # there: every step below -> docs/benchmarks/
#   scripts/gpu_check.sh --device cpu --quick  # every step small and on the CPU (tested here)
#
# Steps, each under its own time limit and all under --budget-s (default 560 s, so that the run
# ends within 10 minutes), most wanted first: environment report; the ROS 2 Jazzy wheels,
# rosbags and pytest installed from wheels/cp312/ with `pip --no-index` (only where they do not
# import); a paper-configuration checkpoint (random weights: timing only) and its ONNX export;
# the node end to end on it with raw images and the shipped Fast DDS profile
# (config/fastdds.xml), at 30 pairs/s and in rate steps up to 300 pairs/s with every drop
# counted; the Predictor (preprocessing on the device with CUDA graphs, against the host resize
# and no graph); the CUDA tests; the node with JPEG-compressed images; the node on the
# onnxruntime backend (TensorRT, else CUDA execution provider); torch against ONNX Runtime
# (every provider present); training steps at paper size, with and without the frame cache.
# A step that fails or runs out of time is reported and the next one runs; a benchmark whose
# bars are not met says so (exit 3: its table tells). Summary: <output>/gpu-check-<tag>.md.
# Options: --output DIR (default docs/benchmarks), --tag TAG (default gpu; cpu-quick with
# --device cpu --quick), --budget-s SECONDS, --wheels DIR (default wheels/cp312).
# Python: $PYTHON, else .venv/bin/python, else python3.
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 output=docs/benchmarks tag='' budget=560 wheels=wheels/cp312
while (($#)); do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --output) output=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --budget-s) budget=$2; shift 2 ;;
        --wheels) wheels=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ $device != cuda && $device != cpu ]]; then
    echo "gpu_check.sh: --device must be cuda or cpu, got $device" >&2; exit 2
fi
[[ -z $tag ]] && if [[ $device == cuda ]]; then tag=gpu; else tag=cpu-quick; fi
mkdir -p "$output"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
# Every process (node, echo, publisher) loads the shipped Fast DDS profile for large frames;
# discovery stays on this machine.
export FASTRTPS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds.xml"
export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds.xml"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
work=build/gpu_check
mkdir -p "$work"
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
# COMMAND `bench PART ...` is `python -m benchmarks` writing PART-<tag>.{md,json} into the
# output (a --tag among its arguments wins).
step() {
    local name=$1 limit=$2 left=$((deadline - SECONDS - 5)) start=$SECONDS rc result
    shift 2
    if [[ $1 == bench ]]; then
        shift
        set -- "$PYTHON" -m benchmarks --output "$output" --tag "$tag" "$@"
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
        3) result='ran; a check failed (see its table)' ;;
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

step environment 60 "$PYTHON" - "$device" <<'EOF'
import os, platform, sys
import numpy, onnx, onnxruntime, safetensors, timm, torch
print(f'python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, '
      f'onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__} '
      f'{onnxruntime.get_available_providers()}, numpy {numpy.__version__}, '
      f'{os.cpu_count()} CPUs')
cuda = torch.cuda.is_available()
print('GPU:', torch.cuda.get_device_name(0) if cuda else 'none')
if sys.argv[1] == 'cuda' and not cuda:
    sys.exit('gpu_check: --device cuda but torch sees no CUDA device')
EOF

# What the machine lacks, from the carried wheels: nothing is downloaded there.
if "$PYTHON" -c 'import rclpy, rosbags, pytest' 2>/dev/null; then
    skip wheels 'rclpy, rosbags and pytest import already'
elif [[ -d $wheels ]]; then
    step wheels 60 env PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --quiet --no-index \
        --find-links "$wheels" -r scripts/gpu_wheels.txt
else
    skip wheels "no $wheels (run scripts/fetch_gpu_wheels.sh where there is a network)"
fi
ros=0
"$PYTHON" -c 'import rclpy' 2>/dev/null && ros=1

if ((quick)); then
    preset=tiny runs=(--runs 3 --warmup 1 --budget-s 0.3)
    node=(--duration-s 3 --rates 30 --step-s 2 --overload-s 2 --input-rounds 0)
else
    preset=paper runs=(--runs 30 --warmup 5 --budget-s 1.5)
    node=(--duration-s 8 --rates 30,100,200,300 --step-s 3 --overload-s 5 --input-rounds 0)
fi
checkpoint=$work/$preset.safetensors
step checkpoint 90 "$PYTHON" - "$preset" "$checkpoint" <<'EOF'
import sys
import torch
from convitac_ros.checkpoint import save_checkpoint
from convitac_ros.export import export_onnx
from convitac_ros.model import ConViTac, ModelConfig
torch.manual_seed(0)
preset, path = sys.argv[1], sys.argv[2]
save_checkpoint(path, ConViTac(getattr(ModelConfig, preset)()),
                training={'note': 'random weights, for timing only'})
result = export_onnx(path, path.replace('.safetensors', '.onnx'))
print(f'{path} and {result.path} ({result.size_bytes / 2**20:.0f} MiB, max |diff| '
      f'{result.max_abs_diff:.1e})')
EOF

# Most wanted first: the node on the GPU, the Predictor, the CUDA tests; a TensorRT engine
# build that runs out of time then loses only what comes after it.
if ((ros)); then
    step node-raw 90 bench node --device "$device" --checkpoint "$checkpoint" "${node[@]}" \
        --tag "$tag-$preset-raw"
else
    skip node-raw 'rclpy does not import here (see the wheels step)'
fi
if ((quick)); then
    step predictor 120 bench predictor --device "$device" --configs tiny "${runs[@]}" \
        --variants eager
    skip tests 'quick mode (the test suite runs them)'
    skip node-jpeg 'quick mode'
else
    step predictor 50 bench predictor --device cuda --configs tiny,paper "${runs[@]}" \
        --variants eager,host_resize,no_graph,bf16
    if "$PYTHON" -c 'import pytest' 2>/dev/null; then
        step tests 45 "$PYTHON" -m pytest -q -p no:cacheprovider -m 'not slow' \
            test/test_inference.py test/test_device_preprocess.py test/test_export.py
    else
        skip tests 'no pytest (see the wheels step)'
    fi
    if ((ros)); then
        step node-jpeg 70 bench node --device "$device" --checkpoint "$checkpoint" --compressed \
            "${node[@]}" --tag "$tag-$preset-jpeg"
    else
        skip node-jpeg 'rclpy does not import here'
    fi
fi
if ((ros)); then
    step node-onnxruntime 80 bench node --device "$device" \
        --checkpoint "${checkpoint%.safetensors}.onnx" "${node[@]}" \
        --tag "$tag-$preset-onnxruntime"
else
    skip node-onnxruntime 'rclpy does not import here'
fi
if ((quick)); then
    step model 120 bench model --device "$device" --configs tiny --variants eager,cuda_graph \
        --batch-sizes 2 "${runs[@]}"
    step onnx 120 bench onnx --device "$device" --configs tiny "${runs[@]}"
    step training 120 bench training --device "$device" --steps 2 --batch-size 4 --frame-cache
else
    step onnx 40 bench onnx --device all --configs tiny,paper "${runs[@]}"
    step training 60 bench training --device cuda --train-preset paper --steps 4 \
        --batch-size 64 --num-workers 8 --frame-cache
fi

echo >> "$summary"
echo "Files: $(cd "$output" && ls -- *"$tag"*.md | tr '\n' ' ')" >> "$summary"
cat "$summary"
exit $failed

#!/usr/bin/env bash
# The reduced ablation with one stage 1 per seed, for a machine with a GPU and many cores: 5
# seeds in 5 processes on one GPU, fp32, within a time budget. On an H100 (16 cores) stage 1
# (then 40 epochs) took about 3 min per seed with five at once, a stage-2 run about 1 min: the
# tiny model is bound by the CPU's augmentation, not the GPU. Its stage-1 curves are in
# docs/results/stage1_takeoff/h100_40_epochs/ (docs/results/README.md).
#
#   scripts/ablate_device.sh OUTPUT_DIR [BUDGET_S [ABLATE_OPTION...]]   # default budget 480 s
#
# Options after the budget go to every training/ablate.py call (a quick try: --set
# stage1.epochs=1 --set stage2.epochs=1 --work-dir /tmp/try).
#
# First the rows the comparison needs (ConViTac, random E^c, cross-attention, concatenation,
# addition, vision only, touch only), then, with the time left, the earlier condition forms
# (tokens, pooled). Finished runs are cached in runs/ablate_seeds/, so a run cut off by its
# budget keeps what it finished, and `training/ablate.py --no-train` renders them anywhere.
# OUTPUT_DIR gets the phase logs and three archives: records (with the seed logs) and checkpoints.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/ablate_device.sh OUTPUT_DIR [BUDGET_S]}
budget=${2:-480}
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
deadline=$((SECONDS + budget))
work=runs/ablate_seeds
for ((i = 1; i < $#; i++)); do [[ ${!i} == --work-dir ]] && j=$((i + 1)) && work=${!j}; done
common=(--preset ablate_reduced --dataset synthetic_tag --work-dir "$work" --no-progress
        --set runtime.amp=off "$@")
device=cuda
"$PYTHON" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || device=cpu
{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi -L 2>/dev/null
    "$PYTHON" -c 'import os, sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA", os.cpu_count(), "cores")'
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

phase() {  # phase NAME SHARE_OF_TIME_LEFT_PERCENT VARIANT...
    local name=$1 share=$2 left limit
    shift 2
    left=$((deadline - SECONDS - 30))
    limit=$((left * share / 100))
    if ((limit < 30)); then echo "== $name: skipped, out of time"; return; fi
    local variants=()
    for v in "$@"; do variants+=(--variant "$v"); done
    echo "== $name (limit ${limit} s, device $device)"
    timeout --kill-after=10 "$limit" "$PYTHON" training/ablate.py "${common[@]}" "${variants[@]}" \
        --jobs 5 --device "$device" --output "$work/tables_$name" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} at $SECONDS s"
}
phase main 100 convitac convitac_random_encoder cross_attention concat add vision_only touch_only
phase forms 100 convitac_tokens convitac_pooled
# At most 8 files come back from the machine: logs and records in one archive, checkpoints in two
# (the fusion models the Grad-CAM figure reads; each seed's stage-1 encoder).
find "$work" \( -name ablation_run.json -o -name metrics.jsonl -o -path '*/eval/*' \
    -o -path '*/logs/seed*.log' \) -print0 | tar --null -czf "$out/records.tgz" -T -
find "$work" \( -path '*/convitac/best.safetensors' -o -path '*/cross_attention/best.safetensors' \) \
    -print0 | tar --null -czf "$out/fusion_checkpoints.tgz" -T -
find "$work" -path '*/stage1/*.safetensors' ! -name 'state*' -print0 |
    tar --null -czf "$out/stage1_checkpoints.tgz" -T -
ls -la "$out"

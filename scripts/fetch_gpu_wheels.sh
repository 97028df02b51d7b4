#!/usr/bin/env bash
# Download, here (with network), the wheels that scripts/gpu_check.sh installs on the GPU machine
# (Python 3.12, manylinux x86_64, no network): ROS 2 Jazzy's rclpy with Fast DDS and the message
# packages the node uses, rosbags, pytest. They land in wheels/cp312/ (git-ignored) and travel with
# the working tree; gpu_check.sh installs them with `pip install --no-index`.
#
#   scripts/fetch_gpu_wheels.sh [DIR]      # default wheels/cp312
#
# The packages and versions: scripts/gpu_wheels.txt (as requirements.txt pins them). What the
# GPU machine has already (numpy and its torch stack) is left out; about 90 wheels, 50 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-wheels/cp312}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
pin() { grep -E "^$1==" constraints.txt | head -n1; }
mkdir -p "$dest"
# empy (rosidl's template engine) is published as a source archive only: build its pure-Python
# wheel here so that the GPU machine installs everything from wheels.
"$PYTHON" -m pip wheel --quiet --no-deps -w "$dest" "$(pin empy)"
"$PYTHON" -m pip download --quiet --only-binary=:all: --find-links "$dest" --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$dest" -r scripts/gpu_wheels.txt
# What the GPU machine has already (its own torch stack): not carried.
rm -f "$dest"/numpy-*.whl
count=$(find "$dest" -name '*.whl' | wc -l)
echo "fetch_gpu_wheels: $count wheels, $(du -sh "$dest" | cut -f1) in $dest"

#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with everything convitac_ros needs
# on a machine without a ROS distribution. Fast (no pip run) when nothing changed since last time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CONVITAC_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.convitac-setup-stamp"

want="$(cat "$root/requirements.txt" "$root/constraints.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $venv is up to date"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
echo "setup: installing pinned dependencies (first run: several minutes, mostly torch)"
"$venv/bin/python" -m pip install --quiet --upgrade 'pip==26.3' 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" -c "$root/constraints.txt"
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c 'import torch, timm, rclpy, rosbags, cv2; print("setup: ok, torch", torch.__version__)'
echo "$want" > "$stamp"

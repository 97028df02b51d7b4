# Sourced by scripts/test.sh and scripts/demo.sh: set up (or confirm) .venv, go to the
# repository root, no model hubs (DDS set-up: convitac_ros.ros.client.loopback_dds).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export HF_HUB_OFFLINE=1
python="${CONVITAC_VENV:-$root/.venv}/bin/python"

# Sourced by scripts/test.sh and scripts/demo.sh: set up (or confirm) .venv, go to the
# repository root, keep DDS discovery on this machine in a domain of its own, no model hubs.
# Sets $root and $python. A domain chosen by the caller (ROS_DOMAIN_ID) is kept.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((1 + $$ % 100))}"
export HF_HUB_OFFLINE=1
python="${CONVITAC_VENV:-$root/.venv}/bin/python"

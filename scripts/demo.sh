#!/usr/bin/env bash
# The README's first command: set up (or update) the environment if needed, then run the demo:
# a synthetic bag replayed into convitac_node, live predictions, accuracy and latency.
# Extra arguments go to the demo (scripts/demo.sh --help lists them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
# DDS discovery stays on this machine, in a domain of its own (the demo enforces it as well).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${CONVITAC_DEMO_DOMAIN_ID:-$((1 + $$ % 100))}"
export HF_HUB_OFFLINE=1
exec "${CONVITAC_VENV:-$root/.venv}/bin/python" -m convitac_ros.tools.demo \
  --domain-id "$ROS_DOMAIN_ID" "$@"

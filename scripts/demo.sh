#!/usr/bin/env bash
# The README's first command: set up (or update) the environment if needed, then run the demo:
# a synthetic bag replayed into convitac_node, live predictions, accuracy and latency.
# Extra arguments go to the demo (scripts/demo.sh --help lists them).
set -euo pipefail
# A private DDS domain, whatever the shell had (CONVITAC_DEMO_DOMAIN_ID picks one).
export ROS_DOMAIN_ID="${CONVITAC_DEMO_DOMAIN_ID:-$((1 + $$ % 100))}"
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$python" -m convitac_ros.demo --domain-id "$ROS_DOMAIN_ID" "$@"

#!/usr/bin/env bash
# The README's first command: set up (or update) the environment if needed, then run the demo:
# a synthetic bag replayed into convitac_node, live predictions, accuracy and latency.
# Extra arguments go to the demo (scripts/demo.sh --help lists them).
set -euo pipefail
# The demo keeps DDS on loopback in a private domain of its own (--domain-id picks one).
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$python" -m convitac_ros.demo "$@"

#!/usr/bin/env bash
# The README's test command: set up (or update) the environment, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k synchronizer).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
# conftest.py sets these too (plain pytest is safe); exported here for any helper process.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((1 + $$ % 100))}"
export HF_HUB_OFFLINE=1
exec "${CONVITAC_VENV:-$root/.venv}/bin/python" -m pytest "$@"

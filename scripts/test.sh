#!/usr/bin/env bash
# The README's test command: set up (or update) the environment, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k synchronizer).
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# conftest.py sets the DDS variables too, so plain pytest is safe as well.
exec "$python" -m pytest "$@"

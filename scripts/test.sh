#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow and ROS integration tests included.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
if [ -f install/setup.bash ]; then
  set +u
  # shellcheck disable=SC1091
  . install/setup.bash
  set -u
fi
export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:-$VIRTUAL_ENV}"
exec python -m pytest "$@"

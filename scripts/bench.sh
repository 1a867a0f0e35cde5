#!/usr/bin/env bash
# Set up (idempotent), then run the benchmark suite: prints ratios, writes bench/results.json and
# bench/scaling.png. Extra arguments go to bench/run (--quick, --frames N).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
set +u
# shellcheck disable=SC1091
. install/setup.bash
set -u
exec bench/run "$@"

#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh machine: .venv with the pinned stack, sfs_core
# installed editable, and the ROS 2 package built with colcon into build/ install/ log/.
# A second run checks and changes nothing (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.sfs-requirements.sha
want=$(cat requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing the pinned stack into .venv (first run: a few minutes)"
  python -m pip install -q -c requirements/constraints.txt -r requirements/ml.txt -r requirements/ros.txt
  python -m pip install -q -c requirements/constraints.txt --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
else
  echo "[setup] .venv is up to date"
fi

if [ -f CMakeLists.txt ]; then
  "$ROOT/scripts/build_ros.sh"
fi
echo "[setup] done"

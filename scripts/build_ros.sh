#!/usr/bin/env bash
# Build the sfs_ros ROS 2 package (messages, node, launch, config) with colcon, against the
# ROS 2 Jazzy wheels in .venv (the venv is the ROS underlay). Output: build/ install/ log/ at the
# repository root; afterwards `source install/setup.bash`.
#
# Idempotent: --symlink-install links the Python sources, launch/ and config/ into install/, so
# editing them needs no rebuild. A rebuild happens only when the build inputs change (package.xml,
# CMakeLists.txt, msg/, this script, or the set of installed files); otherwise this exits in
# well under a second. SFS_FORCE_BUILD=1 builds regardless.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv

# Inputs whose change needs colcon: build files and messages by content, installed trees by name.
build_inputs() {
  cat package.xml CMakeLists.txt msg/*.msg scripts/build_ros.sh
  find sfs_ros sfs_core launch config -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort
  echo "$VENV"
}
stamp=build/.sfs-build-inputs.sha
want=$(build_inputs | sha256sum | cut -d' ' -f1)
if [ "${SFS_FORCE_BUILD:-0}" != 1 ] && [ -f install/setup.bash ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "[build_ros] install/ is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[build_ros] $VENV does not exist: run scripts/setup.sh first" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
echo "[build_ros] colcon build (logs: log/latest_build)"
colcon build --base-paths . --symlink-install \
  --event-handlers console_cohesion- summary+ status- \
  --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$VENV/bin/python" -Wno-dev
echo "$want" > "$stamp"
echo "[build_ros] done: source install/setup.bash"

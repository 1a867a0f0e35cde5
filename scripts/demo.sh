#!/usr/bin/env bash
# Set up (idempotent), write random-weight models, and segment the two photos that ship with
# ultralytics. Random weights: the pictures show that everything runs, NOT meaningful labels.
# With real weights (internet): sfs segment IMAGE... --out DIR --config config/sfs.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
out=${1:-out/demo}
assets=$(python -c "import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec('ultralytics').origin).parent / 'assets')")
sfs models init-random models/random
sfs segment "$assets/bus.jpg" "$assets/zidane.jpg" --out "$out" --config models/random/sfs.yaml
echo
echo "Outputs in $out/ (*_overlay.png, *_color.png, *_label.png, *.json, labels.json)."
echo "These came from RANDOM weights: the masks and labels are meaningless."

#!/usr/bin/env bash
# Set up (idempotent), then two demos:
# 1. random-weight models on the two photos that ship with ultralytics: everything runs, but the
#    labels are NOT meaningful;
# 2. the synthetic world: tiny models trained here on coloured shapes (first run about 15 min on
#    2 CPU cores, then cached), MEANINGFUL labels on held-out synthetic scenes, and their accuracy.
#    SFS_DEMO_SYNTHETIC=0 skips it.
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
if [ "${SFS_DEMO_SYNTHETIC:-1}" != "0" ]; then
  echo
  echo "Synthetic world: training (or reusing) the tiny models ..."
  sfs models init-synthetic models/synthetic
  scenes=(models/synthetic/val/leftImg8bit/val/synthetic/*.png)
  sfs segment "${scenes[@]:0:4}" --out "$out/synthetic" --config models/synthetic/sfs.yaml
  python -m sfs_core.synthetic.measure models/synthetic --ablation --out "$out/synthetic/accuracy.json" | tail -n 7
  echo
  echo "Synthetic outputs in $out/synthetic/: trained models, so the labels are meaningful there"
  echo "(accuracy report: $out/synthetic/accuracy.json)."
fi

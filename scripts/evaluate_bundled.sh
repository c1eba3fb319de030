#!/usr/bin/env bash
# Score each bundled model (and the classical baseline) on its validation split; prints JSON lines.
# Usage: scripts/evaluate_bundled.sh [MODEL_DIR]   (default: the bundled models)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${NAPARI_UNET_DATA:-../shared/data}
DIR=${1:-}
model() { if [ -n "$DIR" ]; then echo "$DIR/$1.pt"; else echo "$1"; fi; }
run() {  # name images labels pattern
  napari-unet evaluate --images "$2" --labels "$3" --pattern "$4" --model "$(model "$1")" --json
  napari-unet evaluate --images "$2" --labels "$3" --pattern "$4" --classical --json
}
run nuclei "$DATA/nuclei-dsb2018/val/images" "$DATA/nuclei-dsb2018/val/labels" '*'
run nuclei-brightfield "$DATA/nuclei-dsb2018-other/val/images" "$DATA/nuclei-dsb2018-other/val/labels" '*'
run phase-cells "$DATA/cells-usiigaci/val/images" "$DATA/cells-usiigaci/val/labels" '*'
run em-membranes "$DATA/em-isbi2012/train/images" "$DATA/em-isbi2012/train/labels" 'slice2*.tif'

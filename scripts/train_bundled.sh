#!/usr/bin/env bash
# Reproduce the bundled models from the real data in ../shared/data (CPU, 2 cores: 0.5-2 h each).
# Usage: scripts/train_bundled.sh [nuclei|nuclei-brightfield|phase-cells|em-membranes]...
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${NAPARI_UNET_DATA:-../shared/data}
OUT=${OUT:-src/napari_unet/weights}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(nuclei nuclei-brightfield phase-cells em-membranes)
for model in "${models[@]}"; do
  case "$model" in
    nuclei)
      # stage 1 (commit 57b8793: scale jitter 1.5, no bright-object augmentation), then stages 2 and 3
      napari-unet train --images "$DATA/nuclei-dsb2018/train/images" --labels "$DATA/nuclei-dsb2018/train/labels" \
        -o "$OUT/nuclei-stage1.pt" --name nuclei --steps 4000 --model-diameter 20 --scale-jitter 1.5 --log-every 100
      napari-unet train --images "$DATA/nuclei-dsb2018/train/images" --labels "$DATA/nuclei-dsb2018/train/labels" \
        -o "$OUT/nuclei-stage2.pt" --from "$OUT/nuclei-stage1.pt" --train-norm --steps 1500 --lr 1e-3 --log-every 100
      napari-unet train --images "$DATA/nuclei-dsb2018/train/images" --labels "$DATA/nuclei-dsb2018/train/labels" \
        -o "$OUT/nuclei.pt" --from "$OUT/nuclei-stage2.pt" --train-norm --steps 2500 --lr 7e-4 --seed 3 --log-every 100
      # post-processing on 80 training images: join threshold, then the object probability
      python scripts/tune_postprocessing.py "$OUT/nuclei.pt" "$DATA/nuclei-dsb2018/train/images" \
        "$DATA/nuclei-dsb2018/train/labels" --limit 80 --foregrounds 0.5 --seeds 0.4 0.5 0.6 \
        --join-thresholds 1.0 0.6 0.7 0.8 --write
      python scripts/tune_postprocessing.py "$OUT/nuclei.pt" "$DATA/nuclei-dsb2018/train/images" \
        "$DATA/nuclei-dsb2018/train/labels" --limit 80 --foregrounds 0.5 --seeds 0.5 --join-thresholds 0.7 \
        --object-probabilities 0 0.7 0.75 0.8 0.85 --write
      rm -f "$OUT/nuclei-stage1.pt" "$OUT/nuclei-stage2.pt" ;;
    nuclei-brightfield)
      # RGB input (grey images are repeated to three channels); stage 1 from scratch, post-processing chosen on the
      # training images, stage 2 continues on every labelled object (no hold-out) with batch-norm statistics updated
      data=("--images" "$DATA/nuclei-dsb2018-other/train/images" "--labels" "$DATA/nuclei-dsb2018-other/train/labels")
      napari-unet train "${data[@]}" -o "$OUT/nuclei-brightfield-stage1.pt" --name nuclei-brightfield --in-channels 3 \
        --steps 4000 --model-diameter 20 --scale-jitter 1.5 --seed 11 --log-every 100
      python scripts/tune_postprocessing.py "$OUT/nuclei-brightfield-stage1.pt" "${data[1]}" "${data[3]}" \
        --foregrounds 0.4 0.5 0.6 --seeds 0.3 0.4 0.5 0.6 --join-thresholds 1.0 0.5 0.6 0.7 0.8 --write
      napari-unet train "${data[@]}" -o "$OUT/nuclei-brightfield.pt" --from "$OUT/nuclei-brightfield-stage1.pt" \
        --no-hold-out --train-norm --steps 3000 --lr 1e-3 --scale-jitter 1.5 --seed 12 --log-every 100
      rm -f "$OUT/nuclei-brightfield-stage1.pt" ;;
    phase-cells)
      # stage 1: scale jitter 1.5, no bright-object augmentation (commit c903bcd's sampler); stage 2: 4,000 more
      # steps at lr 1e-3 with the current sampler (scale jitter 2); stages 3 and 4: 3,500 at 5e-4, 3,000 at 3e-4; then the
      # post-processing defaults are chosen on the training images (min size, then join threshold with the
      # seed and probability thresholds, then the object probability)
      napari-unet train --images "$DATA/cells-usiigaci/train/images" --labels "$DATA/cells-usiigaci/train/labels" \
        -o "$OUT/phase-cells-stage1.pt" --name phase-cells --steps 2500 --model-diameter 32 --min-size 30 --scale-jitter 1.5 \
        --log-every 100
      napari-unet train --images "$DATA/cells-usiigaci/train/images" --labels "$DATA/cells-usiigaci/train/labels" \
        -o "$OUT/phase-cells-stage2.pt" --from "$OUT/phase-cells-stage1.pt" --train-norm --steps 4000 --lr 1e-3 \
        --seed 5 --log-every 100
      napari-unet train --images "$DATA/cells-usiigaci/train/images" --labels "$DATA/cells-usiigaci/train/labels" \
        -o "$OUT/phase-cells-stage3.pt" --from "$OUT/phase-cells-stage2.pt" --train-norm --steps 3500 --lr 5e-4 \
        --seed 6 --log-every 100
      napari-unet train --images "$DATA/cells-usiigaci/train/images" --labels "$DATA/cells-usiigaci/train/labels" \
        -o "$OUT/phase-cells.pt" --from "$OUT/phase-cells-stage3.pt" --train-norm --steps 3000 --lr 3e-4 --seed 7 \
        --log-every 100
      tune=(python scripts/tune_postprocessing.py "$OUT/phase-cells.pt" "$DATA/cells-usiigaci/train/images"
        "$DATA/cells-usiigaci/train/labels" --write)
      "${tune[@]}" --min-sizes 200 300 400
      "${tune[@]}" --foregrounds 0.5 0.6 --seeds 0.4 0.5 --min-sizes 300 --join-thresholds 0.5 0.6 0.7
      "${tune[@]}" --foregrounds 0.5 --seeds 0.5 --min-sizes 300 --join-thresholds 0.6 \
        --object-probabilities 0 0.6 0.7 0.8
      rm -f "$OUT/phase-cells-stage1.pt" "$OUT/phase-cells-stage2.pt" "$OUT/phase-cells-stage3.pt" ;;
    em-membranes)
      napari-unet train --images "$DATA/em-isbi2012/train/images" --labels "$DATA/em-isbi2012/train/labels" \
        --pattern 'slice[01]*.tif' -o "$OUT/em-membranes.pt" --name em-membranes --steps 1500 \
        --no-rescale --model-diameter 28 --scale-jitter 1.3 --fill-background --log-every 100
      tune=(python scripts/tune_postprocessing.py "$OUT/em-membranes.pt" "$DATA/em-isbi2012/train/images"
        "$DATA/em-isbi2012/train/labels" --pattern 'slice[01]*.tif' --write)
      "${tune[@]}" --min-size 50
      "${tune[@]}" --foregrounds 0.6 --seeds 0.2 0.3 --min-sizes 50 --join-thresholds 1.0 0.6 0.7 0.8 0.9 ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
  esac
done

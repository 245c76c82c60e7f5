#!/usr/bin/env bash
# The main job, from a fresh clone: install (CPU torch first, never a CUDA build), simulate a
# scan, train a PtychoPINN model on the CPU, reconstruct a second scan of a different object
# with the same probe, and write pictures + metrics under outputs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/quickstart}
# EPOCHS=n trains n epochs instead of the recipe's (ptycho_train --help shows its default).
EPOCH_FLAGS=()
if [ -n "${EPOCHS:-}" ]; then EPOCH_FLAGS=(--nepochs "$EPOCHS"); fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e .
mkdir -p "$OUT"
echo "== simulating training and test scans (64x64 patterns, 1e6 photons)"
ptycho_simulate --output "$OUT/train.npz" --N 64 --object_size 192 --seed 1
ptycho_simulate --output "$OUT/test.npz" --N 64 --object_size 192 --seed 1 --object_seed 7
echo "== training (the recipe: ptycho_train's defaults, on the CPU)"
ptycho_train --train_data_file "$OUT/train.npz" --test_data_file "$OUT/test.npz" \
  --output_dir "$OUT/model" ${EPOCH_FLAGS[@]+"${EPOCH_FLAGS[@]}"} --torch-accelerator cpu   # the recipe = the defaults
echo "== reconstructing the training scan and the unseen test scan"
ptycho_inference --model_path "$OUT/model" --test_data "$OUT/train.npz" --output_dir "$OUT/recon_train"
ptycho_inference --model_path "$OUT/model" --test_data "$OUT/test.npz" --output_dir "$OUT/recon_test" \
  --refine object:50
cat <<MSG

Done. Look at:
  $OUT/train.png                      the simulated scan (object, probe, positions, a pattern)
  $OUT/model/loss_curve.png           training / validation loss per epoch
  $OUT/recon_train/comparison_plot.png  truth / reconstruction / error, training scan
  $OUT/recon_test/comparison_plot.png   the same for the unseen object (network alone)
  $OUT/recon_test/comparison_plot_refined.png  after 50 epochs of physics refinement
  $OUT/recon_*/metrics.json           SSIM, PSNR, FRC50 after alignment
MSG

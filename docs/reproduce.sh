#!/usr/bin/env bash
# The commands that produced the published models and solvers (docs/RESULTS.md): one
# `bns pipeline` per model, with the settings where they differ from the pipeline's defaults.
# Run from the repository root after `cargo build --release -p distiller`; work files go to
# runs/<model>/. Each run can be interrupted and started again: finished stages are skipped,
# training and distillation resume from their checkpoints, ground truth and evaluation from
# their partial files.
set -euo pipefail
BNS=${BNS:-target/release/bns}
THREADS=${THREADS:-1}
MODELS=(fashion-mnist-unet fashion-mnist mnist checkerboard)

usage() {
  cat >&2 <<EOF
usage: $0 all | MODEL...
  Trains, distills, evaluates and publishes the published models (hours on a CPU):
  all           every model: ${MODELS[*]}
  MODEL...      only these, in order
Environment: BNS (default target/release/bns), THREADS (default 1).
EOF
  exit 2
}

# model NAME: the pipeline of one published model. Beside the BNS solvers (published), the
# time-only baseline at every NFE and guidance (recorded in the BNS solver files and shown in the
# evaluation's tables). The published solvers were distilled from 640 pairs (512 training, 128
# validation) and measured on 512 test pairs added later (docs/remeasure.sh); this makes the same
# training and validation pairs with the test pairs in one run.
model() {
  local common=(--name "$1" --threads "$THREADS")
  case $1 in
    fashion-mnist-unet)
      # The page's default: the pipeline's U-Net (799,201 parameters), trained at batch 64 and a
      # peak learning rate of 5e-4 for 20,000 steps (trained here by `bns train` with the same
      # flags and --threads 2, docs/RESULTS.md); each distillation iteration runs the U-Net
      # backwards through the solver, so fewer and smaller ones than the MLPs' (300 of 16 pairs),
      # started from AB2, the best classical start on this model (at NFE 8, w = 2, after 40
      # iterations: 35.7 dB from AB2's 32.9 against 31.9 dB from the midpoint's 29.4). From
      # NFE 10 the learning rate is 5e-3·4/NFE: at NFE 16, w = 2, the first Adam steps at 5e-3
      # (which move each of the 136 coefficients by ~5e-3) took the training PSNR from AB2's
      # 40.4 dB to ~16 dB within 15 iterations; at 1.25e-3 it stayed near 35-40 dB. FD at NFE 8
      # only: 2,000 samples of every solver at NFE 16 too would add ~5 hours of a core.
      "$BNS" pipeline --dataset fashion-mnist --arch unet "${common[@]}" --default \
        --steps 20000 --batch 64 --train-lr 5e-4 --distill-batch 16 --iterations 300 \
        --init ab2 --distill-lr 0.005,0.005,0.005,0.002,0.00166667,0.00125 --fd-nfe 8 \
        --title "Fashion-MNIST, class-conditional U-Net"
      ;;
    fashion-mnist)
      "$BNS" pipeline --dataset fashion-mnist "${common[@]}" \
        --title "Fashion-MNIST, class-conditional MLP"
      ;;
    mnist)
      "$BNS" pipeline --dataset mnist "${common[@]}" --steps 8000 \
        --title "MNIST digits, class-conditional MLP"
      ;;
    checkerboard)
      # The checkerboard's velocity field is smooth enough for AB3 to lead the classical solvers:
      # start BNS from it, with a smaller step (at 5e-3 the NFE-16 solver never improved on AB3).
      "$BNS" pipeline --dataset checkerboard "${common[@]}" --init ab3 --distill-lr 5e-4 \
        --title "2-D checkerboard, unconditional MLP"
      ;;
  esac
}

[ $# -gt 0 ] || usage
if [ "$1" = all ]; then
  [ $# -eq 1 ] || usage
  set -- "${MODELS[@]}"
fi
for name in "$@"; do
  case " ${MODELS[*]} " in
    *" $name "*) ;;
    *) echo "$0: unknown model $name (the published ones: ${MODELS[*]})" >&2; usage ;;
  esac
done
for name in "$@"; do model "$name"; done

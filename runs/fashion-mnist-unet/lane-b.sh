#!/usr/bin/env bash
# The second core's share of `bns pipeline --name fashion-mnist-unet` (docs/RESULTS.md), so that
# both cores work: the ground truth at w = 0, the w = 2 solvers at NFE 16 (the pipeline's
# w = 2 run, on the other core, distills the others and skips these), then the pipeline at
# w = 0. Each command is the one the pipeline runs (same flags), so the pipeline skips what
# this made; each resumes from its partial file or checkpoint. Removed with the checkpoints.
set -euo pipefail
BNS=${BNS:-/work/bns-run}
D=runs/fashion-mnist-unet
M=$D/model.safetensors
distill() {
  local out=$D/$1
  shift
  [ -e "$out" ] && return
  local resume=()
  [ -e "$out.ckpt" ] && resume=(--resume)
  "$BNS" distill --model "$M" "$@" --batch 16 "${resume[@]}" -o "$out" --threads 1
}
[ -e $D/pairs-w0.safetensors ] ||
  "$BNS" truth --model "$M" --count 1152 --validation 128 --test 512 --seed 1 --guidance 0 \
    --rtol 1e-5 --atol 1e-5 -o $D/pairs-w0.safetensors --threads 1
until [ -e $D/pairs-w2.safetensors ]; do sleep 30; done
P=(--pairs $D/pairs-w2.safetensors --nfe 16 --grid uniform)
distill timeonly-16-w2.json "${P[@]}" --init euler --time-only --iterations 150
distill bns-16-w2.json "${P[@]}" --init midpoint --iterations 300 \
  --time-only-baseline $D/timeonly-16-w2.json
"$BNS" pipeline --dataset fashion-mnist --arch unet --name fashion-mnist-unet --steps 20000 \
  --batch 64 --train-lr 5e-4 --distill-batch 16 --iterations 300 --guidance 0 --threads 1 \
  --site /tmp/lane-site --title "Fashion-MNIST, class-conditional U-Net"

#!/usr/bin/env bash
# The second core's share of `bns pipeline --name fashion-mnist-unet` (docs/reproduce.sh), so
# that both cores work while the pipeline's w = 2 run (the first core: truth, then the w = 2
# solvers in order) goes on: the ground truth at w = 0, the w = 2 solvers at NFE 16 first (done
# long before the w = 2 run gets there, which then skips them), every solver at w = 0, then
# the pipeline at w = 0 for its evaluation.
# Each command is the one the pipeline runs (same flags), so the pipeline skips what this made;
# each resumes from its partial file or checkpoint. Removed with the checkpoints.
set -euo pipefail
BNS=${BNS:-target/release/bns}
D=runs/fashion-mnist-unet
M=$D/model.safetensors
distill() { # output pairs nfe flags...
  local out=$D/$1 pairs=$D/$2 nfe=$3
  shift 3
  [ -e "$out" ] && return
  local resume=()
  [ -e "$out.ckpt" ] && resume=(--resume)
  "$BNS" distill --model "$M" --pairs "$pairs" --nfe "$nfe" --grid uniform "$@" --batch 16 \
    --checkpoint-every 25 --psnr-cache $D/psnr-cache.json "${resume[@]}" -o "$out" \
    --threads 1
}
lr() { # the BNS solver's learning rate at NFE $1 (docs/reproduce.sh): 5e-3, and 5e-3·4/NFE from NFE 10
  awk "BEGIN { n = $1; printf \"%g\", n < 10 ? 5e-3 : 5e-3 * 4 / n }"
}
solvers() { # w nfe...
  local w=$1
  shift
  for nfe in "$@"; do
    distill timeonly-$nfe-w$w.json pairs-w$w.safetensors $nfe --init euler --time-only \
      --iterations 150
    distill bns-$nfe-w$w.json pairs-w$w.safetensors $nfe --init ab2 --iterations 300 \
      --lr "$(lr $nfe)" \
      --time-only-baseline $D/timeonly-$nfe-w$w.json
  done
}
[ -e $D/pairs-w0.safetensors ] ||
  "$BNS" truth --model "$M" --count 1152 --validation 128 --test 512 --seed 1 --guidance 0 \
    --rtol 1e-5 --atol 1e-5 -o $D/pairs-w0.safetensors --threads 1
until [ -e $D/pairs-w2.safetensors ]; do sleep 30; done
solvers 2 16
solvers 0 4 6 8 10 12 16
"$BNS" pipeline --dataset fashion-mnist --arch unet --name fashion-mnist-unet --steps 20000 \
  --batch 64 --train-lr 5e-4 --distill-batch 16 --iterations 300 --init ab2 --fd-nfe 8 \
  --distill-lr 0.005,0.005,0.005,0.002,0.00166667,0.00125 --guidance 0 \
  --threads 1 --site /tmp/lane-site --title "Fashion-MNIST, class-conditional U-Net"

#!/usr/bin/env bash
# The Twemoji example of docs/RESULTS.md, "Your own images: Twemoji": a class-conditional MLP
# trained on a folder of 729 emoji (four classes) built by scripts/twemoji-folder.sh, its ground
# truth, BNS solvers at 4, 8 and 16 NFE, and the evaluation against the folder's test split.
#
#   scripts/twemoji-model.sh [RUN_DIR]     (default runs/twemoji; run from the repository root)
#
# Every step skips an output that exists, and training resumes from its checkpoint. Uses
# $BNS (default target/release/bns) with --threads $THREADS (default 1). To put the model on
# the page afterwards:
#   $BNS publish --name twemoji --title "Twemoji, class-conditional MLP" \
#     --model RUN_DIR/model.safetensors --solvers RUN_DIR --pairs RUN_DIR/pairs-w0.safetensors
set -euo pipefail

run=${1:-runs/twemoji}
BNS=${BNS:-target/release/bns}
THREADS=${THREADS:-1}
images=$run/images
mkdir -p "$run"

[ -d "$images" ] || scripts/twemoji-folder.sh "$images"

if [ ! -e "$run/model.safetensors" ]; then
  resume=()
  [ -e "$run/model.safetensors.ckpt" ] && resume=(--resume)
  "$BNS" train --dataset "images:$images" --size 32 --steps 10000 --width 512 --depth 3 \
    --seed 0 --threads "$THREADS" --checkpoint-every 500 "${resume[@]}" -o "$run/model.safetensors"
fi
[ -e "$run/pairs-w0.safetensors" ] ||
  "$BNS" truth --model "$run/model.safetensors" --count 1152 --validation 128 --test 512 --seed 1 \
    --guidance 0 --rtol 1e-5 --atol 1e-5 --threads "$THREADS" -o "$run/pairs-w0.safetensors"
for n in 4 8 16; do
  [ -e "$run/bns-$n-w0.json" ] ||
    "$BNS" distill --model "$run/model.safetensors" --pairs "$run/pairs-w0.safetensors" \
      --nfe "$n" --init midpoint --grid uniform --iterations 600 --threads "$THREADS" \
      -o "$run/bns-$n-w0.json"
done
[ -e "$run/eval-w0/results.md" ] ||
  "$BNS" eval --model "$run/model.safetensors" --pairs "$run/pairs-w0.safetensors" \
    --solvers "$run" --dataset "images:$images" --fd-samples 1000 --threads "$THREADS" \
    -o "$run/eval-w0"

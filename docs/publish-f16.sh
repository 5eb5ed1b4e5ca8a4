#!/usr/bin/env bash
# Republishes the bundled models with their weights also in half precision (`bns publish --f16`,
# FORMATS.md §1.8): the page then downloads `model.f16.safetensors`, half the bytes, and shows
# each solver's test PSNR measured with those weights. The f32 model and the solver files stay
# byte for byte what they were.
#
# The test pairs are those of docs/remeasure.sh (`bns truth --count 1152 --validation 128 --test
# 512 --seed 1`, the same files in runs/remeasure/ when that script ran here), so every solver's
# recorded test PSNR is re-verified as before, and measured again with the f16 weights.
#
# Run from the repository root after `cargo build --release -p distiller`. Finished pairs are
# kept, so the script can be interrupted and rerun.
set -euo pipefail
BNS=${BNS:-target/release/bns}
THREADS=${THREADS:-2}
OUT=runs/remeasure

case "${1:-}" in
  all | fashion-mnist | mnist | checkerboard) ;;
  *)
    echo "usage: $0 all | fashion-mnist | mnist | checkerboard" >&2
    exit 2
    ;;
esac

republish() { # model title guidance...
  local d=$1 title=$2
  shift 2
  local model=www/models/$d/model.safetensors dir=$OUT/$d pairs=()
  mkdir -p $dir
  for w in "$@"; do
    local file=$dir/pairs-w$w.safetensors
    if [ ! -e $file ]; then
      local start=$SECONDS
      $BNS truth --model $model --count 1152 --validation 128 --test 512 --seed 1 \
        --guidance $w --rtol 1e-5 --atol 1e-5 --threads $THREADS -o $file
      echo "truth $d w=$w: $((SECONDS - start)) s"
    fi
    pairs+=($file)
  done
  local default=()
  [ $d = fashion-mnist ] && default=(--default)
  local start=$SECONDS
  $BNS publish --name $d --title "$title" --model $model --solvers www/models/$d/bns-*.json \
    --pairs "${pairs[@]}" --f16 "${default[@]}"
  echo "publish $d --f16: $((SECONDS - start)) s"
}

# In the page's order (the published list keeps it).
case $1 in
  fashion-mnist | all) republish fashion-mnist "Fashion-MNIST, class-conditional MLP" 0 2 ;;&
  mnist | all) republish mnist "MNIST digits, class-conditional MLP" 0 2 ;;&
  checkerboard | all) republish checkerboard "2-D checkerboard, unconditional MLP" 0 ;;
esac

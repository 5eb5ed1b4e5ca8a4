#!/usr/bin/env bash
# The commands that produced the published models and solvers (docs/RESULTS.md).
# Run from the repository root after `cargo build --release -p distiller`; work files go to runs/.
# Each step can be interrupted and run again: training resumes from its checkpoint, ground truth
# from its partial file, and finished outputs are skipped.
set -euo pipefail
BNS=${BNS:-target/release/bns}
THREADS=${THREADS:-1}
mkdir -p runs

# step NAME OUTPUT COMMAND...: runs COMMAND unless OUTPUT exists, and logs its wall time.
step() {
  local name=$1 output=$2
  shift 2
  if [ -e "$output" ]; then echo "skip $name ($output exists)"; return; fi
  local start=$SECONDS
  "$@"
  echo "$name: $((SECONDS - start)) s" | tee -a runs/times.log
}

train() { # dataset steps width extra-args...
  local d=$1 steps=$2 width=$3
  shift 3
  mkdir -p runs/$d
  local resume=()
  [ -e runs/$d/model.safetensors.ckpt ] && resume=(--resume)
  step "train $d" runs/$d/model.safetensors \
    $BNS train --dataset $d --steps $steps --width $width --depth 3 --seed 0 --threads $THREADS \
    "${resume[@]}" "$@" -o runs/$d/model.safetensors
}

truth() { # dataset guidance
  local d=$1 w=$2
  step "truth $d w=$w" runs/$d/pairs-w$w.safetensors \
    $BNS truth --model runs/$d/model.safetensors --count 640 --validation 128 --seed 1 \
    --guidance $w --rtol 1e-5 --atol 1e-5 -o runs/$d/pairs-w$w.safetensors
}

distill() { # dataset guidance nfe extra-args...
  local d=$1 w=$2 n=$3
  shift 3
  step "distill $d w=$w nfe=$n $*" runs/$d/bns-$n-w$w$(printf '%s' "$*" | tr -d ' -').json \
    $BNS distill --model runs/$d/model.safetensors --pairs runs/$d/pairs-w$w.safetensors \
    --nfe $n --threads $THREADS "$@" -o runs/$d/bns-$n-w$w$(printf '%s' "$*" | tr -d ' -').json
}

case "${1:-all}" in
  train)
    train fashion-mnist 15000 512
    train mnist 10000 512
    train checkerboard 10000 256 --batch 512
    ;;
  *)
    echo "usage: $0 train" >&2
    exit 2
    ;;
esac

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

distill() { # dataset guidance nfe name extra-args...
  local d=$1 w=$2 n=$3 name=$4
  shift 4
  step "distill $d $name nfe=$n w=$w" runs/$d/$name-$n-w$w.json \
    $BNS distill --model runs/$d/model.safetensors --pairs runs/$d/pairs-w$w.safetensors \
    --nfe $n --threads $THREADS "$@" -o runs/$d/$name-$n-w$w.json
}

# The solvers of one model and guidance: BNS (from midpoint on the uniform grid) at every NFE,
# and the time-only baseline (Euler's times learned).
solvers() { # dataset guidance iterations [init [extra distill args...]]
  local d=$1 w=$2 it=$3 init=${4:-midpoint}
  shift 3
  [ $# -gt 0 ] && shift
  truth $d $w
  for n in 4 6 8 10 12 16; do
    distill $d $w $n bns --init $init --grid uniform --iterations $it "$@"
  done
  if [ "$w" = 0 ]; then
    for n in 4 8 16; do
      distill $d $w $n timeonly --init euler --grid uniform --time-only --iterations $((it / 2))
    done
  fi
}

evaluate() { # dataset guidance
  local d=$1 w=$2
  # The feature classifier is trained once per dataset (by the w=0 evaluation) and reused.
  local classifier=()
  [ -e runs/$d/eval-w0/classifier.safetensors ] && classifier=(--classifier runs/$d/eval-w0/classifier.safetensors)
  step "eval $d w=$w" runs/$d/eval-w$w/results.md \
    $BNS eval --model runs/$d/model.safetensors --pairs runs/$d/pairs-w$w.safetensors \
    --solvers runs/$d --threads $THREADS "${classifier[@]}" -o runs/$d/eval-w$w
}

publish() { # dataset title [--default]
  local d=$1 title=$2
  shift 2
  local pairs=(runs/$d/pairs-w0.safetensors)
  [ -e runs/$d/pairs-w2.safetensors ] && pairs+=(runs/$d/pairs-w2.safetensors)
  local files=()
  for f in runs/$d/bns-*.json; do files+=("$f"); done
  $BNS publish --name $d --title "$title" --model runs/$d/model.safetensors \
    --solvers "${files[@]}" --pairs "${pairs[@]}" "$@"
}

case "${1:-all}" in
  train)
    train fashion-mnist 10000 512
    train mnist 8000 512
    train checkerboard 10000 256 --batch 512 --prediction velocity
    ;;
  solvers)
    # solvers DATASET GUIDANCE ITERATIONS [INIT [DISTILL ARGS...]]
    shift
    solvers "$@"
    ;;
  eval)
    evaluate "$2" "$3"
    ;;
  publish)
    publish fashion-mnist "Fashion-MNIST, class-conditional MLP" --default
    publish mnist "MNIST digits, class-conditional MLP"
    publish checkerboard "2-D checkerboard, unconditional MLP"
    ;;
  all)
    "$0" train
    "$0" solvers fashion-mnist 0 600
    "$0" solvers fashion-mnist 2 600
    "$0" solvers mnist 0 600
    "$0" solvers mnist 2 600
    # The checkerboard's velocity field is smooth enough for AB3 to lead the classical solvers:
    # start BNS from it, with a smaller step (at 5e-3 the NFE-16 solver never improved on AB3).
    "$0" solvers checkerboard 0 600 ab3 --lr 5e-4
    for d in fashion-mnist mnist; do "$0" eval $d 0; "$0" eval $d 2; done
    "$0" eval checkerboard 0
    "$0" publish
    ;;
  *)
    echo "usage: $0 [all | train | solvers DATASET GUIDANCE ITERATIONS [INIT [DISTILL ARGS]] | eval DATASET GUIDANCE | publish]" >&2
    exit 2
    ;;
esac

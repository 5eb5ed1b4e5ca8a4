#!/usr/bin/env bash
# Re-measures the published solvers on a held-out test split (docs/RESULTS.md, "Test split").
#
# The published solvers were distilled on the 512 training pairs of `bns truth --count 640
# --validation 128 --seed 1` and chosen on its 128 validation pairs. Pair i depends only on the
# seed and i, and the batches of 64 are the same, so `--count 1152 --validation 128 --test 512`
# gives the same training and validation pairs plus 512 new test pairs. For every published
# solver this script then distills the time-only baseline at the same NFE and guidance, records
# the test figures and baselines in the solver files (`bns solver measure`, which also checks each
# solver's recorded validation PSNR on the new file's validation split), republishes the models,
# and writes the PSNR tables (`bns eval`; the distances do not depend on the pairs and are not
# recomputed).
#
# Run from the repository root after `cargo build --release -p distiller`; work files go to
# runs/remeasure/. Finished outputs are skipped, so the script can be interrupted and rerun.
set -euo pipefail
BNS=${BNS:-target/release/bns}
THREADS=${THREADS:-1}
OUT=runs/remeasure

case "${1:-}" in
  all | fashion-mnist | mnist | checkerboard) ;;
  *)
    echo "usage: $0 all | fashion-mnist | mnist | checkerboard    (see the comments)" >&2
    exit 2
    ;;
esac
mkdir -p $OUT

# step NAME OUTPUT COMMAND...: runs COMMAND unless OUTPUT exists, and logs its wall time.
step() {
  local name=$1 output=$2
  shift 2
  if [ -e "$output" ]; then echo "skip $name ($output exists)"; return; fi
  local start=$SECONDS
  "$@"
  echo "$name: $((SECONDS - start)) s" | tee -a $OUT/times.log
}

remeasure() { # model title guidance... (the first model published with --default)
  local d=$1 title=$2
  shift 2
  local model=www/models/$d/model.safetensors dir=$OUT/$d
  mkdir -p $dir/solvers
  local pairs=() published=()
  for w in "$@"; do
    step "truth $d w=$w" $dir/pairs-w$w.safetensors \
      $BNS truth --model $model --count 1152 --validation 128 --test 512 --seed 1 \
      --guidance $w --rtol 1e-5 --atol 1e-5 --threads $THREADS -o $dir/pairs-w$w.safetensors
    pairs+=($dir/pairs-w$w.safetensors)
    for n in 4 6 8 10 12 16; do
      step "time-only $d nfe=$n w=$w" $dir/solvers/bns-time-only-$n-w$w.json \
        $BNS distill --model $model --pairs $dir/pairs-w$w.safetensors --nfe $n \
        --init euler --grid uniform --time-only --iterations 300 --threads $THREADS \
        -o $dir/solvers/bns-time-only-$n-w$w.json
      local name=bns-$n-w$w.json
      [ -e $dir/solvers/$name ] || cp www/models/$d/$name $dir/solvers/$name
      published+=($dir/solvers/$name)
    done
    $BNS solver measure --model $model --pairs $dir/pairs-w$w.safetensors $dir/solvers
    step "eval $d w=$w" $dir/eval-w$w/results.md \
      $BNS eval --model $model --pairs $dir/pairs-w$w.safetensors --solvers $dir/solvers \
      --fd-samples 0 --threads $THREADS -o $dir/eval-w$w
  done
  local default=()
  [ $d = fashion-mnist ] && default=(--default)
  $BNS publish --name $d --title "$title" --model $model --solvers "${published[@]}" \
    --pairs "${pairs[@]}" "${default[@]}"
}

# One model at a time, or all in the page's order (the published list keeps it).
case $1 in
  fashion-mnist | all) remeasure fashion-mnist "Fashion-MNIST, class-conditional MLP" 0 2 ;;&
  mnist | all) remeasure mnist "MNIST digits, class-conditional MLP" 0 2 ;;&
  checkerboard | all) remeasure checkerboard "2-D checkerboard, unconditional MLP" 0 ;;
esac

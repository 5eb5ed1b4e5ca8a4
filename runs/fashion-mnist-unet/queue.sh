#!/usr/bin/env bash
# One worker of the rest of `docs/reproduce.sh fashion-mnist-unet`: takes the first task of the
# list below that is not done, not taken by another worker (a lock folder under $LOCKS) and
# ready (a BNS solver needs its time-only baseline; an evaluation needs every solver of its
# guidance), runs it, and goes on until every task is done. lanes.sh starts two, one per core.
# Each distillation is the command the pipeline runs (same flags), so the pipeline skips what
# this made; each resumes from its checkpoint. Removed with the checkpoints.
set -euo pipefail
BNS=${BNS:-target/release/bns}
LOCKS=${LOCKS:-/tmp/bns-queue-locks}
D=runs/fashion-mnist-unet
M=$D/model.safetensors
NFES=(4 6 8 10 12 16)
LRS=(0.005 0.005 0.005 0.002 0.00166667 0.00125) # --distill-lr in docs/reproduce.sh
mkdir -p "$LOCKS"

lr() { # the BNS solver's learning rate at NFE $1
  local i
  for i in "${!NFES[@]}"; do [ "${NFES[$i]}" = "$1" ] && echo "${LRS[$i]}"; done
}

# Tasks in order of preference: the two solvers running when this queue replaced the lanes,
# the rest of w = 2 (published first), w = 0, then the two evaluations.
TASKS=(bns-8-w2 bns-16-w2 timeonly-10-w2 bns-10-w2 timeonly-12-w2 bns-12-w2)
for nfe in "${NFES[@]}"; do TASKS+=(timeonly-$nfe-w0 bns-$nfe-w0); done
TASKS+=(eval-w2 eval-w0)

output() { # the file that marks task $1 done
  case $1 in
    eval-w*) echo "$D/eval-${1#eval-}/results.md" ;;
    *) echo "$D/$1.json" ;;
  esac
}

ready() { # task $1's inputs exist
  local w nfe
  case $1 in
    bns-*) [ -e "$D/timeonly-${1#bns-}.json" ] ;;
    eval-w*)
      w=${1#eval-w}
      for nfe in "${NFES[@]}"; do
        [ -e "$D/timeonly-$nfe-w$w.json" ] && [ -e "$D/bns-$nfe-w$w.json" ] || return 1
      done
      ;;
    *) true ;;
  esac
}

run() { # task $1
  local task=$1 w nfe out resume=()
  case $task in
    eval-w*)
      "$BNS" pipeline --dataset fashion-mnist --arch unet --name fashion-mnist-unet \
        --steps 20000 --batch 64 --train-lr 5e-4 --distill-batch 16 --iterations 300 \
        --init ab2 --fd-nfe 8 --distill-lr "$(IFS=,; echo "${LRS[*]}")" \
        --guidance "${task#eval-w}" --threads 1 --site /tmp/lane-site \
        --title "Fashion-MNIST, class-conditional U-Net"
      return
      ;;
  esac
  w=${task##*-w}
  nfe=${task#*-}
  nfe=${nfe%-w*}
  out=$D/$task.json
  [ -e "$out.ckpt" ] && resume=(--resume)
  echo "== $(date -u +%H:%M) $task"
  case $task in
    timeonly-*)
      "$BNS" distill --model "$M" --pairs "$D/pairs-w$w.safetensors" --nfe "$nfe" \
        --grid uniform --init euler --time-only --iterations 150 --batch 16 \
        --checkpoint-every 25 --psnr-cache "$D/psnr-cache.json" "${resume[@]}" -o "$out" \
        --threads 1
      ;;
    bns-*)
      "$BNS" distill --model "$M" --pairs "$D/pairs-w$w.safetensors" --nfe "$nfe" \
        --grid uniform --init ab2 --iterations 300 --lr "$(lr "$nfe")" \
        --time-only-baseline "$D/timeonly-$nfe-w$w.json" --batch 16 \
        --checkpoint-every 25 --psnr-cache "$D/psnr-cache.json" "${resume[@]}" -o "$out" \
        --threads 1
      ;;
  esac
}

while true; do
  left=0
  took=
  for task in "${TASKS[@]}"; do
    [ -e "$(output "$task")" ] && continue
    left=$((left + 1))
    ready "$task" || continue
    mkdir "$LOCKS/$task" 2>/dev/null || continue
    took=$task
    break
  done
  [ "$left" = 0 ] && { echo "== $(date -u +%H:%M) every task done"; exit 0; }
  if [ -z "$took" ]; then
    sleep 60
    continue
  fi
  trap 'rmdir "$LOCKS/$took"' EXIT
  run "$took"
  rmdir "$LOCKS/$took"
  trap - EXIT
done

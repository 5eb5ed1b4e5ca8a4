#!/usr/bin/env bash
# Starts (or resumes) the rest of `docs/reproduce.sh fashion-mnist-unet` on both cores at nice 19,
# in the background, logging to runs/fashion-mnist-unet/lane-{a,b}.log: lane A is the pipeline at
# w = 2 (truth, solvers, evaluation), lane B is lane-b.sh (w = 0, and w = 2 at NFE 16). Both
# publish to a scratch site; when both are done, docs/reproduce.sh fashion-mnist-unet publishes
# to www/ (every stage skipped). Removed with the checkpoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
BNS=${BNS:-target/release/bns}
export BNS
mkdir -p /tmp/lane-site/models
touch /tmp/lane-site/index.html
[ -e /tmp/lane-site/models/index.json ] || echo '[]' > /tmp/lane-site/models/index.json
nohup nice -n 19 "$BNS" pipeline --dataset fashion-mnist --arch unet --name fashion-mnist-unet \
  --steps 20000 --batch 64 --train-lr 5e-4 --distill-batch 16 --iterations 300 --init ab2 --fd-nfe 8 \
  --distill-lr 0.005,0.005,0.005,0.002,0.00166667,0.00125 \
  --guidance 2 --threads 1 --site /tmp/lane-site --title "Fashion-MNIST, class-conditional U-Net" \
  >> runs/fashion-mnist-unet/lane-a.log 2>&1 &
nohup nice -n 19 runs/fashion-mnist-unet/lane-b.sh >> runs/fashion-mnist-unet/lane-b.log 2>&1 &
echo "lanes started: tail -f runs/fashion-mnist-unet/lane-{a,b}.log"

#!/usr/bin/env bash
# Starts (or resumes) the rest of `docs/reproduce.sh fashion-mnist-unet` on both cores at nice 19,
# in the background: two workers of queue.sh (the remaining solvers, then both evaluations),
# logging to runs/fashion-mnist-unet/lane-{a,b}.log. They publish to a scratch site; the real
# publication is docs/reproduce.sh fashion-mnist-unet (every stage skipped). Removed with the
# checkpoints.
set -euo pipefail
cd "$(dirname "$0")/../.."
BNS=${BNS:-target/release/bns}
LOCKS=${LOCKS:-/tmp/bns-queue-locks}
export BNS LOCKS
if pgrep -f "fashion-mnist-unet/queue.sh" >/dev/null; then
  echo "queue workers already running" >&2
  exit 1
fi
rm -rf "$LOCKS" # from workers of a session that ended
mkdir -p /tmp/lane-site/models
touch /tmp/lane-site/index.html
[ -e /tmp/lane-site/models/index.json ] || echo '[]' > /tmp/lane-site/models/index.json
for lane in a b; do
  echo "=== $(date -u) worker $lane" >> runs/fashion-mnist-unet/lane-$lane.log
  nohup nice -n 19 runs/fashion-mnist-unet/queue.sh >> runs/fashion-mnist-unet/lane-$lane.log 2>&1 &
  sleep 5 # the first takes the first task
done
echo "queue workers started: tail -f runs/fashion-mnist-unet/lane-{a,b}.log"

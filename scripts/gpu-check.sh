#!/usr/bin/env bash
# The CUDA build of bns against its CPU path, on a GPU machine, stage by stage, in ~5 minutes:
#
#   scripts/gpu-check.sh [BUNDLE_OR_BNS] [OUTPUT_DIR]
#
# BUNDLE_OR_BNS is the folder or .tar.gz `make cuda-bundle` made (bns + libcudart), or a bns
# binary (default: target/cuda-bundle). The other CUDA libraries (cuBLAS, cuRAND, NVRTC) come from
# the machine's NVIDIA Python wheels, found through python3; libcuda.so.1 from its driver.
#
# 1. prints nvidia-smi, the version of bns and the CUDA libraries it loads;
# 2. trains the 2-D checkerboard MLP for $STEPS steps on the CPU and on CUDA (same seed): both
#    losses must fall, and the two test losses agree within 15%;
# 3. ground truth from the CPU-trained model with the runtime (CPU, the reference) and with
#    `--device cuda` (candle network, DOPRI5 on the GPU): the truths agree within 1e-3, mean NFE
#    within 10%;
# 4. distills a BNS solver at NFE 8 from the same pairs on the CPU and on CUDA: the recorded
#    PSNR (always the runtime's) within 0.1 dB;
# 5. if the Fashion-MNIST files are at $BNS_FASHION_MNIST_DIR: times $IMAGE_STEPS training steps of
#    the image MLP (and of the U-Net, where this bns has `--arch`) on CUDA.
#
# Every figure goes to OUTPUT_DIR/report.md (default gpu-check/); exits non-zero on a mismatch.
set -euo pipefail
input="${1:-target/cuda-bundle}"
out="${2:-gpu-check}"
STEPS="${STEPS:-1500}"
IMAGE_STEPS="${IMAGE_STEPS:-500}"
# The device compared with the CPU; DEVICE=cpu runs the script's plumbing on a machine without a GPU.
DEVICE="${DEVICE:-cuda}"
mkdir -p "$out"
report="$out/report.md"
: >"$report"
failures=0

say() { echo "$*" | tee -a "$report"; }
fail() { say "MISMATCH: $*"; failures=$((failures + 1)); }

# The binary and the folder of the libraries shipped with it.
case "$input" in
  *.tar.gz)
    mkdir -p "$out/bundle" && tar -xzf "$input" -C "$out/bundle"
    bns="$out/bundle/bns" ;;
  *)
    if [ -d "$input" ]; then bns="$input/bns"; else bns="$input"; fi ;;
esac
[ -x "$bns" ] || { echo "gpu-check: no bns binary at $bns" >&2; exit 2; }
bundle_dir="$(cd "$(dirname "$bns")" && pwd)"
# NVIDIA's wheels: nvidia/cu13/lib (CUDA 13 layout) or nvidia/*/lib (older layout).
wheel_libs="$(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
roots = list(getattr(nvidia, "__path__", [])) or [os.path.dirname(nvidia.__file__)]
dirs = sorted({d for r in roots for d in glob.glob(os.path.join(r, "*", "lib"))})
print(":".join(dirs))
PY
)"
export LD_LIBRARY_PATH="$bundle_dir${wheel_libs:+:$wheel_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

seconds() { # NAME COMMAND...: runs it, logs its wall time
  local name=$1 start end
  shift
  start=$(date +%s%N)
  "$@" >"$out/$name.log" 2>&1 || { say "FAILED: $name (see $out/$name.log)"; tail -5 "$out/$name.log" | tee -a "$report"; exit 1; }
  end=$(date +%s%N)
  local tenths=$(((end - start) / 100000000))
  printf '| %s | %d.%d s |\n' "$name" $((tenths / 10)) $((tenths % 10)) >>"$out/times.md"
}

say "# bns GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say '```'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$report" || true
say "bns: $("$bns" --version)"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd "$bns" | grep -E 'cuda|cublas|curand|nvrtc' | tee -a "$report" || true
say '```'
: >"$out/times.md"

# 2. Training, CPU and CUDA.
train=(train --dataset checkerboard --steps "$STEPS" --width 256 --depth 3 --batch 512
  --prediction velocity --seed 0 --checkpoint-every "$STEPS")
seconds "train-cpu" "$bns" "${train[@]}" --device cpu -o "$out/cpu.safetensors"
seconds "train-cuda" "$bns" "${train[@]}" --device "$DEVICE" -o "$out/cuda.safetensors"
losses() { sed -n 's/.*training loss \([0-9.]*\) → \([0-9.]*\), test loss \([0-9.]*\).*/\1 \2 \3/p' "$1"; }
read -r cpu_early cpu_late cpu_test <<<"$(losses "$out/train-cpu.log")"
read -r cuda_early cuda_late cuda_test <<<"$(losses "$out/train-cuda.log")"
say ""
say "training loss (first → last 10% of $STEPS steps), test loss: CPU $cpu_early → $cpu_late, $cpu_test; CUDA $cuda_early → $cuda_late, $cuda_test"
python3 - "$cpu_early" "$cpu_late" "$cpu_test" "$cuda_early" "$cuda_late" "$cuda_test" <<'PY' || fail "training losses"
import sys
ce, cl, ct, ge, gl, gt = map(float, sys.argv[1:])
ok = cl < ce and gl < ge and abs(ct - gt) <= 0.15 * ct
sys.exit(0 if ok else 1)
PY

# 3. Ground truth from the CPU-trained model, on the runtime and on the GPU.
truth=(truth --model "$out/cpu.safetensors" --count 640 --validation 64 --test 64 --seed 1 --rtol 1e-5 --atol 1e-5 --batch 640)
seconds "truth-cpu" "$bns" "${truth[@]}" -o "$out/pairs-cpu.safetensors"
seconds "truth-cuda" "$bns" "${truth[@]}" --device "$DEVICE" -o "$out/pairs-cuda.safetensors"
python3 - "$out/pairs-cpu.safetensors" "$out/pairs-cuda.safetensors" <<'PY' | tee -a "$report" || fail "ground truth"
import array, json, struct, sys
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["bns.pairs"])
    a, b = header["truth"]["data_offsets"]
    values = array.array("f", raw[8 + n + a:8 + n + b])
    if sys.byteorder != "little":
        values.byteswap()
    return meta, values
m1, t1 = load(sys.argv[1])
m2, t2 = load(sys.argv[2])
worst = max(abs(x - y) / (1 + abs(x)) for x, y in zip(t1, t2))
print(f"\ntruth: mean NFE {m1['mean_nfe']:.1f} (CPU) vs {m2['mean_nfe']:.1f} (CUDA); worst relative difference {worst:.2e}")
sys.exit(0 if worst < 1e-3 and abs(m1["mean_nfe"] - m2["mean_nfe"]) <= 0.1 * m1["mean_nfe"] else 1)
PY

# 4. Distillation at NFE 8 from the same pairs.
distill=(distill --model "$out/cpu.safetensors" --pairs "$out/pairs-cpu.safetensors" --nfe 8 --init ab3 --grid uniform --iterations 600 --lr 5e-4)
seconds "distill-cpu" "$bns" "${distill[@]}" -o "$out/bns-8-cpu.json"
seconds "distill-cuda" "$bns" "${distill[@]}" --device "$DEVICE" -o "$out/bns-8-cuda.json"
python3 - "$out/bns-8-cpu.json" "$out/bns-8-cuda.json" <<'PY' | tee -a "$report" || fail "distillation PSNR"
import json, sys
a, b = (json.load(open(p))["metrics"]["validation_psnr"] for p in sys.argv[1:])
print(f"\nBNS NFE 8 validation PSNR (runtime): {a:.3f} dB distilled on the CPU, {b:.3f} dB on CUDA")
sys.exit(0 if abs(a - b) <= 0.1 else 1)
PY

# 5. Image models: training speed on the GPU.
if [ -n "${BNS_FASHION_MNIST_DIR:-}" ] && [ -d "$BNS_FASHION_MNIST_DIR" ]; then
  export BNS_FASHION_MNIST_DIR
  seconds "train-fashion-mlp-cuda-$IMAGE_STEPS" "$bns" train --dataset fashion-mnist --steps "$IMAGE_STEPS" \
    --checkpoint-every "$IMAGE_STEPS" --device "$DEVICE" -o "$out/fashion-mlp.safetensors"
  if "$bns" train --help | grep -q -- '--arch'; then
    seconds "train-fashion-unet-cuda-$IMAGE_STEPS" "$bns" train --dataset fashion-mnist --arch unet \
      --steps "$IMAGE_STEPS" --checkpoint-every "$IMAGE_STEPS" --device "$DEVICE" -o "$out/fashion-unet.safetensors"
  fi
fi

say ""
say "| stage | wall time |"
say "|---|---:|"
cat "$out/times.md" | tee -a "$report"
if [ "$failures" -gt 0 ]; then
  say ""
  say "$failures mismatch(es)"
  exit 1
fi
say ""
say "all stages agree"

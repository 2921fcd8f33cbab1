#!/usr/bin/env bash
# The GPU path in one short script (< 5 minutes on one H200): install what is missing, build the demo corpus,
# measure the loader and training (bench/train.py), train with `dfkit train --device cuda`, evaluate with
# `dfkit eval`, and time GPU video decoding through torchcodec. Never needed for the tests.
#
#     bash bench/gpu.sh                     # on a machine with a CUDA GPU
#     DEVICE=cpu QUICK=1 bash bench/gpu.sh  # dry run of the same steps on the CPU (small, slow)
#
# Environment: DEVICE (cuda), PYTHON (python3, or .venv/bin/python when there is one), WORK (a temporary folder;
# kept), WHEELS (a folder of wheels for an offline machine: pip installs from it alone), QUICK=1 (fewer steps),
# REALDATA (FF++ clips to decode too; default: shared/realdata or ../shared/realdata when present).
# Everything it prints is also in $WORK/gpu.log. It stops at the first failing step (set -euo pipefail).
set -euo pipefail

cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WORK=${WORK:-$(mktemp -d -t dfkit-gpu-XXXXXX)}
mkdir -p "$WORK"
exec > >(tee -a "$WORK/gpu.log") 2>&1
export PYTHONUNBUFFERED=1
t_start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - t_start )) s)"; }

step "python and device"
"$PYTHON" - "$DEVICE" <<'EOF'
import os, sys, torch
dev = sys.argv[1]
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores")
if dev.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available: run with DEVICE=cpu for a dry run")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF

step "install (what is missing)"
pip_install() {
  if [[ -n "${WHEELS:-}" ]]; then
    "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" "$@"
  else
    "$PYTHON" -m pip install -q "$@"
  fi
}
if ! "$PYTHON" -c "import dfkit.cli, av, cv2, timm" 2>/dev/null; then
  # the machine's own CUDA build of torch/torchvision stays: the pins of constraints.txt are CPU-machine pins
  grep -v -E '^(torch|torchvision)==' constraints.txt > "$WORK/constraints-gpu.txt"
  if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    pip_install -c "$WORK/constraints-gpu.txt" -e .
  else
    pip_install -c constraints.txt -e .
  fi
fi
if ! "$PYTHON" -c "import torchcodec.decoders" 2>/dev/null; then
  pip_install torchcodec
fi
"$PYTHON" -c "import dfkit, torchcodec; print('dfkit', dfkit.__version__ if hasattr(dfkit, '__version__') else '', \
'torchcodec', torchcodec.__version__)"

step "demo corpus in $WORK"
if [[ ! -f "$WORK/corpus/manifest.json" ]]; then
  # bench/loader.py's builder (the synthetic demo data ingested with the demo adapter), run from a file: the ingest
  # workers are spawned and must be able to import the main module
  "$PYTHON" bench/train.py --keep "$WORK" --build-only
fi
"$PYTHON" -c "import sys, dfkit.corpus as c; n = len(c.open(sys.argv[1]).metadata()); print(n, 'crops'); \
sys.exit(0 if n else 'the demo corpus holds no crops: the ingest failed')" "$WORK/corpus"

if [[ "$QUICK" == 1 ]]; then
  BENCH_ARGS=(--models tiny --img-size 64 --batch-size 16 --steps 2 --loader-batches 4)
  TRAIN_ARGS=(--backbone tiny --img-size 64 --epochs 1 --batch-size 16)
  SAMPLES=256
else
  BENCH_ARGS=(--img-size 224 --batch-size 64 --steps 10 --loader-batches 20)
  TRAIN_ARGS=(--backbone efficientnet_b0 --img-size 224 --epochs 3 --batch-size 64)
  SAMPLES=4096
fi

step "loader and training throughput (bench/train.py --device $DEVICE)"
"$PYTHON" bench/train.py --device "$DEVICE" --corpus "$WORK/corpus" "${BENCH_ARGS[@]}"

step "dfkit train --device $DEVICE"
rm -rf "$WORK/run"
# the demo corpus is small: an epoch draws SAMPLES crops (class-balanced, with replacement), so that the crops/s of
# an epoch are a steady state and not the start of the loader workers
printf 'samples_per_epoch: %s\n' "$SAMPLES" > "$WORK/train-gpu.yaml"
"$PYTHON" -m dfkit.cli train --corpus "$WORK/corpus" --config "$WORK/train-gpu.yaml" --task attribution \
  --device "$DEVICE" --amp auto --out "$WORK/run" -q "${TRAIN_ARGS[@]}"
"$PYTHON" - "$WORK/run" <<'EOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
cfg = json.loads((run / "config.json").read_text())
for h in json.loads((run / "history.json").read_text()):
    print(f"epoch {h['epoch']}: {h['samples_per_s']:.0f} training crops/s (loader + model, amp {cfg['amp_used']}, "
          f"channels-last {cfg['channels_last_used']}), loss {h['train_loss']:.3f}")
EOF

step "dfkit eval --device $DEVICE"
"$PYTHON" -m dfkit.cli eval "$WORK/run" --device "$DEVICE" --n-boot 200

step "video decode through torchcodec on $DEVICE"
if [[ -z "${REALDATA:-}" ]]; then
  for d in shared/realdata ../shared/realdata; do [[ -d "$d" ]] && REALDATA=$d && break; done
fi
"$PYTHON" - "$DEVICE" "$WORK/data" "${REALDATA:-}" <<'EOF'
import sys, time
from pathlib import Path
import torch
from torchcodec.decoders import VideoDecoder

dev, demo, real = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
sets = {"demo": sorted(demo.rglob("*.mp4"))[:24]}
if real:
    sets["FF++ (realdata)"] = sorted(Path(real).rglob("*.mp4"))[:8]
for name, files in sets.items():
    if not files:
        print(f"{name}: no video files")
        continue
    for device in dict.fromkeys(["cpu", dev]):  # CPU beside the GPU, same files
        VideoDecoder(str(files[0]), device=device)[0]  # warm-up (decoder and CUDA context)
        frames, t0 = 0, time.perf_counter()
        for f in files:
            dec = VideoDecoder(str(f), device=device)
            n = dec.metadata.num_frames or len(dec)
            for start in range(0, n, 64):
                batch = dec.get_frames_in_range(start, min(n, start + 64)).data
                frames += int(batch.shape[0])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        h, w = batch.shape[-2:]
        print(f"decode {name} on {device}: {frames / dt:7.0f} frames/s ({frames} frames of {w}x{h}, "
              f"{len(files)} files, {dt:.1f} s; frames on {batch.device})")
EOF

step "done in $(( $(date +%s) - t_start )) s; log: $WORK/gpu.log"

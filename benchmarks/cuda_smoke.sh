#!/usr/bin/env bash
# The torch backend on a GPU, end to end, in about a minute: train a few steps on --device cuda
# (every cell, dropout on), sample and evaluate with both backends, resume across backends both
# ways, and compare the first 20 losses of float32 (TF32 as PyTorch defaults), float32 with
# --deterministic and float64 on the GPU with the NumPy engine's.
#
#     bash benchmarks/cuda_smoke.sh TEXT_FILE OUT_DIR      (from a source checkout; nothing installed)
set -euo pipefail
text=$1
out=$2
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python}
small=(--hidden-size 64 --num-layers 2 --batch-size 16 --seq-len 32 --eval-every 10 --eval-max-chars 20000
       --log-every 1 --sample-every 10 --sample-length 50 --quiet)
head -c 200000 "$text" > "$out/text.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
for cell in rnn lstm gru; do
  $py -m charrnn train "$out/text.txt" --out "$out/$cell" --force --cell $cell --dropout 0.2 --steps 20 \
      --backend torch --device cuda "${small[@]}"
  for backend in numpy torch; do
    device=cpu; [ $backend = torch ] && device=cuda
    $py -m charrnn eval "$out/$cell" "$out/text.txt" --backend $backend --device $device
    $py -m charrnn sample "$out/$cell" --backend $backend --device $device --seed 1 --length 60 --prime "The"
  done
  $py -m charrnn train --resume "$out/$cell" --steps 30 --backend numpy --quiet        # GPU run -> NumPy
  $py -m charrnn train --resume "$out/$cell" --steps 40 --backend torch --device cuda --quiet  # and back
  echo "$cell: $(tail -1 "$out/$cell/metrics.jsonl" | cut -c1-160)"
done
# losses of the GPU against the NumPy engine, step for step, dropout off
for dtype in float32 float64; do
  for det in "" --deterministic; do
    [ $dtype = float64 ] && [ -n "$det" ] && continue
    $py -m charrnn train "$out/text.txt" --out "$out/gpu-$dtype$det" --force --cell lstm --steps 20 --dtype $dtype \
        --backend torch --device cuda $det "${small[@]}"
  done
  $py -m charrnn train "$out/text.txt" --out "$out/cpu-$dtype" --force --cell lstm --steps 20 --dtype $dtype "${small[@]}"
done
$py - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def losses(name):
    return [json.loads(l)["train_loss"] for l in (out / name / "metrics.jsonl").read_text().splitlines()]
ref = losses("cpu-float64")
for name in ("gpu-float64", "gpu-float32", "gpu-float32--deterministic", "cpu-float32"):
    got = losses(name)
    rel = max(abs(a - b) / abs(b) for a, b in zip(got, ref))
    print(f"{name:28s} max relative difference of the first 20 losses from NumPy float64: {rel:.2e}")
EOF

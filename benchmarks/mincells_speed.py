"""Training speed of minGRU and minLSTM against an LSTM of the same parameter count, measured with
the real `charrnn train` command (BENCHMARKS.md, "minGRU and minLSTM: training speed").

    python benchmarks/mincells_speed.py TEXT [--threads 2] [--steps 80] [--repeats 3]

Each configuration trains --steps steps at the default batch and window (B=32, T=64), validation
and samples off, --threads pinned; its speed is the median of the characters per second that
metrics.jsonl logs every 10 steps, the first record (start-up) left out. The configurations run
interleaved, --repeats times, so that a change in the machine's load falls on all of them alike;
the table gives each one's median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from charrnn.model.params import count_parameters

# (cell, layers, hidden): the LSTM and, for each parallel cell, the width whose three layers hold
# about as many parameters (V = 65, tiny-shakespeare's alphabet)
CONFIGS = [("lstm", 2, 256), ("mingru", 3, 443), ("minlstm", 3, 360)]


def one_run(text: str, cell: str, layers: int, hidden: int, steps: int, threads: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "charrnn", "train", text, "--cell", cell, "--num-layers", str(layers),
           "--hidden-size", str(hidden), "--steps", str(steps), "--threads", str(threads), "--log-every", "10",
           "--eval-every", str(10 * steps), "--sample-every", "0", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True)
    speeds = [r["chars_per_s"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if r.get("chars_per_s")]
    return statistics.median(speeds[1:] or speeds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    results: dict[tuple, list[float]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for c in CONFIGS:
                results[c].append(one_run(a.text, *c, a.steps, a.threads, Path(tmp) / f"{'-'.join(map(str, c))}-{r}"))
    lstm = statistics.median(results[CONFIGS[0]])
    print(f"load average before the last run: {os.getloadavg()[0]:.1f}")
    print("| cell | layers x H | parameters | chars/s (median) | each repeat | vs the LSTM |")
    print("|---|---|---|---|---|---|")
    for (cell, layers, hidden), speeds in results.items():
        n = count_parameters(65, hidden, layers, cell)
        med = statistics.median(speeds)
        print(f"| {cell} | {layers} x {hidden} | {n:,} | {med:,.0f} | {', '.join(f'{s:,.0f}' for s in speeds)} "
              f"| {med / lstm:.2f}x |")


if __name__ == "__main__":
    main()

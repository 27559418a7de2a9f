"""The torch backend on a GPU: its overhead against a bare nn.LSTM loop, and time to quality.

    python benchmarks/torch_backend.py speed [--device cuda] [--hidden 512,1024,2048]
        [--batch 64,128,256,512] [--seq-len 100] [--seconds 3] [--json PATH]
    python benchmarks/torch_backend.py quality TEXT_FILE [--target 1.47] [--budget 540]
        [--train-args "--cell lstm --num-layers 2 ..."] [--out RUN_DIR] [--json PATH]

speed: for every (H, B), a one-layer LSTM over a random 65-symbol text, trained with Adam and
gradient-norm clipping at 1, float32, T = --seq-len. Two sides, in this one process, alternating
after a warm-up: the bare loop (a dozen lines, as a PyTorch user writes it: one-hot into nn.LSTM,
nn.Linear, cross_entropy, clip_grad_norm_, Adam, the state carried and detached, no
synchronisation until the end), and `charrnn train --backend torch` (the Trainer itself: batcher,
TorchEngine, the schedule, the per-step loss and gradient-norm checks, the metrics), read from its
chars/s (training steps only). Tokens/s of each, and the toolkit's overhead, 1 - ours / bare.
Each side runs about --seconds per configuration.

quality: `charrnn train TEXT --backend torch` with --train-args until the validation loss (the
last tenth of the text, nats/char) reaches --target or --budget seconds pass; prints the first
validation at or below the target, with the elapsed training time (validations included).
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout, without installing

V = 65  # tiny-shakespeare's vocabulary size


def bare_loop(device, H: int, B: int, T: int, data: np.ndarray):
    """A closure running `steps` steps of the plain PyTorch loop; returns seconds."""
    import torch
    import torch.nn.functional as F

    lstm = torch.nn.LSTM(V, H).to(device)
    head = torch.nn.Linear(H, V).to(device)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    L = (len(data) - 1) // B
    x_all = torch.from_numpy(data[: B * L].astype(np.int64)).view(B, L)
    y_all = torch.from_numpy(data[1 : B * L + 1].astype(np.int64)).view(B, L)
    state = {"h": None, "k": 0}

    def run(steps: int) -> float:
        torch.cuda.synchronize() if device.type == "cuda" else None
        t0 = time.perf_counter()
        for _ in range(steps):
            k = state["k"]
            if (k + 1) * T > L:
                k, state["h"] = 0, None
            x = x_all[:, k * T : (k + 1) * T].t().to(device, non_blocking=True)
            y = y_all[:, k * T : (k + 1) * T].t().to(device, non_blocking=True)
            state["k"] = k + 1
            out, h = lstm(F.one_hot(x, V).float(), state["h"])
            state["h"] = tuple(s.detach() for s in h)
            loss = F.cross_entropy(head(out).view(-1, V), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        loss.item()
        return time.perf_counter() - t0

    return run


def charrnn_loop(device_name: str, H: int, B: int, T: int, text: Path, work: Path):
    """A closure running `steps` more steps of charrnn's Trainer; returns its training seconds."""
    from charrnn.settings import TrainConfig
    from charrnn.train import Trainer

    cfg = TrainConfig(text=str(text), cell="lstm", hidden_size=H, batch_size=B, seq_len=T, backend="torch",
                      device=device_name, lr=2e-3, lr_schedule="constant", val_frac=0.0, eval_every=0,
                      sample_every=0, log_every=10**9, steps=1, seed=1)
    trainer = Trainer(cfg, work / f"h{H}-b{B}", quiet=True)

    def run(steps: int) -> float:
        trainer.total_steps = trainer.objective.state.step + steps
        trainer.run()
        with open(trainer.objective.run_dir / "metrics.jsonl") as f:
            record = json.loads(f.read().splitlines()[-1])
        return B * T * steps / record["chars_per_s"]

    return run


def speed(args: argparse.Namespace) -> None:
    import torch

    from charrnn.torch_backend import resolve_device

    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = work / "random.txt"
        symbols = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?\n-'"))[:V]
        n = max(4_000_000, 2 * max(args.batch) * args.seq_len * 20)
        text.write_text("".join(symbols[rng.integers(0, V, n)]))
        data = np.frombuffer(text.read_bytes(), dtype=np.uint8)
        data = np.searchsorted(np.sort(np.frombuffer("".join(symbols).encode(), np.uint8)), data)
        for H in args.hidden:
            for B in args.batch:
                bare = bare_loop(device, H, B, args.seq_len, data)
                ours = charrnn_loop(args.device, H, B, args.seq_len, text, work)
                bare(3), ours(3)  # warm-up: cuDNN plans, allocator, optimizer slots
                per_step = bare(3) / 3
                steps = max(5, min(1000, int(args.seconds / 2 / per_step)))
                times = {"bare": [], "charrnn": []}
                for _ in range(2):  # alternating halves, so that a change of clock hits both
                    times["bare"].append(bare(steps))
                    times["charrnn"].append(ours(steps))
                tokens = 2 * steps * B * args.seq_len
                row = {"H": H, "B": B, "T": args.seq_len, "steps": 2 * steps,
                       "bare_tokens_per_s": tokens / sum(times["bare"]),
                       "charrnn_tokens_per_s": tokens / sum(times["charrnn"])}
                row["overhead"] = 1 - row["charrnn_tokens_per_s"] / row["bare_tokens_per_s"]
                rows.append(row)
                print(f"H={H:5d} B={B:4d} T={args.seq_len}: bare {row['bare_tokens_per_s']:12,.0f} tok/s   "
                      f"charrnn {row['charrnn_tokens_per_s']:12,.0f} tok/s   overhead {row['overhead']:+6.1%}",
                      flush=True)
                del bare, ours
                gc.collect()  # the trainer's objects refer to each other: free them before the next size
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else device.type,
            "torch": torch.__version__, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")


def quality(args: argparse.Namespace) -> None:
    from charrnn.cli import main

    out = args.out or tempfile.mkdtemp(prefix="charrnn-quality-")
    argv = ["train", args.text, "--out", out, "--force", "--backend", "torch", "--device", args.device,
            "--time-budget", str(args.budget), "--quiet", *shlex.split(args.train_args)]
    started = time.perf_counter()
    status = main(argv)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["val_nats_per_char"] is not None]
    hit = next((r for r in evals if r["val_nats_per_char"] <= args.target), None)
    best = min(evals, key=lambda r: r["val_nats_per_char"]) if evals else None
    result = {"argv": argv, "status": status, "wall_s": wall, "target": args.target,
              "reached_at_s": hit["elapsed"] if hit else None, "reached_at_step": hit["step"] if hit else None,
              "best_val": best["val_nats_per_char"] if best else None, "best_at_s": best["elapsed"] if best else None,
              "evals": [(r["step"], r["elapsed"], r["val_nats_per_char"]) for r in evals]}
    if hit:
        print(f"validation {hit['val_nats_per_char']:.4f} <= {args.target} nats/char after {hit['elapsed']:.1f} s "
              f"(step {hit['step']:,})")
    else:
        print(f"target {args.target} not reached in {args.budget} s; best {result['best_val']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--device", default="cuda")
    s.add_argument("--hidden", type=lambda v: [int(x) for x in v.split(",")], default=[512, 1024, 2048])
    s.add_argument("--batch", type=lambda v: [int(x) for x in v.split(",")], default=[64, 128, 256, 512])
    s.add_argument("--seq-len", type=int, default=100)
    s.add_argument("--seconds", type=float, default=3.0)
    s.add_argument("--json")
    q = sub.add_parser("quality")
    q.add_argument("text")
    q.add_argument("--device", default="cuda")
    q.add_argument("--target", type=float, default=1.47)
    q.add_argument("--budget", type=float, default=540)
    # untuned: a char-rnn-sized LSTM with about nanoGPT's baseline's parameter count (12.9M against 10.7M)
    q.add_argument("--train-args", default="--cell lstm --num-layers 2 --hidden-size 1024 --dropout 0.35 "
                   "--batch-size 128 --seq-len 128 --lr 2e-3 --steps 2500 --eval-every 50")
    q.add_argument("--out")
    q.add_argument("--json")
    args = p.parse_args()
    speed(args) if args.what == "speed" else quality(args)


if __name__ == "__main__":
    main()

"""Time to quality: charrnn against the same model in PyTorch for the same wall-clock budget.

    python benchmarks/time_to_quality.py TEXT_FILE [--budget 600] [--threads 1] [--sequential]
        [--train-args "--cell lstm --num-layers 2 --hidden-size 512 --dropout 0.2 --lr 2e-3"]

Both sides get the same text, the same 90/10 split (validation = the last tenth), the model and
hyperparameters charrnn resolves for that text (its defaults, changed by --train-args: cell,
hidden size, layers, dropout, window, batch, Adam, learning rate with cosine decay over the
budget, gradient-norm clipping, hidden state carried across windows), the very same initial
parameters (built by charrnn from the run's seed and init, then copied into PyTorch), and the same
number of BLAS threads. PyTorch is fed one-hot inputs into `nn.RNN` / `nn.LSTM` / `nn.GRU` (with
its `dropout` between layers) and `nn.Dropout` before `nn.Linear`, where charrnn puts dropout too,
as a PyTorch user would write it. Both are then scored by the same function: nats per character
over the whole validation text, one stream, the hidden state carried through it.

By default the two trainings run at the same time, one thread each, so they see the same machine
(on a 2-core machine that is the fair split); --sequential runs them one after the other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def torch_worker(args: argparse.Namespace) -> None:
    """Train the PyTorch twin with the resolved config in `args.config` for `args.budget` seconds."""
    import numpy as np
    import torch

    from charrnn import CharRNN

    torch.set_num_threads(args.threads)
    cfg = json.loads(Path(args.config).read_text())
    ids = np.fromfile(args.tokens, dtype=np.dtype(args.dtype))
    n_train = len(ids) - int(len(ids) * cfg["val_frac"])
    V, H, L, B, T = args.vocab, cfg["hidden_size"], cfg["num_layers"], cfg["batch_size"], cfg["seq_len"]
    cell, p = cfg.get("cell", "rnn"), cfg.get("dropout", 0.0)
    torch.manual_seed(cfg["seed"])
    rnn = getattr(torch.nn, cell.upper())(V, H, L, batch_first=True, dropout=p if L > 1 else 0.0)
    head, drop = torch.nn.Linear(H, V), torch.nn.Dropout(p)
    init = CharRNN(V, H, L, "float32", cfg["seed"], cfg["init"], cell=cell).params  # charrnn's initial weights
    with torch.no_grad():
        for prefix, module in (("rnn.", rnn), ("head.", head)):
            for name, w in module.named_parameters():
                w.copy_(torch.from_numpy(init[prefix + name]))
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    stream_len = (n_train - 1) // B
    data = torch.from_numpy(ids[: B * stream_len + 1].astype(np.int64))
    x_all = data[: B * stream_len].view(B, stream_len)
    y_all = data[1 : B * stream_len + 1].view(B, stream_len)
    def zeros() -> object:
        return (torch.zeros(L, B, H), torch.zeros(L, B, H)) if cell == "lstm" else torch.zeros(L, B, H)

    def detach(state: object) -> object:
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    h = zeros()
    start, pos, steps = time.perf_counter(), 0, 0
    while (elapsed := time.perf_counter() - start) < args.budget:
        if pos >= stream_len:
            pos, h = 0, zeros()
        x = torch.nn.functional.one_hot(x_all[:, pos : pos + T], V).float()
        y = y_all[:, pos : pos + T]
        pos += T
        low = cfg["lr"] * cfg["min_lr_frac"]
        for g in opt.param_groups:
            g["lr"] = low + (cfg["lr"] - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / args.budget)))
        out, h = rnn(x, detach(h))
        loss = torch.nn.functional.cross_entropy(head(drop(out)).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["clip_norm"]:
            torch.nn.utils.clip_grad_norm_(params, cfg["clip_norm"])
        opt.step()
        steps += 1
    state = {"rnn." + k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    state |= {"head." + k: v.detach().numpy() for k, v in head.state_dict().items()}
    np.savez(args.out, **state)
    Path(args.out + ".json").write_text(json.dumps({"steps": steps, "chars": steps * B * T}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("text")
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--train-args", default="", help="charrnn train flags for the model and its training")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--tokens", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return torch_worker(args)

    import numpy as np
    import torch

    from charrnn import CharRNN
    from charrnn.io.checkpoint import load_checkpoint
    from charrnn.evaluate.lm import evaluate_ids

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               CHARRNN_THREADS=str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="ttq-"))
    run = work / "charrnn-run"
    # Resolve charrnn's defaults for this text with a zero-step run, so PyTorch can copy them.
    extra = shlex.split(args.train_args)
    subprocess.run([sys.executable, "-m", "charrnn", "train", args.text, "--out", str(run), "--steps", "1",
                    "--eval-every", "0", "--sample-every", "0", "--quiet", *extra], check=True, env=env)
    c = load_checkpoint(run / "latest.safetensors")
    cfg_path = run / "config.json"
    ours_cmd = [sys.executable, "-m", "charrnn", "train", args.text, "--out", str(work / "ours"),
                "--time-budget", str(args.budget), "--eval-every", "0", "--sample-every", "0", "--quiet", *extra]
    theirs_cmd = [sys.executable, __file__, args.text, "--worker", "--budget", str(args.budget),
                  "--threads", str(args.threads), "--config", str(cfg_path), "--tokens", str(run / "tokens.bin"),
                  "--dtype", c.vocab.id_dtype.str, "--vocab", str(c.vocab.size), "--out", str(work / "torch.npz")]
    t0 = time.time()
    if args.sequential:
        subprocess.run(ours_cmd, check=True, env=env)
        subprocess.run(theirs_cmd, check=True, env=env)
    else:
        procs = [subprocess.Popen(ours_cmd, env=env), subprocess.Popen(theirs_cmd, env=env)]
        for p in procs:
            if p.wait():
                raise SystemExit("a training process failed")
    wall = time.time() - t0

    ids = np.fromfile(run / "tokens.bin", dtype=c.vocab.id_dtype)
    val = ids[len(ids) - int(len(ids) * c.config.val_frac):]
    ours = load_checkpoint(work / "ours" / "latest.safetensors")
    theirs = CharRNN(**(ours.model.config | {"dtype": "float32"}), params=dict(np.load(work / "torch.npz")))
    ours_val = evaluate_ids(ours.model, val).nats_per_char
    theirs_val = evaluate_ids(theirs, val).nats_per_char
    ours_chars = ours.state["chars_seen"]
    theirs_chars = json.loads((work / "torch.npz.json").read_text())["chars"]
    cfg = json.loads(cfg_path.read_text())
    print(f"text {args.text}: {len(ids):,} chars, validation {len(val):,} (last {c.config.val_frac:g})")
    print(f"config: {cfg.get('cell', 'rnn')} H={cfg['hidden_size']} L={cfg['num_layers']} "
          f"dropout={cfg.get('dropout', 0.0)} B={cfg['batch_size']} T={cfg['seq_len']} "
          f"{cfg['optimizer']} lr={cfg['lr']} cosine, clip_norm={cfg['clip_norm']}, init={cfg['init']}")
    print(f"budget {args.budget:.0f} s each, {args.threads} thread(s) each, "
          f"{'sequential' if args.sequential else 'concurrent'} (wall {wall:.0f} s); torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'':10} {'chars trained':>14} {'val nats/char':>14} {'val bits/char':>14}")
    for name, chars, v in (("charrnn", ours_chars, ours_val), ("pytorch", theirs_chars, theirs_val)):
        print(f"{name:10} {chars:>14,} {v:>14.4f} {v / math.log(2):>14.4f}")


if __name__ == "__main__":
    main()

"""A plain PyTorch character-level training script, the baseline of the bench's end-to-end rows.

    python -m charrnn.bench.torch_train TEXT --steps N --hidden H --batch B --seq-len T [--module RNN]

Written as a PyTorch user writes it: the text read and mapped to ids, B streams through it,
`nn.Embedding` (one-hot rows) feeding `nn.RNN` / `nn.LSTM` / `nn.GRU` with batch_first=True, a
linear head, cross-entropy, Adam at 2e-3 and gradient-norm clipping at 1, the hidden state carried
across windows; at the end the validation tenth is scored and the model saved. PyTorch keeps its
default number of threads unless OMP_NUM_THREADS or --threads says otherwise. The bench times the
whole process for two step counts and takes the difference, as it does for `charrnn train`.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("text")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--module", default="RNN", help="the torch.nn recurrent module: RNN, LSTM or GRU")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    ix = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([ix[c] for c in text], dtype=torch.long)
    n_val = len(data) // 10
    train, val = data[:-n_val], data[-n_val:]
    V, B, T = len(chars), a.batch, a.seq_len
    per = (len(train) - 1) // B
    streams = train[: B * per + 1]

    embed = torch.nn.Embedding.from_pretrained(torch.eye(V))
    rnn = getattr(torch.nn, a.module)(V, a.hidden, batch_first=True)
    head = torch.nn.Linear(a.hidden, V)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    h = None
    pos = 0
    for _ in range(a.steps):
        if pos + T >= per:
            pos, h = 0, None
        idx = torch.arange(B)[:, None] * per + pos + torch.arange(T)[None, :]
        x, y = streams[idx], streams[idx + 1]
        out, h = rnn(embed(x), h)
        h = tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        pos += T
    with torch.no_grad():
        out, _ = rnn(embed(val[None, :-1]))
        val_loss = torch.nn.functional.cross_entropy(head(out)[0], val[1:]).item()
    if a.out:
        from safetensors.torch import save_file

        state = {f"rnn.{k}": v for k, v in rnn.state_dict().items()}
        save_file(state | {f"head.{k}": v for k, v in head.state_dict().items()}, a.out)
    print(f"{loss.item():.4f} {val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

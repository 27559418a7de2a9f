"""The two sides of the benchmark rows, each run in its own process (`protocol`):

    python -m charrnn.bench.sides '{"side": "ours" | "torch", "job": ..., ...}'

charrnn's side uses the public API as a user would. PyTorch's side is written the way a PyTorch
user writes a character model: `nn.RNN` / `nn.LSTM` / `nn.GRU` plus `nn.Linear`, the characters
fed as one-hot vectors (`F.one_hot`) or through an embedding lookup of the identity matrix
(`nn.Embedding`), whichever the spec names (the driver tries both and keeps PyTorch's faster),
`F.cross_entropy`, `torch.optim.Adam`. Both sides load the same parameters from one file and walk
the same random text, and first compute the same number (`check`) from them.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .protocol import serve

V = 65  # tiny-shakespeare's alphabet; every row uses random text over it


class Windows:
    """Consecutive windows of one long random text, a fresh one for every call.

    Training sees new text at every step; timing one window over and over would instead let the
    model memorise it (within a few hundred steps at B=1). Each side walks the same windows.
    """

    def __init__(self, B: int, T: int, count: int, seed: int) -> None:
        self.text = np.random.default_rng(seed).integers(0, V, size=(B, T * count + 1))
        self.T, self.count, self.i = T, count, 0

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        start = (self.i % self.count) * self.T
        self.i += 1
        return self.text[:, start : start + self.T], self.text[:, start + 1 : start + self.T + 1]


def gumbel_noise(rng: np.random.Generator, n: int, dtype: Any = np.float32) -> np.ndarray:
    """(n, V) Gumbel(0, 1) noise: argmax(logits + g) is an exact draw from softmax(logits).

    Drawing the noise for many steps at once turns sampling into one add and one argmax per
    character (the Gumbel-max trick), instead of a softmax, a cumulative sum and a search.
    """
    return rng.gumbel(size=(n, V)).astype(dtype)


# ------------------------------------------------------------------------------------------------
# charrnn


class OursTrain:
    """forward + BPTT + Adam on a fresh window per call (with the seed's Adagrad and clipping
    when spec["seed_optimizer"])."""

    def __init__(self, spec: dict[str, Any], model: Any) -> None:
        from ..optim import clip_grad_value_, make_optimizer
        from ..train.fused import FusedStep

        self.model, self.clip = model, clip_grad_value_
        self.seed_opt = spec.get("seed_optimizer", False)
        if self.seed_opt:
            self.opt = make_optimizer("adagrad", model.params, 0.1, eps=1e-8, eps_inside_sqrt=True)
        else:
            self.opt = make_optimizer("adam", model.params, 1e-3)
        # the step `charrnn train` takes: one compiled call where it applies (B=1), else the NumPy path
        self.fused = FusedStep.for_model(model, self.opt, spec["B"], clip_value=5.0 if self.seed_opt else 0.0)
        self.h = model.initial_state(spec["B"])
        self.data = Windows(spec["B"], spec["T"], spec["calls"], spec["data_seed"])
        self.chars = spec["B"] * spec["T"]
        self.spec = spec

    def check(self) -> float:
        x, y = Windows(self.spec["B"], self.spec["T"], 1, self.spec["data_seed"])()
        return self.model.loss(x, y)[0]

    def __call__(self) -> None:
        if self.fused is not None:
            x, y = self.data()
            self.fused(x, y, self.h, self.opt.lr)
            return
        _, grads, _ = self.model.loss_and_grads(*self.data())
        if self.seed_opt:
            self.clip(grads, 5.0)
        self.opt.step(grads)


class OursEval:
    """The loss of one window, forward only (`model.loss`)."""

    def __init__(self, spec: dict[str, Any], model: Any) -> None:
        self.model = model
        self.x, self.y = Windows(spec["B"], spec["T"], 1, spec["data_seed"])()
        self.chars = spec["B"] * spec["T"]

    def check(self) -> float:
        return self.model.loss(self.x, self.y)[0]

    def __call__(self) -> None:
        self.model.loss(self.x, self.y)


class OursGenerate:
    """One stream sampled character by character with `model.stepper` and Gumbel-max."""

    def __init__(self, spec: dict[str, Any], model: Any) -> None:
        self.model, self.chars = model, spec["chars"]
        self.rng = np.random.default_rng(3)

    def check(self) -> list[float]:
        step = self.model.stepper(1)
        for _ in range(3):
            logits = step(3)
        return logits[0].tolist()

    def __call__(self) -> None:
        step = self.model.stepper(1)
        tok = 0
        noise = gumbel_noise(self.rng, self.chars)
        for i in range(self.chars):
            tok = (step(tok)[0] + noise[i]).argmax()


class OursTorchTrain(OursTrain):
    """The torch backend's training step (`TorchEngine.train_step`: forward, backward, the norm,
    Adam, and its one synchronisation) on a fresh window per call, from a zero state as the other
    sides start, without clipping as they run."""

    def __init__(self, spec: dict[str, Any], model: Any) -> None:
        from types import SimpleNamespace

        from ..settings import TrainConfig
        from ..optim import make_optimizer
        from ..torch_backend.engine import TorchEngine
        from ..torch_backend.infer import TorchModel

        cfg = TrainConfig(backend="torch", device=spec.get("device", "cpu"), cell=model.cell,
                          num_layers=model.num_layers, clip_norm=0.0)
        objective = SimpleNamespace(kind="lm", cfg=cfg, model=model, batch_size=spec["B"],
                                    optimizer=make_optimizer("adam", model.params, 1e-3))
        self.engine = TorchEngine(objective)
        self.data = Windows(spec["B"], spec["T"], spec["calls"], spec["data_seed"])
        self.chars = spec["B"] * spec["T"]
        self.spec = spec
        self.model = TorchModel(self.engine.module, self.engine.device, model.hidden_size, model.num_layers,
                                len(model.state_parts))

    def __call__(self) -> None:
        from ..train.objective import Window

        self.engine.train_step(Window(*self.data()), self.engine.initial_state(self.spec["B"]), 1e-3)


def ours_job(spec: dict[str, Any]) -> Any:
    from .. import CharRNN, threads

    if spec.get("threads"):
        threads.set_threads(spec["threads"])
    if spec.get("blas_threads"):
        # the alternative the cores rows measure: one worker, the BLAS library's own threads
        threads.set_threads(1)
        threads._blas_controller().limit(limits=spec["blas_threads"])
    model = CharRNN.load(spec["params"])
    if spec.get("backend") == "torch":  # the same jobs through charrnn's torch backend
        import torch

        from ..torch_backend.infer import TorchModel

        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        if spec["job"] == "train":
            return OursTorchTrain(spec, model)
        model = TorchModel.from_numpy(model, spec.get("device", "cpu"))
    return {"train": OursTrain, "eval": OursEval, "gen": OursGenerate}[spec["job"]](spec, model)


# ------------------------------------------------------------------------------------------------
# PyTorch, as its users write it


class TorchSide:
    def __init__(self, spec: dict[str, Any]) -> None:
        import torch
        from safetensors.numpy import load_file

        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        self.torch, self.spec = torch, spec
        from ..model.params import torch_state_dicts

        state = torch_state_dicts(load_file(spec["params"]))
        H = state["head"]["weight"].shape[1]
        layers = len(state["rnn"]) // 4  # four arrays a layer: two weights, two biases
        self.rnn = getattr(torch.nn, spec["torch_module"])(V, H, layers)
        self.head = torch.nn.Linear(H, V)
        self.rnn.load_state_dict({k: torch.from_numpy(v) for k, v in state["rnn"].items()})
        self.head.load_state_dict({k: torch.from_numpy(v) for k, v in state["head"].items()})
        self.embed = torch.nn.Embedding.from_pretrained(torch.eye(V)) if spec.get("input") == "embedding" else None
        self.H = H

    def inputs(self, tokens: Any) -> Any:
        """(T, B) ids -> (T, B, V) one-hot floats, in the form the spec names."""
        if self.embed is not None:
            return self.embed(tokens)
        return self.torch.nn.functional.one_hot(tokens, V).float()

    def loss(self, x: np.ndarray, y: np.ndarray) -> Any:
        torch = self.torch
        tx = torch.from_numpy(np.ascontiguousarray(x.T))  # PyTorch's default time-major layout
        ty = torch.from_numpy(np.ascontiguousarray(y.T)).reshape(-1)
        out, _ = self.rnn(self.inputs(tx))
        return torch.nn.functional.cross_entropy(self.head(out).reshape(-1, V), ty)


class TorchTrain(TorchSide):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.opt = self.torch.optim.Adam([*self.rnn.parameters(), *self.head.parameters()], lr=1e-3)
        self.data = Windows(spec["B"], spec["T"], spec["calls"], spec["data_seed"])
        self.chars = spec["B"] * spec["T"]

    def check(self) -> float:
        with self.torch.no_grad():
            return self.loss(*Windows(self.spec["B"], self.spec["T"], 1, self.spec["data_seed"])()).item()

    def __call__(self) -> None:
        loss = self.loss(*self.data())
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class TorchEval(TorchSide):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.x, self.y = Windows(spec["B"], spec["T"], 1, spec["data_seed"])()
        self.chars = spec["B"] * spec["T"]

    def check(self) -> float:
        with self.torch.no_grad():
            return self.loss(self.x, self.y).item()

    def __call__(self) -> None:
        with self.torch.no_grad():
            self.loss(self.x, self.y).item()


class TorchGenerate(TorchSide):
    """Stepping the module one character at a time: softmax and torch.multinomial."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.chars = spec["chars"]
        self.gen = self.torch.Generator().manual_seed(3)

    def _step(self, tok: int, state: Any) -> tuple[Any, Any]:
        out, state = self.rnn(self.inputs(self.torch.tensor([[tok]])), state)
        return self.head(out[0, 0]), state

    def check(self) -> list[float]:
        with self.torch.no_grad():
            state = None
            for _ in range(3):
                logits, state = self._step(3, state)
        return logits.tolist()

    def __call__(self) -> None:
        torch = self.torch
        with torch.no_grad():
            state, tok = None, 0
            for _ in range(self.chars):
                logits, state = self._step(tok, state)
                tok = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.gen))


def torch_job(spec: dict[str, Any]) -> Any:
    return {"train": TorchTrain, "eval": TorchEval, "gen": TorchGenerate}[spec["job"]](spec)


def make_job(spec: dict[str, Any]) -> Any:
    return (ours_job if spec["side"] == "ours" else torch_job)(spec)


if __name__ == "__main__":
    sys.exit(serve(make_job))

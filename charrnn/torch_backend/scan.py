"""The parallel-in-time cells (core/mingru.py, core/minlstm.py) as torch modules, for the torch
backend: the cells' TORCH_MODULE names them, as the other cells name nn.GRU or nn.LSTM.

Their gates read the input alone, so a layer is one product over all T * B rows and the
element-wise first-order filter h_t = a_t * h_{t-1} + b_t, computed here as a parallel scan
(Hillis and Steele): after the pass at distance d = 1, 2, 4, .. each position holds the filter
composed over the 2d steps ending at it, (a, b) o (a', b') = (a a', a' b + b'), so ceil(log2 T)
passes of whole-window element-wise operations replace T dependent steps: few kernel launches on
a GPU, and only products and sums, so exact to rounding in float64 (a log-space scan would need
logs of values of either sign).

The modules are nn.GRU's twins: the constructor (input_size, hidden_size, num_layers,
batch_first), the call ((T, B, I), h_0 (L, B, H)) -> (out (T, B, H), h_T (L, B, H)), and each
layer's parameters under PyTorch's names in the order of the cell's table (weight_ih_l{k},
bias_ih_l{k}), which is how the backend copies them in and out.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def parallel_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 1..T from h_0: a, b (T, B, H), h0 (B, H) -> (T, B, H)."""
    b = torch.cat([a[:1] * h0 + b[:1], b[1:]])  # h_0 folded into the first step
    d = 1
    while d < a.shape[0]:
        # position t takes the composition ending at t - d first: (a_t a_{t-d}, a_t b_{t-d} + b_t)
        b = torch.cat([b[:d], a[d:] * b[:-d] + b[d:]])
        a = torch.cat([a[:d], a[d:] * a[:-d]])
        d *= 2
    return b


class _ScanLayers(nn.Module):
    """num_layers layers, as nn.GRU has them: layer k's weight_ih_l{k} (G*H, I) and bias_ih_l{k}
    (G*H,), the cell's table, initialised as PyTorch's recurrent modules are (U(-1/sqrt(H),
    1/sqrt(H))); time-major unless batch_first; no dropout (the backend applies its own)."""

    GATES = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.batch_first = hidden_size, num_layers, batch_first
        bound = 1.0 / math.sqrt(hidden_size)
        for k in range(num_layers):
            rows, cols = self.GATES * hidden_size, input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(rows, cols).uniform_(-bound, bound)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(rows).uniform_(-bound, bound)))

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of the filter from the projection W x + b (T, B, G*H)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, I) (or (B, T, I) batch_first), h0 (num_layers, B, H) or None for zeros:
        (the top layer's h_t (T, B, H) (or batch-first), h_T of every layer (num_layers, B, H))."""
        out = x.transpose(0, 1) if self.batch_first else x
        T, B, _ = out.shape
        if h0 is None:
            h0 = out.new_zeros(self.num_layers, B, self.hidden_size)
        finals = []
        for k in range(self.num_layers):
            w, b = getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}")
            xw = torch.addmm(b, out.reshape(T * B, -1), w.t()).reshape(T, B, -1)  # every row at once
            out = parallel_scan(*self.coefficients(xw), h0[k])
            finals.append(out[-1])
        return (out.transpose(0, 1) if self.batch_first else out), torch.stack(finals)


class MinGRU(_ScanLayers):
    """z = sigmoid(W_z x + b_z), h~ = W_h x + b_h, h_t = (1 - z) h_{t-1} + z h~ (core/mingru.py)."""

    GATES = 2

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre_z, h_cand = xw.chunk(2, dim=-1)
        z = torch.sigmoid(pre_z)
        return 1 - z, z * h_cand


class MinLSTM(_ScanLayers):
    """f, i = sigmoid(W_f x + b_f), sigmoid(W_i x + b_i), h~ = W_h x + b_h,
    h_t = f / (f + i) h_{t-1} + i / (f + i) h~ (core/minlstm.py)."""

    GATES = 3

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre_f, pre_i, h_cand = xw.chunk(3, dim=-1)
        f, i = torch.sigmoid(pre_f), torch.sigmoid(pre_i)
        s = f + i
        return f / s, i / s * h_cand

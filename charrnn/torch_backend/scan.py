"""The parallel-in-time cells (core/mingru.py, core/minlstm.py) as torch modules, for the torch
backend: the cells' TORCH_MODULE names them, as the other cells name nn.GRU or nn.LSTM.

Their gates read the input alone, so a layer is one product over all T * B rows and the
element-wise first-order filter h_t = a_t * h_{t-1} + b_t, computed here as a parallel scan
(Hillis and Steele): after the pass at distance d = 1, 2, 4, .. each position holds the filter
composed over the 2d steps ending at it, (a, b) o (a', b') = (a a', a' b + b'), so ceil(log2 T)
passes of whole-window element-wise operations replace T dependent steps: few kernel launches on
a GPU, and only products and sums, so exact to rounding in float64 (a log-space scan would need
logs of values of either sign). The call is nn.GRU's: ((T, B, I), h_0 (1, B, H)) -> (out
(T, B, H), h_T (1, B, H)); the parameters are registered in the cell's table order (weight_ih,
bias_ih), which is how the backend copies them in and out by name.
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


class _ScanLayer(nn.Module):
    """One layer: weight_ih (G*H, I) and bias_ih (G*H,) as the cell's table has them, initialised
    as PyTorch's recurrent modules are (U(-1/sqrt(H), 1/sqrt(H)))."""

    GATES = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers != 1:
            raise ValueError("one layer per module: the backend stacks them")
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.GATES * hidden_size, input_size))
        self.bias_ih = nn.Parameter(torch.empty(self.GATES * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of the filter from the projection W x + b (T, B, G*H)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T, B, _ = x.shape
        xw = torch.addmm(self.bias_ih, x.reshape(T * B, -1), self.weight_ih.t()).reshape(T, B, -1)
        a, b = self.coefficients(xw)
        out = parallel_scan(a, b, h0[0])
        return out, out[-1:]


class MinGRU(_ScanLayer):
    """z = sigmoid(W_z x + b_z), h~ = W_h x + b_h, h_t = (1 - z) h_{t-1} + z h~ (core/mingru.py)."""

    GATES = 2

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre_z, h_cand = xw.chunk(2, dim=-1)
        z = torch.sigmoid(pre_z)
        return 1 - z, z * h_cand


class MinLSTM(_ScanLayer):
    """f, i = sigmoid(W_f x + b_f), sigmoid(W_i x + b_i), h~ = W_h x + b_h,
    h_t = f / (f + i) h_{t-1} + i / (f + i) h~ (core/minlstm.py)."""

    GATES = 3

    def coefficients(self, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre_f, pre_i, h_cand = xw.chunk(3, dim=-1)
        f, i = torch.sigmoid(pre_f), torch.sigmoid(pre_i)
        s = f + i
        return f / s, i / s * h_cand

"""The math core: NumPy only, arrays in and out, no files, threads or configuration.

Size letters used throughout:
    B  batch: parallel text streams          T  time steps in one window
    V  vocabulary size (one-hot input size)   H  hidden units per layer
    I  input size of a layer (V for the first, H above)
    G  gate blocks of a cell: 1 (rnn), 4 (lstm: i|f|g|o), 3 (gru: r|z|n)
    N  = T * B positions scored in a window

Every recurrent cell is one module with the same small set of free functions (the cell
contract); `CELLS` maps a cell's name to its module, and nothing else needs to know which cell
runs. A layer of any cell, over a window, with PyTorch's parameter layouts:

    GATES: int                      G above
    STATE: tuple[str, ...]          ("h",) or ("h", "c"): the parts of the carried state

    forward(x, w_ih, w_hh, b_ih, b_hh, state0, need_cache=True) -> (hs, state_n, cache)
        x: (T, B) integer ids (the first layer: one-hot input, U x_t is column x_t of w_ih)
           or (T, B, I) floats (the layer below's states).
        w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh (G*H,): as nn.RNN / nn.LSTM / nn.GRU.
        state0: a tuple of len(STATE) arrays (B, H).
        hs: (T, B, H), h_t for every step, a fresh array; state_n: tuple like state0.
        cache: what `backward` needs (None when need_cache is False).
    backward(dhs, cache, w_ih, w_hh, dw_ih, dw_hh, db_ih, db_hh, dstate_n=None, need_dx=True)
            -> (dx, dstate0)
        dhs: (T, B, H), dL/dh_t arriving from above; may be overwritten.
        dw_ih, dw_hh, db_ih, db_hh: accumulated in place (backward only adds).
        dstate_n: gradients arriving at the final state (tuple like state0) or None for zeros.
        dx: (T, B, I) = dL/dx for the layer below, or None (need_dx False, or integer x).
        dstate0: tuple like state0, dL/dstate0.
    step(x, w_ih, w_hh, b_ih, b_hh, state) -> state_new
        One step for generation: x (B,) ids or (B, I) floats; state and state_new tuples of (B, H);
        state_new[0] is h.
    forward_reference / backward_reference: the same signatures, written plainly one equation
        per line; tests hold the tuned functions to them.
"""

from __future__ import annotations

from . import gru, lstm, rnn

# cell name -> module with the contract's functions (config.CELLS lists the names)
CELL_MODULES = {"rnn": rnn, "lstm": lstm, "gru": gru}

"""The math core: each layer of the network as a mirrored forward / backward pair, in NumPy.

Size letters used throughout:
    B  batch: parallel text streams          T  time steps in one window
    V  vocabulary size (one-hot input size)   H  hidden units per layer
    N  = T * B positions scored in a window

Arrays are time-major inside the core, (T, B, ...), so that the one piece of work that must run
step by step, the recurrence, reads and writes contiguous (B, H) slices. Everything that does not
depend on the previous step (input projection, output projection, softmax, weight gradients) is
done for all steps at once with one large matrix product.

Backward functions *add* into the gradient arrays they are given (as a layer used twice would
need); zeroing gradients is the caller's job. In the seeds' notation, for one layer:

    a_t = W h_{t-1} + U x_t + b      (forward:  rnn_forward after an input projection)
    h_t = tanh(a_t)
    o_t = V h_t + c                   (linear_forward)
    L   = mean_t -log softmax(o_t)[y_t]   (softmax_cross_entropy_forward)

This module depends on NumPy only.
"""

from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------------------------
# one-hot input projection: U x_t is column x_t of U, so the forward pass is a lookup


def embedding_forward(weight: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """U x_t for one-hot x_t, for all positions at once.

    weight: (H, V), PyTorch's `weight_ih_l0`.  tokens: int array of any shape S.
    Returns (*S, H): column `tokens[...]` of `weight`. A dense one-hot product would cost
    2*H*V flops per position for the same result.
    """
    return weight.T[tokens]


def embedding_backward(dweight: np.ndarray, da: np.ndarray, tokens: np.ndarray) -> None:
    """dU[:, v] += sum of da over the positions whose input token is v.

    dweight: (H, V) accumulated in place.  da: (*S, H).  tokens: (*S,).
    Sorting the positions by token turns the scatter-add into one contiguous segmented sum
    (np.add.reduceat), several times faster than np.add.at on this access pattern.
    `embedding_backward_reference` is the plain version it is tested against.
    """
    flat_tokens = tokens.reshape(-1)
    flat_da = da.reshape(-1, da.shape[-1])
    order = np.argsort(flat_tokens, kind="stable")
    sorted_tokens = flat_tokens[order]
    starts = np.flatnonzero(np.r_[True, sorted_tokens[1:] != sorted_tokens[:-1]])
    sums = np.add.reduceat(flat_da[order], starts, axis=0)  # (distinct tokens, H)
    dweight[:, sorted_tokens[starts]] += sums.T


def embedding_backward_reference(dweight: np.ndarray, da: np.ndarray, tokens: np.ndarray) -> None:
    """The obvious scatter-add, kept as the reference for `embedding_backward`."""
    np.add.at(dweight.T, tokens.reshape(-1), da.reshape(-1, da.shape[-1]))


# --------------------------------------------------------------------------------------------
# dense layers: the input projection of layers k > 0, and the output layer o_t = V h_t + c


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y = x W^T + b.   x: (N, I)  weight: (O, I)  bias: (O,)  ->  y: (N, O)."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    dweight: np.ndarray,
    dbias: np.ndarray | None,
    need_dx: bool = True,
) -> np.ndarray | None:
    """Mirror of `linear_forward`: dW += dy^T x,  db += sum_n dy,  returns dx = dy W.

    dy: (N, O)  x: (N, I)  weight, dweight: (O, I)  dbias: (O,)  ->  dx: (N, I) or None.
    """
    dweight += dy.T @ x
    if dbias is not None:
        dbias += dy.sum(axis=0)
    return dy @ weight if need_dx else None


# --------------------------------------------------------------------------------------------
# the recurrence: the only sequential part


def rnn_forward(xa: np.ndarray, weight_hh: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """h_t = tanh(xa_t + W h_{t-1}) for t = 1..T.

    xa: (T, B, H), the input projection U x_t + b already added for every step.
    weight_hh: (H, H), W.  h0: (B, H).
    Returns hs: (T, B, H), the hidden state after every step (hs[-1] is h_T).
    """
    hs = np.empty_like(xa)
    h = h0
    for t in range(xa.shape[0]):
        a = np.matmul(h, weight_hh.T, out=hs[t])  # W h_{t-1}, written straight into hs[t]
        a += xa[t]
        h = np.tanh(a, out=a)
    return hs


def rnn_backward(
    dhs: np.ndarray, hs: np.ndarray, h0: np.ndarray, weight_hh: np.ndarray, dweight_hh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror of `rnn_forward`: backpropagation through time over one window.

    dhs: (T, B, H), dL/dh_t arriving from above (the output layer or the next layer).
    hs, h0, weight_hh: as in / out of the forward.  dweight_hh: (H, H), accumulated in place.
    Returns (da, dh0): da (T, B, H) = dL/da_t, which the caller turns into the input-side
    gradients, and dh0 (B, H) = dL/dh_0.

    Going backwards, h_t receives gradient from the layer above at step t *and* from a_{t+1}
    through W: dh_t = dhs_t + W^T da_{t+1}. That sum is the only sequential work; dW is then
    one product over all steps, sum_t da_t h_{t-1}^T.
    """
    da = np.empty_like(dhs)
    dh_next = np.zeros_like(h0)  # nothing flows back from beyond the window's last step
    for t in range(dhs.shape[0] - 1, -1, -1):
        dh = np.add(dhs[t], dh_next, out=da[t])
        dh *= 1.0 - hs[t] * hs[t]  # tanh'(a_t) = 1 - h_t^2
        dh_next = dh @ weight_hh  # W^T da_t, in row-vector form
    # sum_t da_t h_{t-1}^T with h_{t-1} = h0 for the first step and hs[t-1] after it.
    dweight_hh += da[0].T @ h0
    if dhs.shape[0] > 1:
        H = hs.shape[-1]
        dweight_hh += da[1:].reshape(-1, H).T @ hs[:-1].reshape(-1, H)
    return da, dh_next


# --------------------------------------------------------------------------------------------
# softmax and cross-entropy, fused: the gradient of the pair is simply p - onehot(y)


def softmax_cross_entropy_forward(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood in nats, and the softmax probabilities.

    logits: (N, V), overwritten by the probabilities (they are what the backward needs, and
    reusing the buffer saves an (N, V) allocation).  targets: (N,) ints.
    Returns (loss, probs) with probs the same array as `logits`.
    """
    n = logits.shape[0]
    logits -= logits.max(axis=1, keepdims=True)  # exp cannot overflow; the softmax is unchanged
    target_logit = logits[np.arange(n), targets]
    probs = np.exp(logits, out=logits)
    total = probs.sum(axis=1)
    # log p_y = o_y - log sum exp o; summed in float64 so a float32 loss is not biased by rounding
    nll = np.log(total, dtype=np.float64) - target_logit
    probs /= total[:, None]
    return float(nll.mean()), probs


def softmax_cross_entropy_backward(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mirror of the forward: dL/do = (p - onehot(y)) / N, computed in place on `probs`."""
    n = probs.shape[0]
    probs[np.arange(n), targets] -= 1.0
    probs *= 1.0 / n
    return probs

"""Softmax and cross-entropy, fused: the gradient of the pair is simply p - onehot(y).

    L = mean_t -log softmax(o_t)[y_t]
"""

from __future__ import annotations

import numpy as np




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
    total = np.reciprocal(total, out=total)
    probs *= total[:, None]
    return float(nll.mean()), probs


def softmax_cross_entropy_backward(probs: np.ndarray, targets: np.ndarray, n_total: int | None = None) -> np.ndarray:
    """Mirror of the forward: dL/do = (p - onehot(y)) / N, computed in place on `probs`.

    n_total: N when these N_i rows are a share of a mean over N positions (a shard of a window,
    model/parallel.py); the default is the rows' own count."""
    n = probs.shape[0]
    probs[np.arange(n), targets] -= 1.0
    probs *= 1.0 / (n if n_total is None else n_total)
    return probs


def softmax_cross_entropy_reference(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """The textbook pair, kept as the reference: (mean NLL, dL/dlogits); `logits` is not modified."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = -np.log(p[np.arange(n), targets]).mean()
    dlogits = p.copy()
    dlogits[np.arange(n), targets] -= 1.0
    return float(loss), dlogits / n

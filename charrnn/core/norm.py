"""Layer normalisation over the last axis, as a mirrored forward / backward pair (PyTorch's
`nn.LayerNorm(H)`: learned gain and bias, the biased variance, eps inside the square root).

    mu = mean_j x_j      var = mean_j (x_j - mu)^2      rstd = 1 / sqrt(var + eps)
    xhat_j = (x_j - mu) * rstd                          y_j = weight_j * xhat_j + bias_j

Every position (each row of the leading axes) is normalised on its own, so a window, a shard of
its streams and one generation step give the same numbers for the same rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EPS = 1e-5  # nn.LayerNorm's default


class NormCache(NamedTuple):
    xhat: np.ndarray  # (..., H) the normalised input
    rstd: np.ndarray  # (..., 1) 1 / sqrt(var + eps)


def layer_norm_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                       eps: float = EPS) -> tuple[np.ndarray, NormCache]:
    """y = weight * xhat + bias, a fresh array.   x: (..., H)  weight, bias: (H,)  ->  (y, cache)."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu  # (..., H), fresh: becomes xhat in place
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + np.asarray(eps, dtype=x.dtype))
    xc *= rstd
    return xc * weight + bias, NormCache(xc, rstd)


def layer_norm_backward(dy: np.ndarray, cache: NormCache, weight: np.ndarray, dweight: np.ndarray,
                        dbias: np.ndarray) -> np.ndarray:
    """Mirror of `layer_norm_forward`: dweight += sum dy * xhat, dbias += sum dy (over every
    position); returns dx, a fresh array:

        g = dy * weight      dx = rstd * (g - mean_j g_j - xhat * mean_j (g_j * xhat_j))
    """
    xhat, rstd = cache
    positions = tuple(range(dy.ndim - 1))
    dweight += (dy * xhat).sum(axis=positions)
    dbias += dy.sum(axis=positions)
    g = dy * weight
    dx = g - g.mean(axis=-1, keepdims=True)
    dx -= xhat * np.mean(g * xhat, axis=-1, keepdims=True)
    dx *= rstd
    return dx

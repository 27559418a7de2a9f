"""Inverted dropout, as PyTorch applies it in training: keep each number with probability 1 - p
and scale the kept ones by 1 / (1 - p), so that evaluation, which keeps everything, needs no
rescaling. The mask is drawn from an explicit generator, so a run that saves the generator's
state resumes with the very same masks.
"""

from __future__ import annotations

import numpy as np


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype: np.dtype) -> np.ndarray:
    """A mask of 0 and 1 / (1 - p), each entry kept with probability 1 - p."""
    keep = rng.random(shape, dtype=np.float64) >= p
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype=dtype)


def dropout_forward(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """y = x * mask, a fresh array.   x, mask: the same shape."""
    return x * mask


def dropout_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mirror of `dropout_forward`: dx = dy * mask, in place on dy (which the caller gives up)."""
    dy *= mask
    return dy

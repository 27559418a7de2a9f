"""Layer normalisation (core/norm.py): finite differences in float64, PyTorch's nn.LayerNorm under
autograd, and the dtype kept."""

import numpy as np
import pytest

from charrnn.core.norm import layer_norm_backward, layer_norm_forward
from charrnn.gradcheck import numeric_gradient


def problem(shape, seed):
    rng = np.random.default_rng(seed)
    H = shape[-1]
    return (rng.normal(size=shape) * 3 + 1, rng.normal(size=H), rng.normal(size=H), rng.normal(size=shape))


def loss_and_grads(x, w, b, dy):
    """L = sum(dy * LN(x)): its gradients are the backward's from upstream dy."""
    y, cache = layer_norm_forward(x, w, b)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = layer_norm_backward(dy.copy(), cache, w, dw, db)
    return float((dy * y).sum()), dx, dw, db


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 2, 7), (2, 3, 1)])
def test_finite_differences(shape):
    x, w, b, dy = problem(shape, seed=sum(shape))
    _, dx, dw, db = loss_and_grads(x, w, b, dy)
    for value, grad in ((x, dx), (w, dw), (b, db)):
        num = numeric_gradient(lambda: loss_and_grads(x, w, b, dy)[0], value, np.arange(value.size))
        np.testing.assert_allclose(grad.reshape(-1), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(1, 3), (6, 4), (3, 2, 9), (5, 1, 16)])
def test_matches_pytorch_layer_norm(shape, torch):
    x, w, b, dy = problem(shape, seed=10 + sum(shape))
    norm = torch.nn.LayerNorm(shape[-1]).double()  # eps 1e-5, elementwise affine: the same defaults
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(w))
        norm.bias.copy_(torch.from_numpy(b))
    tx = torch.from_numpy(x).requires_grad_()
    ty = norm(tx)
    ty.backward(torch.from_numpy(dy))
    y, cache = layer_norm_forward(x, w, b)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = layer_norm_backward(dy.copy(), cache, w, dw, db)
    for mine, theirs in ((y, ty.detach()), (dx, tx.grad), (dw, norm.weight.grad), (db, norm.bias.grad)):
        theirs = theirs.numpy()
        assert np.abs(mine - theirs).max() <= 1e-10 * max(np.abs(theirs).max(), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_backward_adds(dtype):
    x, w, b, dy = (a.astype(dtype) for a in problem((3, 4, 6), seed=2))
    y, cache = layer_norm_forward(x, w, b)
    dw, db = np.ones_like(w), np.ones_like(b)
    dx = layer_norm_backward(dy, cache, w, dw, db)
    assert y.dtype == dx.dtype == dw.dtype == dtype
    _, _, dw1, db1 = loss_and_grads(x, w, b, dy)
    np.testing.assert_allclose(dw, dw1 + 1, rtol=1e-5)  # added into, not overwritten
    np.testing.assert_allclose(db, db1 + 1, rtol=1e-5)
    # every position normalised on its own: mean 0, variance 1 / (1 + eps / var) before the affine
    assert np.abs(cache.xhat.mean(axis=-1)).max() < 1e-5

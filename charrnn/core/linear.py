"""Dense layers and the input projection of a recurrent layer, as mirrored forward / backward pairs.

The input projection of a layer is x_t W_ih^T + b_ih for every step at once. For the first layer
x_t is one-hot, so the product is a lookup of column x_t of W_ih, and its weight gradient is a sum
of dL/dxw over the positions of each character; both are written here once for every cell.
"""

from __future__ import annotations

import numpy as np


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None = None
) -> np.ndarray:
    """y = x W^T + b.   x: (N, I)  weight: (O, I)  bias: (O,)  ->  y: (N, O), into `out` if given."""
    y = np.matmul(x, weight.T, out=out)
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
    dx_out: np.ndarray | None = None,
) -> np.ndarray | None:
    """Mirror of `linear_forward`: dW += dy^T x,  db += sum_n dy,  returns dx = dy W.

    dy: (N, O)  x: (N, I)  weight, dweight: (O, I)  dbias: (O,)  ->  dx: (N, I) (in `dx_out`) or None.
    """
    dweight += dy.T @ x
    if dbias is not None:
        dbias += dy.sum(axis=0)
    return np.matmul(dy, weight, out=dx_out) if need_dx else None


def is_ids(x: np.ndarray) -> bool:
    """True for a layer input of token ids (one-hot), False for dense floats."""
    return x.dtype.kind in "iu"


def as_layer_input(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Ids stay ids; dense inputs are taken in the parameters' dtype, so nothing is upcast."""
    x = np.asarray(x)
    return x if is_ids(x) else x.astype(dtype, copy=False)


def input_forward(x: np.ndarray, weight_ih: np.ndarray, bias_ih: np.ndarray) -> np.ndarray:
    """xw_t = W_ih x_t + b_ih for every step: (T, B, G*H), a fresh array.

    x: (T, B) ids (a lookup of columns of W_ih) or (T, B, I) floats (one product over all steps).
    """
    if is_ids(x):
        xw = weight_ih.T[x]  # (T, B, G*H), gathered rows of the transposed weight
    else:
        T, B, I = x.shape
        xw = (x.reshape(T * B, I) @ weight_ih.T).reshape(T, B, -1)
    xw += bias_ih
    return xw


def input_backward(
    dxw: np.ndarray,
    x: np.ndarray,
    weight_ih: np.ndarray,
    dweight_ih: np.ndarray,
    dbias_ih: np.ndarray,
    need_dx: bool = True,
) -> np.ndarray | None:
    """Mirror of `input_forward`: dW_ih += sum_t dxw_t x_t^T, db_ih += sum_t dxw_t, dx = dxw W_ih.

    dxw: (T, B, G*H).  For ids, dW_ih's column v gets the sum of dxw over the positions holding v,
    computed as one product with the one-hot matrix (a scatter-add, np.add.at, is several times
    slower on this hardware); no dx is returned for ids. Returns dx (T, B, I) or None.
    """
    T, B, GH = dxw.shape
    flat = dxw.reshape(T * B, GH)
    dbias_ih += flat.sum(axis=0)
    if is_ids(x):
        V = weight_ih.shape[1]
        onehot = np.zeros((T * B, V), dtype=dxw.dtype)
        onehot[np.arange(T * B), x.reshape(-1)] = 1
        dweight_ih += flat.T @ onehot
        return None
    I = x.shape[2]
    dweight_ih += flat.T @ x.reshape(T * B, I)
    return (flat @ weight_ih).reshape(T, B, I) if need_dx else None


def input_backward_reference(
    dxw: np.ndarray, x: np.ndarray, weight_ih: np.ndarray, dweight_ih: np.ndarray, dbias_ih: np.ndarray,
    need_dx: bool = True,
) -> np.ndarray | None:
    """The plain version of `input_backward`: a scatter-add for ids, kept as the reference."""
    T, B, GH = dxw.shape
    flat = dxw.reshape(T * B, GH)
    dbias_ih += flat.sum(axis=0)
    if is_ids(x):
        np.add.at(dweight_ih.T, x.reshape(-1), flat)
        return None
    xf = x.reshape(T * B, -1)
    dweight_ih += flat.T @ xf
    return (flat @ weight_ih).reshape(T, B, -1) if need_dx else None


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)), written as 0.5 * (1 + tanh(x / 2)): the same function, with no overflow
    for large |x| and one transcendental call instead of two."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def gate_layer_train_flops(gates: int, input_size: int, hidden_size: int) -> float:
    """Nominal FLOPs per character of a training step of a layer whose G gate blocks are dense
    products of x_t and h_{t-1}: three times the forward pass's 2 G H (I + H), as PyTorch counts
    its one-hot input multiplied densely (the cells' `train_flops`)."""
    return 3.0 * 2 * gates * hidden_size * (input_size + hidden_size)


def input_layer_train_flops(gates: int, input_size: int, hidden_size: int) -> float:
    """Nominal FLOPs per character of a training step of a layer whose G gate blocks read x_t
    alone (minGRU, minLSTM): three times the forward pass's 2 G H I, no recurrent product."""
    return 3.0 * 2 * gates * hidden_size * input_size

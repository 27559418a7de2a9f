"""The impulse response of the seeds' linear recurrence, the picture behind vanishing gradients.

    h_t = w h_{t-1} + x_t,   x_0 = 1, x_t = 0 after,   h_{-1} = 0   =>   h_t = w^t

Backpropagation through time multiplies the gradient by W^T diag(1 - h^2) once per step, so a
gradient from t steps back is scaled as this response is: |w| < 1 shrinks it geometrically
(vanishing), |w| > 1 grows it (exploding). The matrix form h_t = W h_{t-1} + x_t with x_0 a unit
vector has |h_t| = R^t exactly when W is R times an orthogonal matrix; a Gaussian matrix with the
same spectral radius R still ends at the rate R^t, but its non-normality can make |h_t| grow for
a while first (transient growth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import stopping
from ..errors import ConfigError
from ..model.params import orthogonal

MAX_STEPS = 100_000
MAX_MATRIX = 1024  # an SVD of the H x H power per step

MEANING = ("backpropagation through time multiplies the gradient by W^T diag(1 - h^2) once per step, "
           "so a gradient from t steps back is scaled like h_t: |w| < 1 vanishes, |w| > 1 explodes")


@dataclass
class Impulse:
    """h_0..h_N of the recurrence and the envelope R^t it follows (R = |w| or the spectral radius)."""

    kind: str  # "scalar", "orthogonal" or "gaussian"
    radius: float  # |w|, or the spectral radius of the matrix
    values: np.ndarray  # (N+1,) h_t for the scalar; for a matrix the largest |h_t| over unit impulses, |W^t|_2
    envelope: np.ndarray  # (N+1,) R^t
    random: np.ndarray | None = None  # (N+1,) for a matrix: |h_t| of one random unit impulse

    def to_json(self) -> dict:
        out = {"kind": self.kind, "radius": self.radius}
        if self.kind == "scalar":
            out["h"] = [_finite(v) for v in self.values]
        else:
            out["max_norm"] = [_finite(v) for v in self.values]
            out["random_norm"] = [_finite(v) for v in self.random]
        return out | {"envelope": [_finite(v) for v in self.envelope], "meaning": MEANING}


def _finite(v: float) -> float | None:
    """Strict JSON has no infinity: an overflowed value is written as null."""
    v = float(v)
    return v if np.isfinite(v) else None


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= MAX_STEPS:
        raise ConfigError(f"--steps must be an integer in [0, {MAX_STEPS:,}], got {steps!r}")
    return int(steps)


def scalar_impulse(w: float, steps: int) -> Impulse:
    """h_t = w h_{t-1} + x_t for t = 0..steps with a unit impulse at t = 0: h_t = w^t."""
    steps = _check_steps(steps)
    if not np.isfinite(w):
        raise ConfigError(f"--w must be a finite number, got {w}")
    h = np.empty(steps + 1)
    prev = 0.0
    with np.errstate(over="ignore"):
        for t in range(steps + 1):
            prev = w * prev + (1.0 if t == 0 else 0.0)
            h[t] = prev
        envelope = abs(w) ** np.arange(steps + 1, dtype=np.float64)
    return Impulse("scalar", abs(float(w)), h, envelope)


def recurrent_matrix(size: int, radius: float, gaussian: bool, rng: np.random.Generator) -> np.ndarray:
    """R times a random orthogonal matrix, or a Gaussian matrix rescaled to spectral radius R."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_MATRIX:
        raise ConfigError(f"--matrix must be an integer in [1, {MAX_MATRIX}], got {size!r}")
    if not (np.isfinite(radius) and radius >= 0):
        raise ConfigError(f"--radius must be a finite number >= 0, got {radius}")
    if not gaussian:
        return radius * orthogonal(size, rng)
    g = rng.standard_normal((size, size)) / np.sqrt(size)
    rho = np.max(np.abs(np.linalg.eigvals(g)))
    return g * (radius / rho)


def _norm(h: np.ndarray) -> float:
    """|h|_2, scaled so that a vector of entries near the largest float keeps its finite norm
    (the sum of squares would overflow), or infinity for one that overflowed."""
    if not np.all(np.isfinite(h)):
        return np.inf
    scale = float(np.max(np.abs(h)))
    return scale * float(np.linalg.norm(h / scale)) if scale > 0 else 0.0


def _spectral_norm(m: np.ndarray) -> float:
    """|M|_2, or infinity for a matrix that overflowed (or whose SVD does)."""
    if not np.all(np.isfinite(m)):
        return np.inf
    try:
        value = float(np.linalg.norm(m, 2))
    except np.linalg.LinAlgError:  # the SVD did not converge: entries near the largest float
        return np.inf
    return value if np.isfinite(value) else np.inf


def matrix_impulse(size: int, radius: float, steps: int, gaussian: bool = False, seed: int = 0) -> Impulse:
    """h_t = W h_{t-1} + x_t with x_0 a unit vector, so h_t = W^t x_0: the largest |h_t| over all
    unit impulses, |W^t|_2 (R^t exactly for W = R * orthogonal), and |h_t| of one random impulse."""
    steps = _check_steps(steps)
    rng = np.random.default_rng(seed)
    w = recurrent_matrix(size, radius, gaussian, rng)
    h = rng.standard_normal(size)
    h /= np.linalg.norm(h)
    power = np.eye(size)
    worst = np.empty(steps + 1)
    norms = np.empty(steps + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            stopping.check()
            if t:
                h = w @ h
                power = w @ power
            # once a product overflows its norm is infinite for good (inf * 0 would make the
            # next one NaN), and an SVD of entries near the largest float can overflow inside
            norms[t] = _norm(h)
            worst[t] = _spectral_norm(power)
        envelope = float(radius) ** np.arange(steps + 1, dtype=np.float64)
    return Impulse("gaussian" if gaussian else "orthogonal", float(radius), worst, envelope, norms)


def impulse_response(w: float, steps: int, matrix: int | None = None, radius: float = 0.9, gaussian: bool = False,
                     seed: int = 0) -> Impulse:
    """The scalar recurrence's response (matrix None), else an H x H matrix's: `charrnn impulse`
    and charrnn.plot_impulse."""
    if matrix is None:
        return scalar_impulse(w, steps)
    return matrix_impulse(matrix, radius, steps, gaussian=gaussian, seed=seed)

"""Dynamic evaluation: the model keeps adapting to the text it scores (Krause, Kahembwe, Murray
and Renals, "Dynamic Evaluation of Neural Sequence Models", ICML 2018).

One stream reads the text in order, its state carried throughout. The text is cut into segments
of n characters; each segment is first scored with the current weights (that score counts), then
one gradient step is taken on the same segment's mean loss (truncated BPTT over the segment, the
state carried into the next). The step is the paper's RMS-normalised SGD with a decay toward the
trained weights theta0 (its "RMS global prior"), for every parameter i:

    theta_i <- theta_i - eta * g_i / (RMS_i + eps) + min(lambda * RMS_i / mean(RMS), 1) * (theta0_i - theta_i)

g is the gradient of the segment's mean loss in nats per character, both terms are computed from
the weights before the step, and mean(RMS) is the mean over every parameter of the model.
RMS_i = sqrt(MS_i), MS_i the mean of g_i^2 over the segments of a text the scored part does not
contain, taken with the trained weights (no step), one stream, state carried. As the paper's own
code does, the decay rate of a parameter is capped at 1, so that the pull toward theta0 never
overshoots it. Where the paper adds a fixed eps to RMS, eps here is EPS_SHARE * mean(RMS): the same
hyper-parameters then mean the same for any model and segment length, and a parameter whose
gradient was zero in the statistics (a character absent from them) takes a step of bounded size.

Tuning (`evaluate_dynamic`): the text's targets are split in two halves. The hyper-parameters
(eta, lambda, n; any not fixed by the caller) are chosen on the FIRST half by a small fixed grid
(the smallest dynamic loss wins, the first in grid order on a tie), each run from the trained
weights and a zero state; the RMS statistics come from the first half too. The score reported is
over the SECOND half only: its state is set by the WARMUP characters before it run with the
trained weights (read, not scored, no step), as the static evaluation starts a stream, and then
it is scored dynamically from the trained weights. The static score of the same second half (one
stream, the same warm-up) comes beside it, so the two can be compared.

The caller's model is never changed: the work is done by a copy (dropout off) whose parameters
are updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import stopping
from ..errors import DataError
from ..model import CharRNN
from .lm import WARMUP, EvalResult, PerCharacter, _score_streams
from ..core.tuning import EVAL_WINDOW

# The grids tried on the first half for the hyper-parameters the caller leaves open. eta is the
# step per segment in units of a parameter's RMS gradient; lambda the share of the way back to
# theta0 a parameter of mean RMS goes per segment (measured: BENCHMARKS.md, "Dynamic evaluation").
LR_GRID = (3e-4, 1e-3, 3e-3)
DECAY_GRID = (0.0, 3e-3, 3e-2)
SEGMENT_GRID = (20, 50)
# eps of the update, as a share of the mean RMS gradient (module docstring).
EPS_SHARE = 1e-2
# The bounds of the hyper-parameters (the command line's and the API's).
MAX_LR = 1.0
MAX_DECAY = 1.0
MAX_SEGMENT = 10_000

Progress = Callable[[int], None]


@dataclass(frozen=True)
class DynamicResult(PerCharacter):
    """The dynamic score of a text's second half, with its static score and the hyper-parameters."""

    nats: float  # total nats of the scored characters, scored dynamically
    chars: int  # characters scored (the second half)
    static: EvalResult  # the same characters scored with the trained weights, one stream
    lr: float  # eta
    decay: float  # lambda
    segment: int  # n
    tuned: tuple[str, ...]  # which of "lr", "decay", "segment" were chosen on the first half
    tuning_chars: int  # characters of the first half

    @property
    def nats_per_char(self) -> float:
        return self.nats / self.chars if self.chars else float("nan")

    def __repr__(self) -> str:
        return (f"DynamicResult(dynamic nats_per_char={self.nats_per_char:.4f}, static "
                f"{self.static.nats_per_char:.4f}, chars={self.chars}, lr={self.lr:g}, decay={self.decay:g}, "
                f"segment={self.segment}, tuned={self.tuned})")


def working_copy(model: CharRNN) -> CharRNN:
    """A model of the same structure and weights whose parameters are the caller's copies, dropout
    off (dynamic evaluation scores as evaluation does)."""
    c = model.config
    return CharRNN(c["vocab_size"], c["hidden_size"], c["num_layers"], c["dtype"], None, c["init"], cell=c["cell"],
                   residual=model.stack.residual, layer_norm=model.stack.layer_norm,
                   params={name: p.copy() for name, p in model.params.items()})


def gradient_rms(model: CharRNN, ids: np.ndarray, start: int, stop: int, segment: int,
                 progress: Progress | None = None) -> dict[str, np.ndarray]:
    """RMS_i: the root mean square over segments of the gradient of each segment's mean loss, for
    the targets [start, stop) of ids read as one stream from a zero state, the weights unchanged.
    Float64 arrays shaped as the parameters."""
    ms = {name: np.zeros(p.shape) for name, p in model.params.items()}
    h = None
    count = 0
    for s in range(start, stop, segment):
        stopping.check()
        e = min(s + segment, stop)
        _, grads, h = model.loss_and_grads(ids[None, s:e], ids[None, s + 1 : e + 1], h)
        for name, g in grads.items():
            ms[name] += np.square(g, dtype=np.float64)
        count += 1
        if progress is not None:
            progress(e - s)
    return {name: np.sqrt(m / max(count, 1)) for name, m in ms.items()}


class RMSStep:
    """The update of the module docstring for one (eta, lambda), with everything that does not
    change from segment to segment computed once; `step` works in place, allocating nothing."""

    def __init__(self, params: dict[str, np.ndarray], rms: dict[str, np.ndarray], lr: float, decay: float) -> None:
        mean_rms = sum(float(r.sum()) for r in rms.values()) / sum(r.size for r in rms.values())
        eps = EPS_SHARE * mean_rms
        self.theta0 = {name: p.copy() for name, p in params.items()}
        # eta / (RMS + eps) and the capped decay rate, in the parameters' dtype; a model whose
        # statistics are all zero takes no step at all
        self.scale = {name: (lr / (r + eps) if mean_rms > 0 else np.zeros_like(r)).astype(p.dtype)
                      for (name, p), r in zip(params.items(), rms.values())}
        self.rate = ({name: np.minimum(decay * r / mean_rms, 1.0).astype(params[name].dtype) for name, r in rms.items()}
                     if decay > 0 and mean_rms > 0 else None)
        self.buf = {name: np.empty_like(p) for name, p in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """theta += rate * (theta0 - theta) - scale * g, in place (grads are overwritten)."""
        for name, p in params.items():
            g = grads[name]
            g *= self.scale[name]
            if self.rate is None:
                p -= g
                continue
            b = self.buf[name]
            np.subtract(self.theta0[name], p, out=b)
            b *= self.rate[name]
            b -= g
            p += b

    def reset(self, params: dict[str, np.ndarray]) -> None:
        """Back to the trained weights, in place."""
        for name, p in params.items():
            np.copyto(p, self.theta0[name])


def dynamic_nats(model: CharRNN, ids: np.ndarray, start: int, stop: int, segment: int, update: RMSStep,
                 h: object = None, progress: Progress | None = None) -> float:
    """Nats of the targets [start, stop) of ids, scored segment by segment from state h, a step of
    `update` on model.params after each segment (module docstring). The model ends adapted."""
    total = 0.0
    for s in range(start, stop, segment):
        stopping.check()
        e = min(s + segment, stop)
        loss, grads, h = model.loss_and_grads(ids[None, s:e], ids[None, s + 1 : e + 1], h)
        total += loss * (e - s)  # scored with the weights before this segment's step
        update.step(model.params, grads)
        if progress is not None:
            progress(e - s)
    return total


def halves(n_chars: int) -> tuple[int, int]:
    """(m, n): the text's n = n_chars - 1 targets split into the tuning half [0, m) and the
    scored half [m, n)."""
    n = n_chars - 1
    return n // 2, n


def check_length(n_chars: int, segment: int) -> None:
    """Each half must hold at least one whole segment, so that tuning takes a step at all."""
    m, n = halves(n_chars)
    if m < segment:
        raise DataError(f"{n_chars:,} characters are too few for dynamic evaluation: it needs at least "
                        f"{2 * segment + 1:,}, a first half to tune on and a second to score, each at least one "
                        f"segment of {segment} characters")


def dynamic_work(n_chars: int, lr: float | None = None, decay: float | None = None, segment: int | None = None) -> int:
    """The characters `evaluate_dynamic` reads, as its progress counts them."""
    m, n = halves(n_chars)
    segments = 1 if segment is not None else len(SEGMENT_GRID)
    grid = segments * (1 if lr is not None else len(LR_GRID)) * (1 if decay is not None else len(DECAY_GRID))
    tuning = segments * m + (grid * m if grid > 1 else 0)  # the statistics, then each setting of the grid
    return tuning + 2 * (n - m)  # the scored half, statically and dynamically


def evaluate_dynamic(model: CharRNN, ids: np.ndarray, lr: float | None = None, decay: float | None = None,
                     segment: int | None = None, progress: Progress | None = None,
                     window: int = EVAL_WINDOW) -> DynamicResult:
    """The dynamic score of the second half of ids (module docstring), the hyper-parameters left
    None chosen on the first half. ids: (N,) token ids. progress(k) is called with the characters
    read after every segment or forward call (`dynamic_work` of them in all). `model` is unchanged."""
    check_length(len(ids), segment if segment is not None else max(SEGMENT_GRID))
    m, n = halves(len(ids))
    work = working_copy(model)
    grid = [(seg, eta, lam) for seg in ((segment,) if segment is not None else SEGMENT_GRID)
            for eta in ((lr,) if lr is not None else LR_GRID)
            for lam in ((decay,) if decay is not None else DECAY_GRID)]
    rms_of: dict[int, dict[str, np.ndarray]] = {}
    best = (float("inf"), grid[0])
    for seg, eta, lam in grid:
        if seg not in rms_of:
            rms_of[seg] = gradient_rms(work, ids, 0, m, seg, progress)
        if len(grid) == 1:  # all fixed: nothing to tune
            break
        update = RMSStep(work.params, rms_of[seg], eta, lam)
        nats = dynamic_nats(work, ids, 0, m, seg, update, None, progress)
        update.reset(work.params)
        if nats < best[0]:
            best = (nats, (seg, eta, lam))
    seg, eta, lam = best[1]
    # the second half: warm-up with the trained weights, then scored statically and dynamically
    first = max(m - WARMUP, 0)
    static_nats, static_chars = _score_streams(model, ids, np.array([first]), np.array([m - first]),
                                               np.array([n - first]), window, progress)
    h = None
    if m > first:
        _, h = work.loss(ids[None, first:m], ids[None, first + 1 : m + 1])
    update = RMSStep(work.params, rms_of[seg], eta, lam)
    nats = dynamic_nats(work, ids, m, n, seg, update, h, progress)
    tuned = tuple(k for k, v in (("lr", lr), ("decay", decay), ("segment", segment)) if v is None)
    return DynamicResult(nats, n - m, EvalResult(static_nats, static_chars), eta, lam, seg, tuned, m)

"""Gradient flow through time, measured exactly on a model and a text, for every cell.

For a text of T steps (inputs ids[0..T-1], targets ids[1..T]) and the per-step loss
L_t = -log p_t[y_t], the quantity of Pascanu, Mikolov and Bengio (2013) is the norm of the
gradient of one step's loss with respect to the hidden state k steps earlier,

    g_l(k) = mean over t of |dL_t / dh^l_{t-k}|         layer l, lag k = 0..K

taken over the same targets t = K..T-1 for every lag, so that the curve's shape is the lag's
alone. dL_t/dh^l_s is the total derivative: every path from h^l_s to L_t, through later steps of
the same layer and through the layers above.

How it is computed. Backpropagation is linear in the gradient fed in, so the gradients of the
losses of different targets can travel side by side as the columns of one batch: column j
carries the gradient of L_{t_j} alone. Going back from the last step, at step s every layer from
the top down runs its cell's own `backward` (core/) over a window of one step, from a forward
of that step whose state is the recorded state before s, copied into every column. Fed the
gradient arriving from above at step s (the head's V^T (p_s - onehot(y_s)) for the column whose
target is s; the layer above's dx below the top) and, as the gradient at its final state, what
was carried back from step s+1, it returns dL/dstate_{s-1} (carried on) and dx (handed to the
layer below). The total gradient at h^l_s is the sum of those two arrivals. With the stack's
options (model/stack.py) what is handed down passes back through layer l's input norm and, with
residual connections, adds the gradient at the layer's output, which reaches its input directly. Only the columns
with s <= t_j <= s + K are live at step s, so the work is T one-step passes of at most K+1
columns per layer: exact (no finite differences, no linearisation) and tested against PyTorch
autograd.

The same one-step backward, fed the rows of the identity as the final state's gradient, gives
the state-to-state Jacobian d state_s / d state_{s-1} of a layer exactly: for the tanh RNN
diag(1 - h_s^2) W, for the GRU dh_s/dh_{s-1}, for the LSTM the Jacobian of the whole carried
state (h, c), whose c-to-c block diag(f) is what lets it remember.

For a cell whose recurrence is the element-wise filter h_t = a_t * h_{t-1} + b_t (minGRU, minLSTM:
the cell's optional `decay`), that Jacobian is diag(a_t) and the gradient against lag is a
product of the a_t: the distribution of a_t over the text (the learned decay) is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import UnknownCell, cell as registered_cell
from ..errors import ConfigError
from ..model.params import HEAD_BIAS, HEAD_WEIGHT, NORM_PREFIX, cell_module, layer_names
from ..model.stack import layer_params

# the gradient norm at this fraction of its lag-0 value marks the end of the effective memory
MEMORY_FRACTION = 0.01
# saturation thresholds: tanh units beyond +-0.99, sigmoid gates below 0.01 or above 0.99
SATURATED_TANH = 0.99
SATURATED_GATE = 0.01
# the Jacobian is measured at this many steps spread over the text (an SVD each)
JACOBIAN_STEPS = 32
# the learned decay's histogram over [0, 1]
DECAY_BINS = 10


@dataclass
class Trajectory:
    """A forward pass of one stream, step by step, with what the diagnostics need at every step.

    states[l][s] is layer l's state tuple before step s (s = 0..T; states[l][T] is the final one),
    each part (1, H); inputs[l][s] the layer's input at step s: (1,) ids or (1, I) floats.
    """

    ids: np.ndarray  # (T+1,) the text: inputs ids[:-1], targets ids[1:]
    states: list[list[tuple[np.ndarray, ...]]]
    inputs: list[list[np.ndarray]]
    logits: np.ndarray  # (T, V)
    # with the stack's options (model/stack.py): layer l's stack input x^l at step s, before its
    # norm (inputs holds the cell's input LN_l(x^l)), and the top x^L (T, H) before the final norm
    stack_inputs: list[list[np.ndarray]] = field(default_factory=list)
    top: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return len(self.ids) - 1


def run_trajectory(model: Any, ids: np.ndarray, state0: Any = None) -> Trajectory:
    """Run `model` over ids[:-1] one step at a time with the cells' `step`, keeping every state.

    ids: (T+1,) token ids, T >= 1; state0: as `model.initial_state(1)` gives it, or None.
    """
    ids = np.asarray(ids).reshape(-1).astype(np.intp)
    if ids.size < 2:
        raise ConfigError("the text must hold at least 2 characters")
    model.check_tokens(ids[None], "text")
    cell, p, L, options = model.cell_module, model.params, model.num_layers, model.stack
    state = model.check_state(state0, 1)
    T = ids.size - 1
    states = [[tuple(part[l].copy() for part in state)] for l in range(L)]
    inputs: list[list[np.ndarray]] = [[] for _ in range(L)]
    stack_inputs: list[list[np.ndarray]] = [[] for _ in range(L)]
    top = np.empty((T, model.hidden_size), dtype=model.dtype)
    for s in range(T):
        x: np.ndarray = ids[s : s + 1]
        for l in range(L):
            u, _ = options.norm_in(p, l, x)
            inputs[l].append(u)
            stack_inputs[l].append(x)
            new = cell.step(u, layer_params(cell, p, l), states[l][-1])
            new = tuple(np.array(part, dtype=model.dtype) for part in new)  # own (1, H) copies
            states[l].append(new)
            x = options.join(l, x, new[0])
        top[s] = x[0]
    logits = options.norm_top(p, top)[0] @ p[HEAD_WEIGHT].T + p[HEAD_BIAS]
    return Trajectory(ids, states, inputs, logits, stack_inputs, top)


def _head_gradients(model: Any, traj: Trajectory) -> np.ndarray:
    """dL_t/dh^top_t = V^T (p_t - onehot(y_t)) for every step t: (T, H)."""
    z = traj.logits - traj.logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(traj.steps), traj.ids[1:]] -= 1.0
    dtop = p @ model.params[HEAD_WEIGHT]
    _, cache = model.stack.norm_top(model.params, traj.top)
    return model.stack.norm_top_backward(model.params, _norm_scratch(model), dtop, cache)


def _norm_scratch(model: Any) -> dict[str, np.ndarray]:
    """Gradient arrays of the stack's norms for their backward to add into; not used."""
    return {n: np.zeros_like(a) for n, a in model.params.items() if n.startswith(NORM_PREFIX)}


def _one_step(model: Any, l: int, s: int, traj: Trajectory, n: int):
    """The cell's forward over step s of layer l, from the recorded state, in n identical columns:
    (cache, parameters) for the cell's backward."""
    x = traj.inputs[l][s]
    xb = np.repeat(x[None], n, axis=1)  # (1, n) ids or (1, n, I)
    state = tuple(np.repeat(part, n, axis=0) for part in traj.states[l][s])
    params = layer_params(model.cell_module, model.params, l)
    _, _, cache = model.cell_module.forward(xb, params, state, need_cache=True)
    return cache, params


class _Scratch:
    """Weight-gradient arrays the cells' backward adds into; their values are not used."""

    def __init__(self, params: tuple[np.ndarray, ...]) -> None:
        self.grads = tuple(np.zeros_like(a) for a in params)


def state_gradients(model: Any, traj: Trajectory, max_lag: int, keep: bool = False) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """|dL_t/dh^l_{t-k}| for targets t = K..T-1 and lags k = 0..K, for every layer l.

    Returns (norms, vectors): norms[l] (T-K, K+1); with `keep`, vectors[l] (T-K, K+1, H) the
    gradients themselves (for tests), else None.
    """
    T, K = traj.steps, max_lag
    if K < 0 or K >= T:
        raise ConfigError(f"a lag of {K} needs a text of at least {K + 2} characters; this one has {T + 1}")
    L, H = model.num_layers, model.hidden_size
    cell = model.cell_module
    parts = len(cell.STATE)
    heads = _head_gradients(model, traj)  # (T, H)
    n_targets = T - K
    norms = [np.zeros((n_targets, K + 1)) for _ in range(L)]
    vectors = [np.zeros((n_targets, K + 1, H)) for _ in range(L)] if keep else None
    # carried[l][p]: dL_{t_j}/d(part p of layer l's state after step s), one row per target
    carried = [[np.zeros((n_targets, H), dtype=model.dtype) for _ in range(parts)] for _ in range(L)]
    scratch = [_Scratch(layer_params(cell, model.params, l)) for l in range(L)]
    norm_grads = _norm_scratch(model)
    for s in range(T - 1, -1, -1):
        # live targets t in [max(s, K), min(T-1, s+K)], as rows j = t - K
        lo, hi = max(s, K) - K, min(T - 1, s + K) - K + 1
        n = hi - lo
        if n <= 0:
            continue
        from_above = np.zeros((n, H), dtype=model.dtype)
        if s >= K:
            from_above[s - K - lo] = heads[s]  # the target t = s enters here, at lag 0
        lags = np.arange(lo, hi) + K - s
        for l in range(L - 1, -1, -1):
            total = from_above + carried[l][0][lo:hi]  # dL_t/dh^l_s along every path
            norms[l][np.arange(lo, hi), lags] = np.linalg.norm(total, axis=1)
            if vectors is not None:
                vectors[l][np.arange(lo, hi), lags] = total
            cache, params = _one_step(model, l, s, traj, n)
            dstate_n = tuple(c[lo:hi] for c in carried[l])
            dx, dstate0 = cell.backward(from_above[None].copy(), cache, params, scratch[l].grads,
                                        dstate_n=dstate_n, need_dx=l > 0)
            for c, d in zip(carried[l], dstate0):
                c[lo:hi] = d
            if l > 0:  # dL/dx^l_s: through the cell (and its input's norm), and the residual's path
                _, norm = model.stack.norm_in(model.params, l, traj.stack_inputs[l][s])
                below = model.stack.norm_in_backward(model.params, norm_grads, l, np.asarray(dx[0], dtype=model.dtype),
                                                     norm)
                from_above = below + from_above if model.stack.residual else below
    return norms, vectors


def state_jacobian(model: Any, traj: Trajectory, l: int, s: int) -> np.ndarray:
    """d state^l_{s+1} / d state^l_s, exactly, from the cell's backward fed the identity: (P*H, P*H)
    with P the parts of the state (h, or h and c), the input held fixed."""
    H = model.hidden_size
    parts = len(model.cell_module.STATE)
    n = parts * H
    cache, params = _one_step(model, l, s, traj, n)
    eye = np.eye(n, dtype=model.dtype)
    dstate_n = tuple(np.ascontiguousarray(eye[:, p * H : (p + 1) * H]) for p in range(parts))
    _, dstate0 = model.cell_module.backward(np.zeros((1, n, H), dtype=model.dtype), cache, params,
                                            _Scratch(params).grads, dstate_n=dstate_n, need_dx=False)
    return np.concatenate(dstate0, axis=1)  # row i: d state_{s+1}[i] / d state_s


def gate_activations(model: Any, traj: Trajectory, l: int) -> np.ndarray:
    """Layer l's gate blocks after their nonlinearities at every step: (T, G, H).

    For the LSTM i, f, g, o; for the GRU r, z, n; for the tanh RNN h itself. Recomputed from the
    recorded states by the cell's own `gate_activations` (core/); tests hold them to the cells'
    own states."""
    return model.cell_module.gate_activations(*_steps_and_params(model, traj, l))


def _steps_and_params(model: Any, traj: Trajectory, l: int) -> tuple[np.ndarray, tuple, tuple]:
    """(x, params, state) of layer l's T steps as the cells' per-step functions take them: the
    inputs (T,) ids or (T, I), the layer's parameters, the recorded states before each step."""
    T = traj.steps
    x = np.concatenate(traj.inputs[l][:T])
    state = tuple(np.concatenate([traj.states[l][s][p] for s in range(T)]) for p in range(len(traj.states[l][0])))
    return x, layer_params(model.cell_module, model.params, l), state


def learned_decay(model: Any, traj: Trajectory, l: int) -> np.ndarray | None:
    """Layer l's decay a_t at every step, (T, H), for a cell whose recurrence is the element-wise
    filter h_t = a_t * h_{t-1} + b_t (its optional `decay`, core/); None for any other cell."""
    decay = getattr(model.cell_module, "decay", None)
    if decay is None:
        return None
    return decay(*_steps_and_params(model, traj, l))


def decay_summary(a: np.ndarray) -> dict[str, Any]:
    """The distribution of a (T, H) decay over a text: quantiles over every (step, unit), a
    histogram over [0, 1] in DECAY_BINS bins, and each unit's half-life, the steps after which
    its state keeps half its size (log 0.5 over the unit's mean log a_t; None where a_t = 1)."""
    with np.errstate(divide="ignore"):
        mean_log = np.log(a).mean(axis=0)  # (H,), -inf where some a_t is 0: forgets at once
    half = [None if m >= 0 else float(np.log(0.5) / m) for m in mean_log]
    finite = np.array([h for h in half if h is not None])
    counts, _ = np.histogram(a, bins=DECAY_BINS, range=(0.0, 1.0))
    return {"mean": float(a.mean()), "p10": float(np.quantile(a, 0.1)), "p50": float(np.median(a)),
            "p90": float(np.quantile(a, 0.9)), "histogram": [int(c) for c in counts],
            "half_life_by_unit": half,
            "half_life_median": float(np.median(finite)) if finite.size else None,
            "half_life_max": float(finite.max()) if finite.size else None}


def gate_names(cell: Any) -> tuple[str, ...] | None:
    """The gate blocks of the cell called `cell` (what a run's config.json names), or None for a
    cell this process does not know: curves are then drawn without names."""
    try:
        return registered_cell(cell).GATE_NAMES
    except UnknownCell:
        return None


def recurrent_weights(params: dict[str, np.ndarray], cell: str, l: int) -> list[np.ndarray]:
    """Layer l's weights applied to h_{t-1} (the cell's "recurrent" parameters), in float64."""
    module = cell_module(cell)
    return [np.asarray(params[n], dtype=np.float64)
            for n, p in zip(layer_names(cell, l), module.PARAMS) if p.role == "recurrent"]


def weight_spectrum(model: Any, l: int) -> tuple[list[float], list[list[float]]]:
    """Spectral radius and (largest, smallest) singular value of each gate block of the
    recurrent weights of layer l (W_hh)."""
    H = model.hidden_size
    radii, singular = [], []
    for w_hh in recurrent_weights(model.params, model.cell, l):
        for g in range(w_hh.shape[0] // H):
            block = w_hh[g * H : (g + 1) * H]
            radii.append(float(np.max(np.abs(np.linalg.eigvals(block)))))
            sv = np.linalg.svd(block, compute_uv=False)
            singular.append([float(sv[0]), float(sv[-1])])
    return radii, singular


def spectral_radii(params: dict[str, np.ndarray], num_layers: int, hidden_size: int, cell: str) -> list[list[float]]:
    """The spectral radius of every gate block of every layer's W_hh (what training records)."""
    out = []
    for l in range(num_layers):
        out.append([float(np.max(np.abs(np.linalg.eigvals(w[g : g + hidden_size]))))
                    for w in recurrent_weights(params, cell, l) for g in range(0, w.shape[0], hidden_size)])
    return out


@dataclass
class LayerReport:
    grad_norm_by_lag: list[float]
    spectral_radius: float | list[float]  # a number for the tanh RNN, one per gate block otherwise
    singular_values: list[float] | list[list[float]]  # [largest, smallest], per gate block for gated cells
    jacobian_norm: dict[str, float]  # spectral norm of d state_t / d state_{t-1}: mean, median, max
    saturation: dict[str, float]  # fraction of saturated units (tanh) or gates, overall and per gate
    decay_per_step: float | None  # (g(K) / g(0))^(1/K)
    effective_memory: int | None  # the first lag with g(k) < 1% of g(0); None: not within K
    verdict: str  # "vanishing", "exploding" or "healthy"
    decay: dict[str, Any] | None = None  # the learned decay a_t (decay_summary), for cells that declare one


@dataclass
class Diagnosis:
    cell: str
    num_layers: int
    hidden_size: int
    max_lag: int
    text_chars: int
    targets: int
    layers: list[LayerReport] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell, "num_layers": self.num_layers, "hidden_size": self.hidden_size,
            "max_lag": self.max_lag, "text_chars": self.text_chars, "targets": self.targets,
            "grad_norm_by_lag": [r.grad_norm_by_lag for r in self.layers],
            "spectral_radius": [r.spectral_radius for r in self.layers],
            "singular_values": [r.singular_values for r in self.layers],
            "jacobian_norm": [r.jacobian_norm for r in self.layers],
            "saturation": [r.saturation for r in self.layers],
            "decay_per_step": [r.decay_per_step for r in self.layers],
            "effective_memory": [r.effective_memory for r in self.layers],
            "verdict": [r.verdict for r in self.layers],
            "decay": [r.decay for r in self.layers],
            "reading": self.reading(),
        }

    def reading(self) -> list[str]:
        """The numbers in plain words, one line per layer."""
        lines = []
        for l, r in enumerate(self.layers):
            g = r.grad_norm_by_lag
            where = f"layer {l}: " if self.num_layers > 1 else ""
            rate = f"the gradient is multiplied by {r.decay_per_step:.3f} per step of lag on average" \
                if r.decay_per_step is not None else "the gradient is zero"
            if r.verdict == "exploding":
                tail = f"it grows to {g[-1] / g[0]:.3g}x its lag-0 size at lag {self.max_lag}: exploding gradients"
            elif r.effective_memory is not None:
                tail = (f"it falls below 1% of its lag-0 size after {r.effective_memory} steps "
                        f"(effective memory {r.effective_memory} characters): vanishing beyond that")
            else:
                tail = (f"it is still {g[-1] / g[0]:.2%} of its lag-0 size at lag {self.max_lag} "
                        f"(effective memory beyond {self.max_lag} characters): healthy")
            jac = r.jacobian_norm
            parts = cell_module(self.cell).STATE
            state = f"d({','.join(parts)})_t/d({','.join(parts)})_{{t-1}}" if len(parts) > 1 else "dh_t/dh_{t-1}"
            sat = r.saturation["all"]
            what = "gate values below 0.01 or above 0.99" if _has_sigmoid_gates(self.cell) else "units beyond +-0.99"
            line = (f"{where}{rate}; {tail}. |{state}| is {jac['median']:.3f} (median; max {jac['max']:.3f}); "
                    f"{sat:.1%} of {what}.")
            if r.decay is not None:
                d = r.decay
                life = (f"a half-life of {d['half_life_median']:.3g} characters for the median unit "
                        f"(longest {d['half_life_max']:.3g})" if d["half_life_median"] is not None else "no forgetting")
                line += (f" Each step keeps a fraction {d['p50']:.3f} of a unit's state (median over steps and "
                         f"units; 10%-90%: {d['p10']:.3f}-{d['p90']:.3f}): {life}.")
            lines.append(line)
        return lines


def _has_sigmoid_gates(cell: str) -> bool:
    """Saturation means gates near 0 or 1 for a cell with sigmoid gates, tanh units near +-1 else."""
    return bool(cell_module(cell).SIGMOID_GATES)


def _reading_numbers(g: np.ndarray, K: int) -> tuple[float | None, int | None, str]:
    if g[0] <= 0 or not np.all(np.isfinite(g)):
        return None, None, "vanishing" if g[0] <= 0 else "exploding"
    decay = float((g[K] / g[0]) ** (1.0 / K)) if K else 1.0
    below = np.flatnonzero(g < MEMORY_FRACTION * g[0])
    memory = int(below[0]) if below.size else None
    if g[K] > g[0]:
        verdict = "exploding"
    elif memory is not None:
        verdict = "vanishing"
    else:
        verdict = "healthy"
    return decay, memory, verdict


def diagnose(model: Any, ids: np.ndarray, max_lag: int, state0: Any = None,
             jacobian_steps: int = JACOBIAN_STEPS) -> Diagnosis:
    """Every number of `charrnn diagnose` for `model` on the text ids (T+1,), from state0."""
    traj = run_trajectory(model, ids, state0)
    norms, _ = state_gradients(model, traj, max_lag)
    T, K = traj.steps, max_lag
    diag = Diagnosis(model.cell, model.num_layers, model.hidden_size, K, T + 1, T - K)
    at = np.unique(np.linspace(0, T - 1, num=min(jacobian_steps, T)).round().astype(int))
    cell = model.cell_module
    # one gate block (the tanh RNN's h) is reported as single numbers, several per block
    single = cell.GATES == 1
    for l in range(model.num_layers):
        g = norms[l].mean(axis=0)
        decay, memory, verdict = _reading_numbers(g, K)
        radii, singular = weight_spectrum(model, l)
        jn = np.array([np.linalg.norm(state_jacobian(model, traj, l, int(s)), 2) for s in at])
        acts = gate_activations(model, traj, l)  # (T, G, H)
        if not cell.SIGMOID_GATES:
            sat = {"all": float(np.mean(np.abs(acts) > SATURATED_TANH))}
        else:
            per = {}
            for gname in cell.SIGMOID_GATES:
                a = acts[:, cell.GATE_NAMES.index(gname)]
                per[gname] = float(np.mean((a < SATURATED_GATE) | (a > 1 - SATURATED_GATE)))
            sat = {"all": float(np.mean(list(per.values())))} | per
        a = learned_decay(model, traj, l)
        diag.layers.append(LayerReport(
            grad_norm_by_lag=[float(v) for v in g],
            spectral_radius=radii[0] if single and radii else radii,
            singular_values=singular[0] if single and singular else singular,
            jacobian_norm={"mean": float(jn.mean()), "median": float(np.median(jn)), "max": float(jn.max())},
            saturation=sat, decay_per_step=decay, effective_memory=memory, verdict=verdict,
            decay=None if a is None else decay_summary(a),
        ))
    return diag

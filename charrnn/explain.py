"""The BasicRNNCell question ("how is the weight updated in a BasicRNNCell for character-level
data?"), answered on a real model: how one training step updates a tanh RNN cell
(Keras's SimpleRNNCell, PyTorch's nn.RNNCell, TensorFlow's old BasicRNNCell) on characters.

One window of a short text, one-hot characters x_t, B = 1, float64:

    a_t = W h_{t-1} + U x_t + b        h_t = tanh(a_t)        o_t = V h_t + c
    loss = mean over t of -ln softmax(o_t)[y_t]

BPTT (the engine's, charrnn/core/rnn.py), from the last step back, with dy_t = (p_t - onehot(y_t)) / T:

    dV += dy_t h_t^T     dc += dy_t     dh_t = V^T dy_t + W^T da_{t+1}     da_t = dh_t * (1 - h_t^2)
    dU += da_t x_t^T     dW += da_t h_{t-1}^T     db += da_t

`dU += da_t x_t^T` with a one-hot x_t adds da_t to column x_t of dU and nothing elsewhere: only the
columns of characters that occur as inputs get a gradient. The question's NumPy backward takes
h_{t-1} where h_t belongs (in dV and in tanh's derivative) and drops the W^T da_{t+1} term, the
chain through time; `reference_backward` writes both versions plainly, and the gradient check
(finite differences) tells them apart.

The same step is run, when installed, by PyTorch (nn.RNNCell + nn.Linear, torch.optim.SGD / Adam)
and Keras 3 (keras.layers.SimpleRNNCell + Dense, keras.optimizers.SGD / Adam) from the same
weights, and their numbers are set beside the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data.text import Vocab
from .errors import ConfigError, DataError
from .gradcheck import TOLERANCE, compare, numeric_gradient
from .model import CharRNN
from .model.params import HEAD_BIAS, HEAD_WEIGHT, layer_names
from .optim import make_optimizer

CELL = "rnn"  # the question's cell, the one this module explains
U, W, B_IH, B_HH = layer_names(CELL, 0)
# the seeds' letters for the parameter names (README's table)
LETTERS = {U: "U (W_xh)", W: "W (W_hh)", B_IH: "b_ih", B_HH: "b_hh", HEAD_WEIGHT: "V (W_hy)", HEAD_BIAS: "c (b_y)"}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
MAX_TEXT = 200  # characters: every matrix is printed, so the text stays small


@dataclass
class Explanation:
    text: str
    vocab: Vocab
    inputs: np.ndarray  # (T,) ids
    targets: np.ndarray  # (T,) ids
    model: CharRNN  # float64, the weights before the step
    lr: float
    loss: float
    hs: np.ndarray  # (T, H) h_t
    probs: np.ndarray  # (T,) p_t[y_t]
    grads: dict[str, np.ndarray]
    sgd: dict[str, np.ndarray]  # the update SGD makes: new - old
    adam: dict[str, np.ndarray]  # the update Adam makes on its first step
    frameworks: dict[str, dict[str, Any]] = field(default_factory=dict)  # "PyTorch" / "Keras" -> numbers
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> why not run
    checks: dict[str, dict[str, float]] = field(default_factory=dict)  # backward -> array -> max rel error

    @property
    def input_columns(self) -> np.ndarray:
        """Ids of the characters that occur as inputs: the only non-zero columns of dU."""
        return np.unique(self.inputs)


def reference_backward(model: CharRNN, inputs: np.ndarray, targets: np.ndarray,
                       h_for_h: str = "h_t", chain: bool = True) -> dict[str, np.ndarray]:
    """BPTT written one equation per line, one step at a time, for a one-layer tanh RNN and B = 1.

    h_for_h="h_t", chain=True is the correct backward. h_for_h="h_prev" uses h_{t-1} where h_t
    belongs (in dV and in tanh's derivative 1 - h^2) and chain=False drops W^T da_{t+1}: together
    they are the BasicRNNCell question's NumPy backward.
    """
    p = model.params
    Ux, Wx, b = p[U], p[W], p[B_IH] + p[B_HH]
    Vx, c = p[HEAD_WEIGHT], p[HEAD_BIAS]
    T, H = len(inputs), model.hidden_size
    hs = np.zeros((T + 1, H))  # hs[t + 1] = h_t, hs[0] = h_{-1} = 0
    probs = np.zeros((T, model.vocab_size))
    for t in range(T):
        hs[t + 1] = np.tanh(Wx @ hs[t] + Ux[:, inputs[t]] + b)
        o = Vx @ hs[t + 1] + c
        e = np.exp(o - o.max())
        probs[t] = e / e.sum()
    g = {name: np.zeros_like(a) for name, a in p.items()}
    dh_next = np.zeros(H)
    for t in reversed(range(T)):
        dy = probs[t].copy()
        dy[targets[t]] -= 1.0
        dy /= T
        h = hs[t + 1] if h_for_h == "h_t" else hs[t]
        g[HEAD_WEIGHT] += np.outer(dy, h)
        g[HEAD_BIAS] += dy
        dh = Vx.T @ dy + dh_next
        da = dh * (1.0 - h * h)
        g[U][:, inputs[t]] += da  # da_t x_t^T: x_t is one-hot
        g[W] += np.outer(da, hs[t])
        g[B_IH] += da
        g[B_HH] += da
        dh_next = Wx.T @ da if chain else np.zeros(H)
    return g


def gradient_check(model: CharRNN, inputs: np.ndarray, targets: np.ndarray,
                   grads: dict[str, np.ndarray]) -> dict[str, float]:
    """Max relative error of each array of `grads` against finite differences of the loss."""
    x, y = inputs[None], targets[None]

    def loss_now() -> float:
        return model.loss(x, y)[0]

    out = {}
    for name, a in model.params.items():
        numeric = numeric_gradient(loss_now, a, np.arange(a.size))
        out[name] = compare(grads[name].reshape(-1), numeric)[0]
    return out


def _updates(model: CharRNN, grads: dict[str, np.ndarray], name: str, lr: float, **options: Any) -> dict[str, np.ndarray]:
    """What one step of the engine's optimizer `name` changes, on a copy of the weights."""
    params = {k: v.copy() for k, v in model.params.items()}
    make_optimizer(name, params, lr, **options).step({k: g.copy() for k, g in grads.items()})
    return {k: params[k] - model.params[k] for k in params}


def explain_update(text: str = "hello", hidden_size: int = 4, lr: float = 0.1, seed: int = 0,
                   frameworks: bool = True) -> Explanation:
    """One training step of a tanh RNN on `text` (inputs text[:-1], targets text[1:]), explained."""
    if not isinstance(text, str) or len(text) < 2:
        raise DataError("the text needs at least 2 characters: one to read and one to predict")
    if len(text) > MAX_TEXT:
        raise DataError(f"the text has {len(text)} characters; explain-update prints every number, give at most {MAX_TEXT}")
    if not (lr > 0 and np.isfinite(lr)):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    vocab = Vocab(sorted(set(text)))
    if vocab.size < 2:
        raise DataError("the text needs at least 2 distinct characters")
    ids = vocab.encode(text).astype(np.intp)
    inputs, targets = ids[:-1], ids[1:]
    model = CharRNN(vocab.size, hidden_size, 1, dtype="float64", seed=seed, init="pytorch", cell=CELL)
    loss, grads, _ = model.loss_and_grads(inputs[None], targets[None])
    logits, _ = model.logits(inputs[None])
    z = logits[0] - logits[0].max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    hs = np.zeros((len(inputs), hidden_size))
    h = None
    for t, i in enumerate(inputs):
        _, h = model.step(np.array([i]), h)
        hs[t] = h[0, 0]
    ex = Explanation(
        text, vocab, inputs, targets, model, lr, float(loss), hs, probs[np.arange(len(targets)), targets], grads,
        sgd=_updates(model, grads, "sgd", lr),
        adam=_updates(model, grads, "adam", lr, betas=ADAM_BETAS, eps=ADAM_EPS),
    )
    if frameworks:
        for name, side in (("PyTorch", torch_side), ("Keras", keras_side)):
            try:
                ex.frameworks[name] = side(model, inputs, targets, lr)
            except _Unavailable as e:
                ex.skipped[name] = str(e)
    ex.checks["charrnn (BPTT)"] = gradient_check(model, inputs, targets, grads)
    ex.checks["the BasicRNNCell question's (h_{t-1}, no chain)"] = gradient_check(
        model, inputs, targets, reference_backward(model, inputs, targets, "h_prev", chain=False))
    ex.checks["no chain through time only"] = gradient_check(
        model, inputs, targets, reference_backward(model, inputs, targets, "h_t", chain=False))
    ex.checks["h_{t-1} for h_t only"] = gradient_check(
        model, inputs, targets, reference_backward(model, inputs, targets, "h_prev", chain=True))
    return ex


class _Unavailable(Exception):
    """A framework that is not installed (or cannot run here): its column is left out."""


def torch_side(model: CharRNN, inputs: np.ndarray, targets: np.ndarray, lr: float) -> dict[str, Any]:
    """The same step in PyTorch: nn.RNNCell and nn.Linear, a loop over the one-hot characters,
    cross_entropy, backward, then torch.optim.SGD and Adam. Numbers under charrnn's names."""
    try:
        import torch
    except ImportError:
        raise _Unavailable("PyTorch is not installed") from None
    V, H = model.vocab_size, model.hidden_size
    p = model.params

    def build() -> tuple[Any, Any]:
        cell = torch.nn.RNNCell(V, H, nonlinearity="tanh", dtype=torch.float64)
        head = torch.nn.Linear(H, V, dtype=torch.float64)
        with torch.no_grad():
            for mod, names in ((cell, {"weight_ih": U, "weight_hh": W, "bias_ih": B_IH, "bias_hh": B_HH}),
                               (head, {"weight": HEAD_WEIGHT, "bias": HEAD_BIAS})):
                for attr, name in names.items():
                    getattr(mod, attr).copy_(torch.from_numpy(p[name]))
        return cell, head

    def loss_of(cell: Any, head: Any) -> Any:
        x = torch.nn.functional.one_hot(torch.from_numpy(inputs), V).to(torch.float64)
        h = torch.zeros(1, H, dtype=torch.float64)
        outs = []
        for t in range(len(inputs)):
            h = cell(x[t : t + 1], h)
            outs.append(head(h))
        return torch.nn.functional.cross_entropy(torch.cat(outs), torch.from_numpy(targets))

    def named(cell: Any, head: Any) -> dict[str, Any]:
        return {U: cell.weight_ih, W: cell.weight_hh, B_IH: cell.bias_ih, B_HH: cell.bias_hh,
                HEAD_WEIGHT: head.weight, HEAD_BIAS: head.bias}

    out: dict[str, Any] = {"modules": "nn.RNNCell + nn.Linear"}
    for opt_name, make in (("sgd", lambda ps: torch.optim.SGD(ps, lr=lr)),
                           ("adam", lambda ps: torch.optim.Adam(ps, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS))):
        cell, head = build()
        params = named(cell, head)
        loss = loss_of(cell, head)
        loss.backward()
        out["loss"] = loss.item()
        out["grads"] = {k: v.grad.detach().numpy().copy() for k, v in params.items()}
        make(list(params.values())).step()
        out[opt_name] = {k: v.detach().numpy() - p[k] for k, v in params.items()}
    return out


def keras_side(model: CharRNN, inputs: np.ndarray, targets: np.ndarray, lr: float) -> dict[str, Any]:
    """The same step in Keras 3: keras.layers.SimpleRNNCell in keras.layers.RNN and a Dense head,
    sparse categorical cross-entropy on the logits, keras.optimizers.SGD and Adam. Keras has one
    bias b = b_ih + b_hh: its gradient is the engine's db, and its update is shown as b's.
    The gradient is taken by the torch backend's autograd (the other backends are not wired)."""
    try:
        from .interop.keras import import_keras

        keras = import_keras()
    except Exception as e:  # not installed, or no backend starts: the column is left out, not the command
        raise _Unavailable(f"Keras is not available ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if keras.config.backend() != "torch":
        raise _Unavailable(f"the Keras column needs the torch backend (this one is {keras.config.backend()})")
    V, H = model.vocab_size, model.hidden_size
    p = model.params
    x = np.eye(V)[inputs][None]  # (1, T, V) one-hot, as the question feeds Keras
    y = targets[None]

    def build() -> tuple[Any, dict[str, Any]]:
        cell = keras.layers.SimpleRNNCell(H, dtype="float64")
        rnn = keras.layers.RNN(cell, return_sequences=True, dtype="float64")
        head = keras.layers.Dense(V, dtype="float64")
        km = keras.Sequential([keras.Input((None, V), dtype="float64"), rnn, head])
        rnn.set_weights([p[U].T, p[W].T, p[B_IH] + p[B_HH]])
        head.set_weights([p[HEAD_WEIGHT].T, p[HEAD_BIAS]])
        return km, {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel, "bias": cell.bias,
                    "dense_kernel": head.kernel, "dense_bias": head.bias}

    def as_ours(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {U: values["kernel"].T, W: values["recurrent_kernel"].T, "b": values["bias"],
                HEAD_WEIGHT: values["dense_kernel"].T, HEAD_BIAS: values["dense_bias"]}

    out: dict[str, Any] = {"modules": "SimpleRNNCell + Dense"}
    # Keras 3 computes its matrix products in float32 even for float64 weights (its dtype rules
    # follow JAX's 32-bit default), so its numbers agree with the others to about 1e-8
    # Keras adds epsilon before the bias correction (sqrt(v) + eps, then scaled): on the first step
    # eps * sqrt(1 - beta2) there is PyTorch's and the engine's eps
    for opt_name, make in (("sgd", lambda: keras.optimizers.SGD(learning_rate=lr)),
                           ("adam", lambda: keras.optimizers.Adam(learning_rate=lr, beta_1=ADAM_BETAS[0],
                                                                  beta_2=ADAM_BETAS[1],
                                                                  epsilon=ADAM_EPS * np.sqrt(1 - ADAM_BETAS[1])))):
        km, variables = build()
        before = {k: keras.ops.convert_to_numpy(v.value).copy() for k, v in variables.items()}
        logits = km(x)
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        loss.backward()
        grads = {k: v.value.grad.detach().clone() for k, v in variables.items()}
        out["loss"] = float(keras.ops.convert_to_numpy(loss))
        out["grads"] = as_ours({k: g.numpy() for k, g in grads.items()})
        make().apply([grads[k] for k in variables], list(variables.values()))
        after = {k: keras.ops.convert_to_numpy(v.value) for k, v in variables.items()}
        out[opt_name] = as_ours({k: after[k] - before[k] for k in variables})
    return out


# ------------------------------------------------------------------------------------------------
# the lesson, as text


def _matrix(a: np.ndarray, rows: list[str] | None = None, cols: list[str] | None = None, indent: str = "    ") -> str:
    a = np.atleast_2d(a)
    lines = []
    if cols is not None:
        lines.append(indent + " " * 6 + "".join(f"{c:>11}" for c in cols))
    for i, row in enumerate(a):
        label = f"{rows[i]:>5} " if rows is not None else " " * 6
        lines.append(indent + label + "".join(f"{v:>11.6f}" if v != 0 else f"{'0':>11}" for v in row))
    return "\n".join(lines)


def _show_array(name: str, a: np.ndarray, symbols: list[str], H: int) -> str:
    """One parameter-shaped array with its axes labelled: characters for U's columns and V's rows."""
    hidden = [f"h{i}" for i in range(H)]
    if name == U:
        return _matrix(a, hidden, symbols)
    if name == W:
        return _matrix(a, hidden, hidden)
    if name == HEAD_WEIGHT:
        return _matrix(a, symbols, hidden)
    if name == HEAD_BIAS:
        return _matrix(a[None], None, symbols)
    return _matrix(a[None], None, hidden)


def render(ex: Explanation) -> str:
    """The explanation as a page of text."""
    symbols = [repr(s) for s in ex.vocab.symbols]
    sym = ex.vocab.symbols
    H = ex.model.hidden_size
    T = len(ex.inputs)
    out = []
    say = out.append
    say(f"One training step of a tanh RNN on {ex.text!r}: the BasicRNNCell question (\"how is the weight updated in a "
        "BasicRNNCell for character-level data?\"), answered on a real model.")
    say("")
    say(f"Vocabulary: {ex.vocab.size} characters {', '.join(symbols)}; each is a one-hot vector x_t of size "
        f"{ex.vocab.size}. H = {H} hidden units, float64, weights as nn.RNN initialises them (seed {ex.model.seed}).")
    say("  a_t = W h_{t-1} + U x_t + b     h_t = tanh(a_t)     o_t = V h_t + c     p_t = softmax(o_t)")
    say("  loss = mean over t of -ln p_t[y_t]      (b = b_ih + b_hh: PyTorch's layout keeps two biases)")
    say("")
    say(f"Inputs {ex.vocab.decode(ex.inputs)!r} -> targets {ex.vocab.decode(ex.targets)!r} (T = {T}), h_{{-1}} = 0:")
    for t in range(T):
        say(f"  t={t}  x={sym[ex.inputs[t]]!r:<6} h_t = [{' '.join(f'{v:+.4f}' for v in ex.hs[t])}]   "
            f"p(y={sym[ex.targets[t]]!r}) = {ex.probs[t]:.4f}")
    say(f"  loss = {ex.loss:.6f} nats")
    say("")
    say("Backpropagation through time, from the last step back (dy_t = (p_t - onehot(y_t)) / T):")
    say("  dV += dy_t h_t^T    dc += dy_t    dh_t = V^T dy_t + W^T da_{t+1}    da_t = dh_t * (1 - h_t^2)")
    say("  dU += da_t x_t^T    dW += da_t h_{t-1}^T    db_ih = db_hh = db += da_t")
    say("")
    for name, g in ex.grads.items():
        say(f"dL/d{LETTERS[name]}  ({name}, shape {g.shape}):")
        say(_show_array(name, g, symbols, H))
    say("")
    occur = [symbols[i] for i in ex.input_columns]
    absent = [symbols[i] for i in range(ex.vocab.size) if i not in set(ex.input_columns.tolist())]
    nonzero = [symbols[j] for j in range(ex.vocab.size) if np.any(ex.grads[U][:, j] != 0)]
    say("The one-hot effect: U x_t is column x_t of U, so dU = sum_t da_t x_t^T adds da_t to that column only.")
    say(f"  characters read as inputs: {', '.join(occur)};  non-zero columns of dU: {', '.join(nonzero)}")
    if absent:
        say(f"  never an input: {', '.join(absent)}: their columns of dU are exactly 0, and an SGD step leaves them as they are")
    say("")
    say(f"The updates (learning rate {ex.lr:g}):")
    say("  SGD:  theta <- theta - lr * g")
    say("  change of U:")
    say(_show_array(U, ex.sgd[U], symbols, H))
    b1, b2 = ADAM_BETAS
    say(f"  Adam, first step: m = {1 - b1:g} g, v = {1 - b2:g} g^2, bias-corrected m^ = g, v^ = g^2, so")
    say(f"        theta <- theta - lr * g / (|g| + eps): every weight with a gradient moves by about lr = {ex.lr:g}")
    say("  change of U:")
    say(_show_array(U, ex.adam[U], symbols, H))
    say("  (every other array changes the same way: SGD by -lr * its gradient, Adam by about -lr * its sign;")
    say("   b_ih and b_hh both move, so the sum b moves twice as far as Keras's single bias does)")
    say("")
    if ex.frameworks or ex.skipped:
        say("The same step elsewhere, from the same weights. The gradient of V (W_hy), row by row:")
        columns = {"charrnn": ex.grads[HEAD_WEIGHT]} | {n: f["grads"][HEAD_WEIGHT] for n, f in ex.frameworks.items()}
        say(f"  {'':<6}" + " |".join(f"{name:>{12 * H}}" for name in columns))
        for i, s in enumerate(symbols):
            say(f"  {s:>5} " + " |".join("".join(f"{v:>12.8f}" for v in g[i]) for g in columns.values()))
        say("and the largest absolute difference from charrnn's numbers, array by array:")
        header = f"  {'':<24}" + "".join(f"{name + ' (' + ex.frameworks[name]['modules'] + ')':>40}" for name in ex.frameworks)
        say(header)
        say(f"  {'loss':<24}" + "".join(f"{abs(f['loss'] - ex.loss):>40.2e}" for f in ex.frameworks.values()))
        for what, ours in (("gradient", ex.grads), ("SGD update", ex.sgd), ("Adam update", ex.adam)):
            key = {"gradient": "grads", "SGD update": "sgd", "Adam update": "adam"}[what]
            for name in ours:
                row = f"  {what + ' ' + LETTERS[name].split()[0]:<24}"
                for f in ex.frameworks.values():
                    row += f"{framework_difference(f[key], ours, name):>40.2e}"
                say(row)
        if "Keras" in ex.frameworks:
            say("  (Keras 3 computes its matrix products in float32 even for float64 weights, following JAX's default:")
            say("   hence its 1e-8; its single bias b is set beside b_ih and b_hh, each of which gets db)")
        for name, why in ex.skipped.items():
            say(f"  {name}: not run ({why})")
        say("")
    say("The gradient check: each backward against finite differences of the loss (max relative error per array;")
    say(f"a correct backward is near 1e-9, the check passes at <= {TOLERANCE:g}):")
    names = list(ex.grads)
    wide = max(40, *(len(label) for label in ex.checks))
    say(f"  {'backward':<{wide}}" + "".join(f"{LETTERS[n].split()[0]:>10}" for n in names) + "   verdict")
    for label, errors in ex.checks.items():
        ok = all(e <= TOLERANCE for e in errors.values())
        say(f"  {label:<{wide}}" + "".join(f"{errors[n]:>10.1e}" for n in names) + f"   {'PASS' if ok else 'FAIL'}")
    say("The question's backward gets dV wrong by reading h_{t-1} (dV needs h_t), tanh's derivative wrong the same way,")
    say("and drops W^T da_{t+1}, so no error reaches earlier steps; only dc survives. The check catches every one.")
    return "\n".join(out)


def framework_difference(theirs: dict[str, np.ndarray], ours: dict[str, np.ndarray], name: str) -> float:
    """Largest |difference| for one array. Keras's single bias b stands for both of charrnn's:
    its gradient is db, which b_ih and b_hh each get, and the optimizers move each the same way."""
    other = theirs.get(name, theirs.get("b") if name in (B_IH, B_HH) else None)
    return float(np.abs(other - ours[name]).max()) if other is not None else float("nan")

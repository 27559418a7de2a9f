"""Optimizers and gradient clipping for models whose parameters are NumPy arrays.

Every optimizer here updates a ``dict[str, np.ndarray]`` of the model's live parameter arrays in
place: the arrays keep their identity, shape and dtype (float32 or float64), so the model never has
to re-fetch them. Each one reproduces the corresponding ``torch.optim`` class (single-tensor CPU
code path, which is what torch runs on CPU): the same formulas, the same defaults and, where it
changes the rounding, the same order of floating-point operations. ``tests/test_optim.py`` holds
them to that step for step.

Shapes: ``params[name]`` may have any shape; ``grads[name]`` must have the same shape and dtype.
Optimizer state ("slots", named as in torch: ``exp_avg``, ``momentum_buffer``, ...) has one array
per slot per parameter, of the parameter's shape and dtype.

Arithmetic is done in the parameter's dtype throughout: hyperparameters are kept as Python floats,
which NumPy treats as "weak" scalars, so a float32 model is updated in float32 (as torch does) and
never silently upcast to float64. Temporaries come from two scratch buffers per dtype allocated
once, so a step allocates nothing of parameter size.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from charrnn.errors import CheckpointError, ConfigError

__all__ = [
    "OPTIMIZERS",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "SGD",
    "clip_grad_norm_",
    "clip_grad_value_",
    "global_grad_norm",
    "make_optimizer",
]

# Bumped whenever the layout of state_dict() changes, so an old checkpoint fails loudly.
STATE_FORMAT = 1

_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing, to avoid 0/0.
_CLIP_NORM_EPS = 1e-6

# Elements upcast to float64 at a time when summing squares of a low-precision array: large enough
# for BLAS to run at full speed, small enough to stay in cache and never copy a whole gradient.
_NORM_CHUNK = 1 << 16


# --------------------------------------------------------------------------------------------------
# Validation helpers. Bad hyperparameters are user errors (ConfigError, one line naming the value);
# malformed params/grads dicts are programming errors (TypeError / ValueError).


def _real(owner: str, name: str, value: Any) -> float:
    """`value` as a finite Python float, or ConfigError. Booleans are refused: `lr=True` is a bug."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{owner}: {name} must be a number, got {value!r}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond any float, e.g. from a damaged checkpoint
        result = math.inf
    if not math.isfinite(result):
        raise ConfigError(f"{owner}: {name} must be finite, got {value!r}")
    return result


def _at_least(owner: str, name: str, value: Any, low: float) -> float:
    result = _real(owner, name, value)
    if result < low:
        raise ConfigError(f"{owner}: {name} must be >= {low:g}, got {value!r}")
    return result


def _positive(owner: str, name: str, value: Any) -> float:
    result = _real(owner, name, value)
    if result <= 0.0:
        raise ConfigError(f"{owner}: {name} must be > 0, got {value!r}")
    return result


def _unit_interval(owner: str, name: str, value: Any, *, include_one: bool = False) -> float:
    """A value in [0, 1) (or [0, 1] with `include_one`): decay rates and momenta."""
    result = _real(owner, name, value)
    if result < 0.0 or result > 1.0 or (result == 1.0 and not include_one):
        interval = "[0, 1]" if include_one else "[0, 1)"
        raise ConfigError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return result


def _flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}: {name} must be true or false, got {value!r}")
    return bool(value)


def _learning_rate(owner: str, value: Any, *, allow_zero: bool) -> float:
    # A schedule may legitimately reach 0 (e.g. cosine decay to zero on the last step), but an
    # optimizer built with lr=0 is certainly a mistake.
    if allow_zero:
        return _at_least(owner, "lr", value, 0.0)
    return _positive(owner, "lr", value)


def _check_params(owner: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping):
        raise TypeError(f"{owner}: params must be a dict of name -> np.ndarray, got {type(params)}")
    if not params:
        raise ValueError(f"{owner}: params is empty; there is nothing to optimize")
    seen: set[int] = set()
    for name, p in params.items():
        if not isinstance(name, str):
            raise TypeError(f"{owner}: parameter names must be strings, got {name!r}")
        if not isinstance(p, np.ndarray):
            raise TypeError(f"{owner}: parameter {name!r} is a {type(p).__name__}, not np.ndarray")
        if p.dtype not in _PARAM_DTYPES:
            raise TypeError(f"{owner}: parameter {name!r} has dtype {p.dtype}; expected float32 or float64")
        if not p.flags.writeable:
            raise ValueError(f"{owner}: parameter {name!r} is read-only; it must be updated in place")
        if id(p) in seen:
            # The same array under two names would be updated twice per step.
            raise ValueError(f"{owner}: parameter {name!r} is the same array as another parameter")
        seen.add(id(p))
    # A private dict so the set of names is fixed; the arrays themselves stay shared with the model.
    return dict(params)


class _Workspace:
    """Two flat scratch buffers per dtype, sized for the largest parameter of that dtype.

    Optimizer updates need at most two parameter-sized temporaries at a time; reusing these avoids
    allocating (and page-faulting) fresh arrays for every parameter on every step.
    """

    def __init__(self, params: Iterable[np.ndarray]) -> None:
        sizes: dict[np.dtype, int] = {}
        for p in params:
            sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
        self._buffers = {dt: (np.empty(n, dt), np.empty(n, dt)) for dt, n in sizes.items()}

    def pair(self, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two scratch arrays with `like`'s shape and dtype (views; contents are garbage)."""
        a, b = self._buffers[like.dtype]
        return a[: like.size].reshape(like.shape), b[: like.size].reshape(like.shape)


# --------------------------------------------------------------------------------------------------
# Small in-place kernels shared by the optimizers. Each mirrors one torch op so the rounding matches.


def _with_weight_decay(grad: np.ndarray, param: np.ndarray, weight_decay: float, out: np.ndarray) -> np.ndarray:
    """grad + weight_decay * param (torch's `grad.add(param, alpha=wd)`), written to `out`.

    Returns `grad` itself when there is no decay; the caller's gradient is never written to.
    """
    if weight_decay == 0.0:
        return grad
    np.multiply(param, weight_decay, out=out)
    np.add(grad, out, out=out)
    return out


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, tmp: np.ndarray) -> None:
    """start <- start + weight * (end - start), in place, as torch.lerp_ evaluates it.

    torch switches to `end - (end - start) * (1 - weight)` for |weight| >= 0.5 so that weight = 1
    returns `end` exactly; we follow it so moments round the same way. `tmp` must alias neither.
    """
    np.subtract(end, start, out=tmp)
    if abs(weight) < 0.5:
        np.multiply(tmp, weight, out=tmp)
        np.add(start, tmp, out=start)
    else:
        np.multiply(tmp, 1.0 - weight, out=tmp)
        np.subtract(end, tmp, out=start)


def _add_scaled_square_(acc: np.ndarray, grad: np.ndarray, value: float, tmp: np.ndarray) -> None:
    """acc += value * grad * grad (torch's `addcmul_(grad, grad, value=value)`, left to right)."""
    if value == 1.0:
        np.multiply(grad, grad, out=tmp)
    else:
        np.multiply(grad, value, out=tmp)
        np.multiply(tmp, grad, out=tmp)
    np.add(acc, tmp, out=acc)


# --------------------------------------------------------------------------------------------------


class Optimizer:
    """Base class: validation, the step loop, and state save/restore.

    Subclasses set `name`, `HYPERPARAMETERS` (the constructor's keyword arguments after `lr`, whose
    defaults live in the constructor signature and nowhere else) and implement `_validate`,
    `_slots` and `_update`.

    Attributes:
        params: name -> the model's live arrays (float32/float64), updated in place by `step`.
        lr: learning rate; a plain read/write attribute so a schedule can set it before each step
            (validated on assignment: finite and >= 0).
        step_count: number of completed `step` calls (torch's per-parameter "step").
        state: name -> slot -> array of the parameter's shape and dtype.
    """

    name: ClassVar[str] = ""
    HYPERPARAMETERS: ClassVar[tuple[str, ...]] = ()
    # Slots that are running sums/averages of squares: a negative value would make sqrt() NaN.
    _NONNEGATIVE_SLOTS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, hyperparameters: Mapping[str, Any]) -> None:
        self.params = _check_params(self.name, params)
        self._lr = _learning_rate(self.name, lr, allow_zero=False)
        hyper = self._validate(hyperparameters)
        self._apply_hyperparameters(hyper)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {
            pname: {slot: self._initial_slot(slot, p) for slot in self._slots(hyper)}
            for pname, p in self.params.items()
        }
        self._work = _Workspace(self.params.values())

    # -- subclass hooks ----------------------------------------------------------------------------

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, normalised hyperparameters (Python floats/bools), or ConfigError."""
        raise NotImplementedError

    @classmethod
    def _slots(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        """Names of the per-parameter state arrays these hyperparameters need."""
        raise NotImplementedError

    def _initial_slot(self, slot: str, param: np.ndarray) -> np.ndarray:
        return np.zeros_like(param)

    def _update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], s1: np.ndarray, s2: np.ndarray
    ) -> None:
        """Update one parameter in place. `s1`, `s2`: scratch of the param's shape; `grad`: read only.

        `self.step_count` has already been incremented (it is 1 on the first step).
        """
        raise NotImplementedError

    # -- public interface --------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _learning_rate(self.name, value, allow_zero=True)

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters other than lr, as JSON-ready values (tuples become lists)."""
        out: dict[str, Any] = {}
        for key in self.HYPERPARAMETERS:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}(lr={self.lr!r}, {settings}, step_count={self.step_count})"

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update to every parameter, in place.

        Args:
            grads: name -> gradient of the loss w.r.t. that parameter; exactly the keys of `params`,
                each with its parameter's shape and dtype. Read only: never modified.
        """
        self._check_grads(grads)
        self.step_count += 1
        for pname, param in self.params.items():
            s1, s2 = self._work.pair(param)
            self._update(param, grads[pname], self.state[pname], s1, s2)

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A snapshot of the optimizer: (arrays, meta).

        arrays: ``"<slot>/<param name>"`` -> a fresh C-contiguous copy (safe to hand to safetensors).
        meta: JSON-serialisable: optimizer name, format version, lr, step_count, hyperparameters.
        """
        arrays = {
            f"{slot}/{pname}": buf.copy() for pname, slots in self.state.items() for slot, buf in slots.items()
        }
        meta = {
            "optimizer": self.name,
            "format": STATE_FORMAT,
            "lr": self.lr,
            "step_count": self.step_count,
            "hyperparameters": self.hyperparameters(),
        }
        return arrays, meta

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Restore a `state_dict()` snapshot so that training continues bit for bit.

        As in torch, the saved lr and hyperparameters replace the current ones. Everything is
        validated before anything changes: on CheckpointError the optimizer is left as it was.
        The arrays are copied, so the caller's buffers (e.g. from safetensors) are not retained.
        """
        where = "optimizer state"
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{where}: metadata must be a mapping, got {type(meta).__name__}")
        saved = meta.get("optimizer")
        if saved != self.name:
            raise CheckpointError(f"{where} was saved by optimizer {saved!r}, cannot load it into {self.name!r}")
        if meta.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{where}: unsupported format {meta.get('format')!r} (expected {STATE_FORMAT})")
        for key in ("lr", "step_count", "hyperparameters"):
            if key not in meta:
                raise CheckpointError(f"{where}: metadata has no {key!r}")
        raw = meta["hyperparameters"]
        if not isinstance(raw, Mapping) or set(raw) != set(self.HYPERPARAMETERS):
            got = sorted(raw) if isinstance(raw, Mapping) else raw
            raise CheckpointError(
                f"{where}: hyperparameters must be exactly {list(self.HYPERPARAMETERS)} for {self.name!r}, got {got!r}"
            )
        try:
            hyper = self._validate(raw)
            lr = _learning_rate(self.name, meta["lr"], allow_zero=True)
        except ConfigError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        step_count = meta["step_count"]
        # bounded like an int64: beta ** step_count cannot take an int beyond any float
        if (isinstance(step_count, bool) or not isinstance(step_count, numbers.Integral)
                or not 0 <= step_count < 2**63):
            raise CheckpointError(f"{where}: step_count must be a non-negative integer, got {step_count!r}")
        if not isinstance(arrays, Mapping):
            raise CheckpointError(f"{where}: arrays must be a mapping, got {type(arrays).__name__}")

        slots = self._slots(hyper)
        expected = {f"{slot}/{pname}": (slot, pname) for pname in self.params for slot in slots}
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise CheckpointError(f"{where}: missing {len(missing)} array(s), first {missing[0]!r}")
        unexpected = sorted(set(arrays) - set(expected))
        if unexpected:
            raise CheckpointError(f"{where}: {len(unexpected)} unexpected array(s), first {unexpected[0]!r}")

        new_state: dict[str, dict[str, np.ndarray]] = {pname: {} for pname in self.params}
        for key, (slot, pname) in expected.items():
            array, param = arrays[key], self.params[pname]
            if not isinstance(array, np.ndarray):
                raise CheckpointError(f"{where}: {key!r} is a {type(array).__name__}, not an array")
            if array.shape != param.shape:
                raise CheckpointError(f"{where}: {key!r} has shape {array.shape}, expected {param.shape}")
            if array.dtype != param.dtype:
                raise CheckpointError(f"{where}: {key!r} has dtype {array.dtype}, expected {param.dtype}")
            if not np.isfinite(array).all():
                raise CheckpointError(f"{where}: {key!r} contains NaN or infinite values")
            if slot in self._NONNEGATIVE_SLOTS and (array < 0).any():
                raise CheckpointError(f"{where}: {key!r} has negative values, impossible for a sum of squares")
            new_state[pname][slot] = np.array(array, dtype=param.dtype, order="C", copy=True)

        self._apply_hyperparameters(hyper)
        self._lr = lr
        self.step_count = int(step_count)
        self.state = new_state

    # -- internals ---------------------------------------------------------------------------------

    def _apply_hyperparameters(self, hyper: Mapping[str, Any]) -> None:
        for key in self.HYPERPARAMETERS:
            setattr(self, key, hyper[key])

    def _check_grads(self, grads: Mapping[str, np.ndarray]) -> None:
        if not isinstance(grads, Mapping):
            raise TypeError(f"{self.name}: grads must be a dict of name -> np.ndarray, got {type(grads)}")
        if grads.keys() != self.params.keys():
            missing = sorted(set(self.params) - set(grads))
            extra = sorted(set(grads) - set(self.params))
            raise ValueError(f"{self.name}: grads do not match params (missing {missing}, unexpected {extra})")
        for pname, param in self.params.items():
            grad = grads[pname]
            if not isinstance(grad, np.ndarray):
                raise TypeError(f"{self.name}: gradient {pname!r} is a {type(grad).__name__}, not np.ndarray")
            if grad.shape != param.shape:
                raise ValueError(f"{self.name}: gradient {pname!r} has shape {grad.shape}, expected {param.shape}")
            if grad.dtype != param.dtype:
                # Mixing dtypes would make NumPy compute in the wider one, defeating float32 speed.
                raise TypeError(f"{self.name}: gradient {pname!r} has dtype {grad.dtype}, expected {param.dtype}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as torch.optim.SGD.

    g = grad + weight_decay * param
    with momentum: buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g;
                   g = g + momentum * buf if nesterov else buf
    param -= lr * g
    """

    name = "sgd"
    HYPERPARAMETERS = ("momentum", "dampening", "weight_decay", "nesterov")
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params, lr, dict(momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        )

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        h = {
            "momentum": _unit_interval(cls.name, "momentum", hyper["momentum"]),
            "dampening": _unit_interval(cls.name, "dampening", hyper["dampening"], include_one=True),
            "weight_decay": _at_least(cls.name, "weight_decay", hyper["weight_decay"], 0.0),
            "nesterov": _flag(cls.name, "nesterov", hyper["nesterov"]),
        }
        if h["nesterov"] and (h["momentum"] == 0.0 or h["dampening"] != 0.0):
            raise ConfigError(
                f"sgd: nesterov=True needs momentum > 0 and dampening = 0, "
                f"got momentum={h['momentum']!r}, dampening={h['dampening']!r}"
            )
        return h

    @classmethod
    def _slots(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if hyper["momentum"] != 0.0 else ()

    def _update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], s1: np.ndarray, s2: np.ndarray
    ) -> None:
        g = _with_weight_decay(grad, param, self.weight_decay, s1)
        direction = g
        if self.momentum != 0.0:
            buf = slots["momentum_buffer"]
            if self.step_count == 1:
                # torch starts the buffer at the (undampened) gradient, not at zero.
                np.copyto(buf, g)
            else:
                np.multiply(buf, self.momentum, out=buf)
                if self.dampening == 0.0:
                    np.add(buf, g, out=buf)
                else:
                    np.multiply(g, 1.0 - self.dampening, out=s2)
                    np.add(buf, s2, out=buf)
            if self.nesterov:
                np.multiply(buf, self.momentum, out=s2)
                np.add(g, s2, out=s2)
                direction = s2
            else:
                direction = buf
        np.multiply(direction, -self.lr, out=s2)
        np.add(param, s2, out=param)


class Adagrad(Optimizer):
    """Adagrad, as torch.optim.Adagrad (or min-char-rnn's variant with `eps_inside_sqrt=True`).

    g = grad + weight_decay * param;  sum += g * g;  clr = lr / (1 + (step - 1) * lr_decay)
    torch form:        param -= clr * g / (sqrt(sum) + eps)
    eps_inside_sqrt:   param -= clr * g / sqrt(sum + eps)   (min-char-rnn, which uses eps=1e-8)

    The default eps (1e-10) is torch's for both forms; pass eps=1e-8 to reproduce min-char-rnn.
    """

    name = "adagrad"
    HYPERPARAMETERS = ("lr_decay", "weight_decay", "initial_accumulator_value", "eps", "eps_inside_sqrt")
    _NONNEGATIVE_SLOTS = frozenset({"sum"})
    lr_decay: float
    weight_decay: float
    initial_accumulator_value: float
    eps: float
    eps_inside_sqrt: bool

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 0.01,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        eps_inside_sqrt: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            dict(
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                eps_inside_sqrt=eps_inside_sqrt,
            ),
        )

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        h = {
            "lr_decay": _at_least(cls.name, "lr_decay", hyper["lr_decay"], 0.0),
            "weight_decay": _at_least(cls.name, "weight_decay", hyper["weight_decay"], 0.0),
            "initial_accumulator_value": _at_least(
                cls.name, "initial_accumulator_value", hyper["initial_accumulator_value"], 0.0
            ),
            "eps": _at_least(cls.name, "eps", hyper["eps"], 0.0),
            "eps_inside_sqrt": _flag(cls.name, "eps_inside_sqrt", hyper["eps_inside_sqrt"]),
        }
        if h["eps"] == 0.0 and h["initial_accumulator_value"] == 0.0:
            # Every element whose gradient has been exactly 0 so far (e.g. the input weights of a
            # character not yet seen) would get 0 / 0 = NaN.
            raise ConfigError("adagrad: eps=0 needs initial_accumulator_value > 0, else zero gradients give NaN")
        return h

    @classmethod
    def _slots(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("sum",)

    def _initial_slot(self, slot: str, param: np.ndarray) -> np.ndarray:
        return np.full_like(param, self.initial_accumulator_value)

    def _update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], s1: np.ndarray, s2: np.ndarray
    ) -> None:
        g = _with_weight_decay(grad, param, self.weight_decay, s1)
        clr = self.lr / (1 + (self.step_count - 1) * self.lr_decay)
        acc = slots["sum"]
        _add_scaled_square_(acc, g, 1.0, s2)
        if self.eps_inside_sqrt:
            np.add(acc, self.eps, out=s2)
            np.sqrt(s2, out=s2)
        else:
            np.sqrt(acc, out=s2)
            np.add(s2, self.eps, out=s2)
        # (-clr * g) / denom, the order of both torch's addcdiv_ and min-char-rnn's expression.
        np.multiply(g, -clr, out=s1)
        np.divide(s1, s2, out=s1)
        np.add(param, s1, out=param)


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop (eps added outside the square root).

    g = grad + weight_decay * param;  square_avg = alpha * square_avg + (1 - alpha) * g^2
    centered: grad_avg = lerp(grad_avg, g, 1 - alpha); avg = sqrt(square_avg - grad_avg^2) + eps
    else:     avg = sqrt(square_avg) + eps
    momentum > 0: buf = momentum * buf + g / avg (buf starts at 0); param -= lr * buf
    else:         param -= lr * g / avg
    """

    name = "rmsprop"
    HYPERPARAMETERS = ("alpha", "eps", "weight_decay", "momentum", "centered")
    _NONNEGATIVE_SLOTS = frozenset({"square_avg"})
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 0.01,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(
            params, lr, dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)
        )

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "alpha": _unit_interval(cls.name, "alpha", hyper["alpha"]),
            # eps = 0 turns every never-nonzero gradient element into 0 / 0 = NaN.
            "eps": _positive(cls.name, "eps", hyper["eps"]),
            "weight_decay": _at_least(cls.name, "weight_decay", hyper["weight_decay"], 0.0),
            "momentum": _unit_interval(cls.name, "momentum", hyper["momentum"]),
            "centered": _flag(cls.name, "centered", hyper["centered"]),
        }

    @classmethod
    def _slots(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        slots = ("square_avg",)
        if hyper["centered"]:
            slots += ("grad_avg",)
        if hyper["momentum"] > 0.0:
            slots += ("momentum_buffer",)
        return slots

    def _update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], s1: np.ndarray, s2: np.ndarray
    ) -> None:
        g = _with_weight_decay(grad, param, self.weight_decay, s1)
        square_avg = slots["square_avg"]
        np.multiply(square_avg, self.alpha, out=square_avg)
        _add_scaled_square_(square_avg, g, 1.0 - self.alpha, s2)
        if self.centered:
            grad_avg = slots["grad_avg"]
            _lerp_(grad_avg, g, 1.0 - self.alpha, s2)
            np.multiply(grad_avg, grad_avg, out=s2)
            np.subtract(square_avg, s2, out=s2)
            np.sqrt(s2, out=s2)
        else:
            np.sqrt(square_avg, out=s2)
        np.add(s2, self.eps, out=s2)
        if self.momentum > 0.0:
            buf = slots["momentum_buffer"]
            np.multiply(buf, self.momentum, out=buf)
            np.divide(g, s2, out=s2)
            np.add(buf, s2, out=buf)
            np.multiply(buf, -self.lr, out=s2)
            np.add(param, s2, out=param)
        else:
            np.multiply(g, -self.lr, out=s1)
            np.divide(s1, s2, out=s1)
            np.add(param, s1, out=param)


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (L2 penalty added to the gradient); `AdamW` decouples it.

    g = grad + weight_decay * param            (AdamW instead: param *= 1 - lr * weight_decay)
    exp_avg = lerp(exp_avg, g, 1 - beta1);  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g^2
    v = max(max_exp_avg_sq, exp_avg_sq) if amsgrad else exp_avg_sq     (the max is kept as state)
    param -= (lr / (1 - beta1^t)) * exp_avg / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    eps is added after the bias correction of sqrt(v), as torch does (not to sqrt(v) itself).
    """

    name = "adam"
    HYPERPARAMETERS = ("betas", "eps", "weight_decay", "amsgrad")
    _NONNEGATIVE_SLOTS = frozenset({"exp_avg_sq", "max_exp_avg_sq"})
    _DECOUPLED: ClassVar[bool] = False
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    amsgrad: bool

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, dict(betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    @classmethod
    def _validate(cls, hyper: Mapping[str, Any]) -> dict[str, Any]:
        betas = hyper["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{cls.name}: betas must be a pair (beta1, beta2), got {betas!r}")
        return {
            "betas": (
                _unit_interval(cls.name, "betas[0]", betas[0]),
                _unit_interval(cls.name, "betas[1]", betas[1]),
            ),
            # eps = 0 turns every never-nonzero gradient element into 0 / 0 = NaN.
            "eps": _positive(cls.name, "eps", hyper["eps"]),
            "weight_decay": _at_least(cls.name, "weight_decay", hyper["weight_decay"], 0.0),
            "amsgrad": _flag(cls.name, "amsgrad", hyper["amsgrad"]),
        }

    @classmethod
    def _slots(cls, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if hyper["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _update(
        self, param: np.ndarray, grad: np.ndarray, slots: dict[str, np.ndarray], s1: np.ndarray, s2: np.ndarray
    ) -> None:
        beta1, beta2 = self.betas
        if self._DECOUPLED:
            if self.weight_decay != 0.0:
                np.multiply(param, 1.0 - self.lr * self.weight_decay, out=param)
            g = grad
        else:
            g = _with_weight_decay(grad, param, self.weight_decay, s1)
        exp_avg, exp_avg_sq = slots["exp_avg"], slots["exp_avg_sq"]
        _lerp_(exp_avg, g, 1.0 - beta1, s2)
        np.multiply(exp_avg_sq, beta2, out=exp_avg_sq)
        _add_scaled_square_(exp_avg_sq, g, 1.0 - beta2, s2)
        second = exp_avg_sq
        if self.amsgrad:
            second = slots["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        # Scalar bias corrections in double precision, exactly as torch computes them in Python.
        step = self.step_count
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        np.sqrt(second, out=s2)
        np.divide(s2, bias_correction2_sqrt, out=s2)
        np.add(s2, self.eps, out=s2)
        np.multiply(exp_avg, -step_size, out=s1)
        np.divide(s1, s2, out=s1)
        np.add(param, s1, out=param)


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay (param *= 1 - lr * wd first)."""

    name = "adamw"
    _DECOUPLED = True

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)
}


def make_optimizer(name: str, params: Mapping[str, np.ndarray], lr: float, **kwargs: Any) -> Optimizer:
    """Build the optimizer called `name` (sgd, adagrad, rmsprop, adam, adamw; case-insensitive).

    `kwargs` are that optimizer's constructor options; an unknown name, an option the optimizer does
    not take, or an invalid value raises ConfigError with a one-line message.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[key]
    unknown = sorted(set(kwargs) - set(cls.HYPERPARAMETERS))
    if unknown:
        raise ConfigError(
            f"{key}: unknown option {unknown[0]!r}; it accepts lr, {', '.join(cls.HYPERPARAMETERS)}"
        )
    return cls(params, lr, **kwargs)


# --------------------------------------------------------------------------------------------------
# Gradient clipping, in place on a dict of gradient arrays (any shapes, float dtypes).


def _sum_of_squares(array: np.ndarray, buffer: np.ndarray) -> float:
    """Sum of squares of `array` accumulated in float64 (`buffer`: float64 scratch, _NORM_CHUNK long)."""
    flat = array.reshape(-1)
    if flat.dtype == np.float64:
        return float(np.dot(flat, flat))
    # Squares of float32 values are exact in float64, so only the summation rounds.
    total = 0.0
    for start in range(0, flat.size, _NORM_CHUNK):
        piece = flat[start : start + _NORM_CHUNK]
        chunk = buffer[: piece.size]
        np.copyto(chunk, piece)
        total += float(np.dot(chunk, chunk))
    return total


def global_grad_norm(grads: Mapping[str, np.ndarray]) -> float:
    """L2 norm of all gradients taken together as one vector, accumulated in float64.

    Returns inf or nan if any gradient does (or if the squares overflow float64).
    """
    buffer = np.empty(_NORM_CHUNK, np.float64)
    total = 0.0
    for name, grad in grads.items():
        if not isinstance(grad, np.ndarray) or grad.dtype.kind != "f":
            raise TypeError(f"gradient {name!r} must be a floating-point np.ndarray")
        total += _sum_of_squares(grad, buffer)
    return math.sqrt(total)


def clip_grad_norm_(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most about `max_norm`.

    As torch.nn.utils.clip_grad_norm_: coef = max_norm / (total_norm + 1e-6), and every gradient
    is multiplied by coef when coef < 1 (so a norm just under max_norm is nudged by ~1e-6 too).
    Returns the total norm before clipping. If that norm is inf or nan the gradients are left
    untouched (torch would turn them into nan); the caller should skip the update.
    """
    limit = _positive("clip_grad_norm_", "max_norm", max_norm)
    total_norm = global_grad_norm(grads)
    if not math.isfinite(total_norm):
        return total_norm
    coef = limit / (total_norm + _CLIP_NORM_EPS)
    if coef < 1.0:
        for grad in grads.values():
            np.multiply(grad, coef, out=grad)
    return total_norm


def clip_grad_value_(grads: Mapping[str, np.ndarray], clip: float) -> None:
    """Clamp every gradient element to [-clip, clip] in place (char-rnn / min-char-rnn use 5)."""
    bound = _positive("clip_grad_value_", "clip", clip)
    for name, grad in grads.items():
        if not isinstance(grad, np.ndarray) or grad.dtype.kind != "f":
            raise TypeError(f"gradient {name!r} must be a floating-point np.ndarray")
        np.clip(grad, -bound, bound, out=grad)

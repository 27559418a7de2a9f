"""Tests for charrnn.optim: torch.optim parity step for step, state round trips, clipping, validation.

torch is the oracle: each of our optimizers is fed the same initial parameters, the same gradient
sequence and the same per-step learning rates as its torch.optim twin (single-tensor CPU path).
"""

from __future__ import annotations

import inspect
import json
import math
import tracemalloc

import numpy as np
import pytest

from charrnn.errors import CheckpointError, ConfigError
from charrnn.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    clip_grad_norm_,
    clip_grad_value_,
    global_grad_norm,
    make_optimizer,
)
from conftest import optional

torch = optional("torch")
pytestmark = pytest.mark.torch

SHAPES = {"rnn.weight_ih_l0": (5, 3), "rnn.weight_hh_l0": (3, 3), "rnn.bias_hh_l0": (3,)}
N_STEPS = 12

TORCH_CLASSES = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}

# (optimizer name, base lr, options): every variant whose code path differs.
CASES = [
    ("sgd", 0.1, {}),
    ("sgd", 0.1, {"momentum": 0.9}),
    ("sgd", 0.1, {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05}),
    ("sgd", 0.1, {"momentum": 0.9, "nesterov": True}),
    ("sgd", 0.1, {"momentum": 0.5, "nesterov": True, "weight_decay": 0.05}),
    ("sgd", 0.1, {"weight_decay": 0.05}),
    ("adagrad", 0.1, {}),
    ("adagrad", 0.1, {"lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.2}),
    ("rmsprop", 0.01, {}),
    ("rmsprop", 0.01, {"centered": True, "momentum": 0.8, "weight_decay": 0.05}),
    ("rmsprop", 0.01, {"centered": True, "alpha": 0.3}),  # lerp's large-weight branch
    ("rmsprop", 0.01, {"momentum": 0.9, "eps": 1e-6}),
    ("adam", 0.01, {}),
    ("adam", 0.01, {"amsgrad": True, "weight_decay": 0.05}),
    ("adam", 0.01, {"betas": (0.3, 0.5), "eps": 1e-6}),  # lerp's large-weight branch
    ("adamw", 0.01, {}),
    ("adamw", 0.01, {"amsgrad": True, "weight_decay": 0.3}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'default'}" for name, _, opts in CASES]


def make_params(dtype: type, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def make_grads(dtype: type, n: int = N_STEPS, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """Random gradients; one input-weight row is always exactly zero, like an unseen character's."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        grads = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
        grads["rnn.weight_ih_l0"][2] = 0.0
        out.append(grads)
    return out


def lr_at(base: float, step: int) -> float:
    """A decaying schedule, so the per-step `opt.lr = x` path is exercised."""
    return base * (0.97**step)


def torch_run(name: str, lr: float, opts: dict, params0: dict, grads_seq: list) -> tuple[list[dict], dict]:
    """Params after each step under torch.optim, and torch's final state keyed like our state_dict."""
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params0.items()}
    opt = TORCH_CLASSES[name](list(tensors.values()), lr=lr, foreach=False, **opts)
    history = []
    for i, grads in enumerate(grads_seq):
        opt.param_groups[0]["lr"] = lr_at(lr, i)
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        opt.step()
        history.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    state = {
        f"{slot}/{k}": value.detach().numpy().copy()
        for k, t in tensors.items()
        for slot, value in opt.state[t].items()
        if slot != "step"
    }
    return history, state


def our_run(name: str, lr: float, opts: dict, params0: dict, grads_seq: list) -> tuple[list[dict], Optimizer]:
    params = {k: v.copy() for k, v in params0.items()}
    opt = make_optimizer(name, params, lr, **opts)
    history = []
    for i, grads in enumerate(grads_seq):
        opt.lr = lr_at(lr, i)
        opt.step(grads)
        history.append({k: v.copy() for k, v in params.items()})
    return history, opt


@pytest.mark.parametrize(("name", "lr", "opts"), CASES, ids=CASE_IDS)
def test_matches_torch_float64(name: str, lr: float, opts: dict) -> None:
    params0, grads_seq = make_params(np.float64), make_grads(np.float64)
    ours, opt = our_run(name, lr, opts, params0, grads_seq)
    theirs, torch_state = torch_run(name, lr, opts, params0, grads_seq)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in SHAPES:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=0, err_msg=f"{k} after step {step + 1}")
        # The parameters must actually move, or agreement would be vacuous.
        assert not np.array_equal(a["rnn.weight_hh_l0"], params0["rnn.weight_hh_l0"])
    # Our slots carry torch's state names and values.
    arrays, meta = opt.state_dict()
    assert meta["step_count"] == N_STEPS
    assert set(arrays) == set(torch_state)
    for key, value in torch_state.items():
        np.testing.assert_allclose(arrays[key], value, rtol=1e-11, atol=1e-15, err_msg=key)


@pytest.mark.parametrize(("name", "lr", "opts"), CASES, ids=CASE_IDS)
def test_matches_torch_float32(name: str, lr: float, opts: dict) -> None:
    params0, grads_seq = make_params(np.float32), make_grads(np.float32)
    ours, _ = our_run(name, lr, opts, params0, grads_seq)
    theirs, _ = torch_run(name, lr, opts, params0, grads_seq)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for k in SHAPES:
            assert a[k].dtype == np.float32
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} after step {step + 1}")


def test_hyperparameter_defaults_match_torch() -> None:
    for name, cls in OPTIMIZERS.items():
        ours = inspect.signature(cls).parameters
        theirs = inspect.signature(TORCH_CLASSES[name]).parameters
        for key in ("lr", *cls.HYPERPARAMETERS):
            if key == "eps_inside_sqrt":  # ours only (min-char-rnn's form)
                assert ours[key].default is False
                continue
            if name == "sgd" and key == "lr":  # deliberately required: no sensible SGD default
                assert ours[key].default is inspect.Parameter.empty
                continue
            assert ours[key].default == theirs[key].default, f"{name}.{key}"


def test_hyperparameter_names_match_constructor() -> None:
    """make_optimizer and state_dict rely on HYPERPARAMETERS listing exactly the constructor options."""
    for cls in OPTIMIZERS.values():
        names = list(inspect.signature(cls).parameters)
        assert names == ["params", "lr", *cls.HYPERPARAMETERS]


def test_adagrad_eps_inside_sqrt_is_min_char_rnn() -> None:
    params0, grads_seq = make_params(np.float64), make_grads(np.float64)
    learning_rate = 1e-1
    # min-char-rnn's update, written out as in the original script.
    expected = {k: v.copy() for k, v in params0.items()}
    mem = {k: np.zeros_like(v) for k, v in params0.items()}
    for grads in grads_seq:
        for k in expected:
            dparam = grads[k]
            mem[k] += dparam * dparam
            expected[k] += -learning_rate * dparam / np.sqrt(mem[k] + 1e-8)

    params = {k: v.copy() for k, v in params0.items()}
    opt = Adagrad(params, lr=learning_rate, eps=1e-8, eps_inside_sqrt=True)
    for grads in grads_seq:
        opt.step(grads)
    for k in params:
        np.testing.assert_array_equal(params[k], expected[k])
    # And it is genuinely a different formula from torch's eps-outside form (visible with a big eps).
    first = {k: v.copy() for k, v in params0.items()}
    Adagrad(first, lr=learning_rate, eps=0.5, eps_inside_sqrt=True).step(grads_seq[0])
    other = {k: v.copy() for k, v in params0.items()}
    Adagrad(other, lr=learning_rate, eps=0.5).step(grads_seq[0])
    assert not np.allclose(first["rnn.weight_hh_l0"], other["rnn.weight_hh_l0"])



def test_adam_beta1_zero_keeps_exact_gradient() -> None:
    """With beta1 = 0, torch's lerp makes exp_avg exactly the gradient; a naive lerp rounds."""
    params0, grads_seq = make_params(np.float64), make_grads(np.float64)
    opt = Adam({k: v.copy() for k, v in params0.items()}, lr=0.01, betas=(0.0, 0.999))
    for grads in grads_seq:
        opt.step(grads)
        for k in SHAPES:
            np.testing.assert_array_equal(opt.state[k]["exp_avg"], grads[k])

# -- state_dict ------------------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    ("sgd", 0.1, {"momentum": 0.9, "nesterov": True}),
    ("sgd", 0.1, {}),
    ("adagrad", 0.1, {"lr_decay": 0.1, "initial_accumulator_value": 0.2}),
    ("rmsprop", 0.01, {"centered": True, "momentum": 0.8}),
    ("adam", 0.01, {"amsgrad": True, "weight_decay": 0.05}),
    ("adamw", 0.01, {}),
]


def serialize_round_trip(arrays: dict[str, np.ndarray], meta: dict) -> tuple[dict[str, np.ndarray], dict]:
    """What a checkpoint does to the state: safetensors bytes for arrays (if available), JSON for meta."""
    try:
        from safetensors.numpy import load, save
    except ImportError:
        arrays = {k: v.copy() for k, v in arrays.items()}
    else:
        arrays = load(save(arrays)) if arrays else {}
    return arrays, json.loads(json.dumps(meta, allow_nan=False))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [0, 4])
@pytest.mark.parametrize(("name", "lr", "opts"), ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_state_dict_round_trip_is_bit_identical(name: str, lr: float, opts: dict, k: int, dtype: type) -> None:
    params0, grads_seq = make_params(dtype), make_grads(dtype, n=10)
    uninterrupted, _ = our_run(name, lr, opts, params0, grads_seq)

    params = {key: v.copy() for key, v in params0.items()}
    opt = make_optimizer(name, params, lr, **opts)
    for i in range(k):
        opt.lr = lr_at(lr, i)
        opt.step(grads_seq[i])
    arrays, meta = serialize_round_trip(*opt.state_dict())
    # Keep stepping the original so any aliasing between it and the saved arrays would show.
    opt.step(grads_seq[k])

    resumed_params = {key: v.copy() for key, v in (uninterrupted[k - 1] if k else params0).items()}
    # Built with different lr/options on purpose: the checkpoint's values must win, as in torch.
    resumed = make_optimizer(name, resumed_params, lr * 3)
    resumed.load_state_dict(arrays, meta)
    assert resumed.step_count == k
    assert resumed.lr == (lr_at(lr, k - 1) if k else lr)
    reference = make_optimizer(name, {key: v.copy() for key, v in params0.items()}, lr, **opts)
    assert resumed.hyperparameters() == json.loads(json.dumps(reference.hyperparameters()))
    for i in range(k, len(grads_seq)):
        resumed.lr = lr_at(lr, i)
        resumed.step(grads_seq[i])
        for key in SHAPES:
            np.testing.assert_array_equal(resumed_params[key], uninterrupted[i][key], err_msg=f"{key} step {i + 1}")
            assert resumed_params[key].dtype == dtype


def test_state_dict_arrays_are_independent_copies() -> None:
    params0, grads_seq = make_params(np.float32), make_grads(np.float32)
    opt = Adam({k: v.copy() for k, v in params0.items()}, lr=0.01)
    opt.step(grads_seq[0])
    arrays, meta = opt.state_dict()
    assert set(arrays) == {f"{slot}/{p}" for slot in ("exp_avg", "exp_avg_sq") for p in SHAPES}
    saved = {k: v.copy() for k, v in arrays.items()}
    opt.step(grads_seq[1])
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], saved[k])  # later steps do not leak into the snapshot
        assert arrays[k].flags.c_contiguous and arrays[k].dtype == np.float32
    arrays["exp_avg/rnn.bias_hh_l0"][:] = 123.0
    assert not np.any(opt.state_dict()[0]["exp_avg/rnn.bias_hh_l0"] == 123.0)
    json.dumps(meta, allow_nan=False)
    assert meta["optimizer"] == "adam" and meta["step_count"] == 1 and meta["lr"] == 0.01
    assert meta["hyperparameters"] == {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}


def test_loaded_arrays_are_copied() -> None:
    params0, grads_seq = make_params(np.float64), make_grads(np.float64)
    opt = SGD({k: v.copy() for k, v in params0.items()}, lr=0.1, momentum=0.9)
    opt.step(grads_seq[0])
    arrays, meta = opt.state_dict()
    fresh = SGD({k: v.copy() for k, v in params0.items()}, lr=0.1, momentum=0.9)
    fresh.load_state_dict(arrays, meta)
    before = arrays["momentum_buffer/rnn.weight_hh_l0"].copy()
    fresh.step(grads_seq[1])
    np.testing.assert_array_equal(arrays["momentum_buffer/rnn.weight_hh_l0"], before)


def _adam_state() -> tuple[Adam, dict[str, np.ndarray], dict]:
    params0, grads_seq = make_params(np.float64), make_grads(np.float64)
    opt = Adam({k: v.copy() for k, v in params0.items()}, lr=0.01)
    for grads in grads_seq[:3]:
        opt.step(grads)
    arrays, meta = opt.state_dict()
    return opt, arrays, meta


def _corrupt(kind: str, arrays: dict, meta: dict) -> None:
    key = "exp_avg/rnn.weight_hh_l0"
    if kind == "name":
        meta["optimizer"] = "adamw"
    elif kind == "missing":
        del arrays[key]
    elif kind == "unexpected":
        arrays["max_exp_avg_sq/rnn.weight_hh_l0"] = np.zeros((3, 3))
    elif kind == "shape":
        arrays[key] = np.zeros((3, 4))
    elif kind == "dtype":
        arrays[key] = arrays[key].astype(np.float32)
    elif kind == "nan":
        arrays[key][1, 1] = np.nan
    elif kind == "inf":
        arrays[key][0, 0] = np.inf
    elif kind == "negative_square":
        arrays["exp_avg_sq/rnn.bias_hh_l0"][0] = -1.0
    elif kind == "bad_beta":
        meta["hyperparameters"]["betas"] = [0.9, 1.5]
    elif kind == "extra_hyper":
        meta["hyperparameters"]["momentum"] = 0.9
    elif kind == "step_count":
        meta["step_count"] = -1
    elif kind == "format":
        meta["format"] = 99
    elif kind == "lr":
        meta["lr"] = float("nan")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["name", "missing", "unexpected", "shape", "dtype", "nan", "inf", "negative_square", "bad_beta",
     "extra_hyper", "step_count", "format", "lr"],
)
def test_load_state_dict_rejects_bad_state(kind: str) -> None:
    opt, arrays, meta = _adam_state()
    _corrupt(kind, arrays, meta)
    fresh_params = {k: v.copy() for k, v in opt.params.items()}
    fresh = Adam(fresh_params, lr=0.02, betas=(0.8, 0.99))
    before_arrays, before_meta = fresh.state_dict()
    with pytest.raises(CheckpointError) as info:
        fresh.load_state_dict(arrays, meta)
    assert "\n" not in str(info.value)
    # A failed load leaves the optimizer exactly as it was.
    after_arrays, after_meta = fresh.state_dict()
    assert after_meta == before_meta
    assert after_arrays.keys() == before_arrays.keys()
    for k in before_arrays:
        np.testing.assert_array_equal(after_arrays[k], before_arrays[k])


def test_load_state_dict_names_the_problem() -> None:
    opt, arrays, meta = _adam_state()
    arrays["exp_avg/rnn.weight_hh_l0"] = np.zeros((3, 4))
    with pytest.raises(CheckpointError, match=r"exp_avg/rnn\.weight_hh_l0.*\(3, 4\).*\(3, 3\)"):
        opt.load_state_dict(arrays, meta)
    _, arrays, meta = _adam_state()
    with pytest.raises(CheckpointError, match="'adam'.*'sgd'"):
        SGD(opt.params, lr=0.1).load_state_dict(arrays, meta)


# -- step contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "lr", "opts"), CASES, ids=CASE_IDS)
def test_step_keeps_grads_identity_and_dtype(name: str, lr: float, opts: dict, dtype: type) -> None:
    params = make_params(dtype)
    originals = dict(params)
    grads_seq = make_grads(dtype, n=3)
    opt = make_optimizer(name, params, lr, **opts)
    for grads in grads_seq:
        snapshot = {k: v.copy() for k, v in grads.items()}
        before = {k: v.copy() for k, v in params.items()}
        opt.step(grads)
        for k in SHAPES:
            np.testing.assert_array_equal(grads[k], snapshot[k])
            assert params[k] is originals[k] and opt.params[k] is originals[k]
            assert params[k].dtype == dtype and params[k].shape == SHAPES[k]
            assert not np.array_equal(params[k], before[k])
    for slots in opt.state.values():
        for buf in slots.values():
            assert buf.dtype == dtype


def test_step_does_not_allocate_parameter_sized_temporaries() -> None:
    """Memory-lean: temporaries come from preallocated scratch, and float32 is never upcast."""
    rng = np.random.default_rng(0)
    params = {f"w{i}": rng.standard_normal((256, 256)).astype(np.float32) for i in range(3)}
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    one_param_bytes = params["w0"].nbytes
    for name, opts in [("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
                       ("adagrad", {"weight_decay": 0.1}),
                       ("rmsprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.1}),
                       ("adam", {"amsgrad": True, "weight_decay": 0.1}),
                       ("adamw", {})]:
        opt = make_optimizer(name, params, 1e-3, **opts)
        opt.step(grads)
        tracemalloc.start()
        try:
            opt.step(grads)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < one_param_bytes // 8, f"{name} allocated {peak} bytes in a step"


def test_step_rejects_mismatched_grads() -> None:
    params, grads = make_params(np.float64), make_grads(np.float64, n=1)[0]
    opt = Adam(params)
    with pytest.raises(ValueError, match="missing"):
        opt.step({k: v for k, v in grads.items() if k != "rnn.bias_hh_l0"})
    with pytest.raises(ValueError, match="shape"):
        opt.step({**grads, "rnn.bias_hh_l0": np.zeros(4)})
    with pytest.raises(TypeError, match="dtype"):
        opt.step({**grads, "rnn.bias_hh_l0": grads["rnn.bias_hh_l0"].astype(np.float32)})
    assert opt.step_count == 0


def test_constructor_rejects_bad_params() -> None:
    with pytest.raises(TypeError):
        SGD({"w": np.zeros(3, dtype=np.int64)}, lr=0.1)
    with pytest.raises(ValueError):
        SGD({}, lr=0.1)
    shared = np.zeros(3)
    with pytest.raises(ValueError):
        SGD({"a": shared, "b": shared}, lr=0.1)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        SGD({"w": frozen}, lr=0.1)


def test_lr_is_a_mutable_validated_attribute() -> None:
    params = {"w": np.ones(4)}
    opt = SGD(params, lr=0.5)
    opt.lr = 0.25
    opt.step({"w": np.ones(4)})
    np.testing.assert_array_equal(params["w"], np.full(4, 0.75))
    opt.lr = 0.0  # schedules may decay to exactly zero
    opt.step({"w": np.ones(4)})
    np.testing.assert_array_equal(params["w"], np.full(4, 0.75))
    for bad in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ConfigError):
            opt.lr = bad
    assert opt.lr == 0.0
    assert opt.step_count == 2


# -- make_optimizer / validation -------------------------------------------------------------------


def test_make_optimizer_builds_each_class() -> None:
    expected = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}
    for name, cls in expected.items():
        opt = make_optimizer(name, make_params(np.float64), 0.01)
        assert type(opt) is cls and opt.lr == 0.01 and opt.step_count == 0
    assert type(make_optimizer("AdamW", make_params(np.float64), 0.01)) is AdamW
    assert make_optimizer("adamw", make_params(np.float64), 0.01).weight_decay == 1e-2


@pytest.mark.parametrize(
    ("name", "lr", "opts", "mentions"),
    [
        ("adamax", 0.01, {}, "adamax"),
        ("", 0.01, {}, "unknown optimizer"),
        ("sgd", 0.0, {}, "lr"),
        ("adam", -1e-3, {}, "lr"),
        ("adam", float("nan"), {}, "lr"),
        ("adam", float("inf"), {}, "lr"),
        ("adam", True, {}, "lr"),
        ("adam", 0.01, {"betas": (0.9, 1.0)}, "betas[1]"),
        ("adam", 0.01, {"betas": (-0.1, 0.999)}, "betas[0]"),
        ("adamw", 0.01, {"betas": (0.9,)}, "betas"),
        ("adam", 0.01, {"eps": -1e-8}, "eps"),
        ("adam", 0.01, {"eps": 0.0}, "eps"),
        ("adam", 0.01, {"weight_decay": -0.1}, "weight_decay"),
        ("adam", 0.01, {"amsgrad": "yes"}, "amsgrad"),
        ("adam", 0.01, {"momentum": 0.9}, "momentum"),
        ("sgd", 0.01, {"momentum": -0.5}, "momentum"),
        ("sgd", 0.01, {"momentum": 1.5}, "momentum"),
        ("sgd", 0.01, {"nesterov": True}, "nesterov"),
        ("sgd", 0.01, {"momentum": 0.9, "dampening": 0.1, "nesterov": True}, "dampening"),
        ("sgd", 0.01, {"dampening": 2.0}, "dampening"),
        ("rmsprop", 0.01, {"alpha": 1.5}, "alpha"),
        ("rmsprop", 0.01, {"momentum": -0.1}, "momentum"),
        ("rmsprop", 0.01, {"eps": float("nan")}, "eps"),
        ("adagrad", 0.01, {"lr_decay": -1.0}, "lr_decay"),
        ("adagrad", 0.01, {"initial_accumulator_value": -1.0}, "initial_accumulator_value"),
        ("adagrad", 0.01, {"eps": 0.0}, "eps"),
        ("adagrad", 0.01, {"betas": (0.9, 0.99)}, "betas"),
    ],
)
def test_make_optimizer_rejects_bad_config(name: str, lr: float, opts: dict, mentions: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_optimizer(name, make_params(np.float64), lr, **opts)
    message = str(info.value)
    assert "\n" not in message
    assert mentions in message


def test_adagrad_eps_zero_allowed_with_positive_accumulator() -> None:
    params = {"w": np.ones(2)}
    Adagrad(params, lr=0.1, eps=0.0, initial_accumulator_value=0.1).step({"w": np.zeros(2)})
    np.testing.assert_array_equal(params["w"], np.ones(2))


# -- clipping --------------------------------------------------------------------------------------


def _grads_and_tensors(dtype: type, scale: float) -> tuple[dict[str, np.ndarray], list]:
    grads = {k: v * scale for k, v in make_grads(dtype, n=1, seed=7)[0].items()}
    tensors = []
    for v in grads.values():
        t = torch.zeros(v.shape, dtype=torch.from_numpy(v).dtype, requires_grad=True)
        t.grad = torch.from_numpy(v.copy())
        tensors.append(t)
    return grads, tensors


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("max_norm", [0.5, 2.0, 1e3])
def test_clip_grad_norm_matches_torch(dtype: type, rtol: float, max_norm: float) -> None:
    grads, tensors = _grads_and_tensors(dtype, scale=1.0)
    original = {k: v.copy() for k, v in grads.items()}
    total = clip_grad_norm_(grads, max_norm)
    torch_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm, foreach=False)
    assert isinstance(total, float)
    assert total == pytest.approx(float(torch_total), rel=rtol)
    for g, t in zip(grads.values(), tensors, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=0)
    if max_norm == 1e3:  # under the threshold: untouched, bit for bit
        for k in grads:
            np.testing.assert_array_equal(grads[k], original[k])
    else:
        assert global_grad_norm(grads) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_at_threshold_nudges_like_torch() -> None:
    grads, tensors = _grads_and_tensors(np.float64, scale=1.0)
    exact = global_grad_norm(grads)
    original = {k: v.copy() for k, v in grads.items()}
    clip_grad_norm_(grads, exact)  # coef = n / (n + 1e-6) < 1, so torch scales anyway
    torch.nn.utils.clip_grad_norm_(tensors, exact, foreach=False)
    for g, t, o in zip(grads.values(), tensors, original.values(), strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)
        assert not np.array_equal(g[g != 0], o[o != 0])


def test_clip_grad_norm_non_finite_leaves_grads_alone() -> None:
    grads = {"a": np.array([1.0, np.inf]), "b": np.array([3.0])}
    assert clip_grad_norm_(grads, 1.0) == math.inf
    np.testing.assert_array_equal(grads["b"], [3.0])
    assert math.isnan(global_grad_norm({"a": np.array([np.nan], dtype=np.float32)}))


def test_global_grad_norm_is_accurate_in_float32() -> None:
    rng = np.random.default_rng(3)
    grads = {"big": rng.standard_normal((700, 300)).astype(np.float32), "small": np.float32([1e-3, -2e-3])}
    reference = math.sqrt(math.fsum(float(x) ** 2 for g in grads.values() for x in g.astype(np.float64).ravel()))
    assert global_grad_norm(grads) == pytest.approx(reference, rel=1e-13)
    assert global_grad_norm({"a": np.array([3.0, 4.0])}) == 5.0
    assert global_grad_norm({}) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_torch(dtype: type) -> None:
    grads, tensors = _grads_and_tensors(dtype, scale=8.0)  # many entries beyond +-5
    assert any(np.abs(g).max() > 5 for g in grads.values())
    clip_grad_value_(grads, 5)
    torch.nn.utils.clip_grad_value_(tensors, 5.0, foreach=False)
    for g, t in zip(grads.values(), tensors, strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, t.grad.numpy())
        assert np.abs(g).max() <= 5


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_clipping_rejects_bad_thresholds(bad: float) -> None:
    grads = {"a": np.ones(3)}
    with pytest.raises(ConfigError):
        clip_grad_norm_(grads, bad)
    with pytest.raises(ConfigError):
        clip_grad_value_(grads, bad)
    np.testing.assert_array_equal(grads["a"], np.ones(3))

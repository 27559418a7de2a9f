"""The classifier and the tagger (seed 002's many-to-one and output-recurrent networks) against
PyTorch autograd on the same model written with nn.RNN / nn.LSTM / nn.GRU, and against float64
finite differences, on random shapes with texts of different lengths in one batch; padding
changes nothing; beam search against brute force."""

import itertools

import numpy as np
import pytest

from charrnn import CharClassifier, CharTagger
from charrnn.core import cell_names
from charrnn.errors import ConfigError
from charrnn.gradcheck import numeric_gradient
from charrnn.model.params import FEEDBACK_WEIGHT, count_parameters, parameter_shapes
from conftest import torch_twin_class

CELLS = cell_names()  # the built-in cells, as registered when the tests are collected



def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def configs(n, seed):
    """(V, K, H, L, lengths): length 1 alone, all equal, one layer and three first; then random."""
    rng = np.random.default_rng(seed)
    fixed = [(2, 2, 3, 1, [1]), (3, 2, 2, 2, [1, 1, 1]), (4, 3, 4, 3, [5, 1, 3]), (5, 4, 3, 1, [4, 4])]
    return fixed + [
        (int(rng.integers(2, 7)), int(rng.integers(2, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 4)),
         [int(v) for v in rng.integers(1, 7, size=int(rng.integers(1, 5)))])
        for _ in range(n - len(fixed))
    ]


def problem(kind, cell, V, K, H, L, lengths, seed, feedback=False):
    rng = np.random.default_rng(seed)
    if kind == "classify":
        model = CharClassifier(V, K, H, L, dtype="float64", seed=seed, cell=cell)
        targets = rng.integers(0, K, size=len(lengths))
    else:
        model = CharTagger(V, K, H, L, dtype="float64", seed=seed, cell=cell, feedback=feedback)
        targets = [rng.integers(0, K, size=n) for n in lengths]
    for p in model.params.values():
        p[...] = rng.uniform(-0.8, 0.8, size=p.shape)
    inputs = [rng.integers(0, V, size=n) for n in lengths]
    return model, inputs, targets


def torch_loss_and_grads(model, inputs, targets, class_weights=None):
    import torch

    """The same network in PyTorch: padded one-hot batch, [x_t; y_{t-1}] into the first layer
    with weight_ih_l0 = [U R] when the tagger feeds its tags back."""
    V, K, H, L = model.vocab_size, model.num_outputs, model.hidden_size, model.num_layers
    feedback = getattr(model, "feedback", False)
    lens = [len(s) for s in inputs]
    B, T = len(inputs), max(lens)
    rnn = torch_twin_class(model.cell)(V + (K if feedback else 0), H, L, batch_first=True).double()
    head = torch.nn.Linear(H, K).double()
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            value = model.params["rnn." + name]
            if name == "weight_ih_l0" and feedback:
                value = np.concatenate([value, model.params[FEEDBACK_WEIGHT]], axis=1)
            p.copy_(torch.from_numpy(value))
        for name, p in head.named_parameters():
            p.copy_(torch.from_numpy(model.params["head." + name]))
    x = torch.zeros(B, T, V + (K if feedback else 0), dtype=torch.float64)
    for b, s in enumerate(inputs):
        x[b, torch.arange(len(s)), torch.from_numpy(np.asarray(s))] = 1.0
        if feedback:
            prev = np.asarray(targets[b])[:-1]
            x[b, torch.arange(1, len(s)), V + torch.from_numpy(prev)] = 1.0
    out, _ = rnn(x)
    if model.task == "classify":
        last = out[torch.arange(B), torch.tensor(lens) - 1]
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float64)
        loss = torch.nn.functional.cross_entropy(head(last), torch.from_numpy(np.asarray(targets)), weight=w)
    else:
        logits = torch.cat([head(out[b, : lens[b]]) for b in range(B)])
        y = torch.from_numpy(np.concatenate([np.asarray(t) for t in targets]))
        loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    grads = {"rnn." + n: p.grad.numpy().copy() for n, p in rnn.named_parameters()}
    grads |= {"head." + n: p.grad.numpy() for n, p in head.named_parameters()}
    if feedback:
        joint = grads["rnn.weight_ih_l0"]
        grads["rnn.weight_ih_l0"], grads[FEEDBACK_WEIGHT] = joint[:, :V], joint[:, V:]
    return loss.item(), grads


CASES = [("classify", False), ("tag", False), ("tag", True)]


@pytest.mark.parametrize("kind,feedback", CASES, ids=["classify", "tag", "tag-R"])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", configs(9, seed=3), ids=str)
def test_matches_pytorch_autograd(kind, feedback, cell, config, torch):
    model, inputs, targets = problem(kind, cell, *config, seed=sum(config[:4]) + len(config[4]), feedback=feedback)
    want_loss, want = torch_loss_and_grads(model, inputs, targets)
    loss, grads = model.loss_and_grads(inputs, targets)
    assert abs(loss - want_loss) <= 1e-10 * abs(want_loss)
    assert set(grads) == set(want) == set(model.params)
    for name in grads:
        assert rel(grads[name], want[name]) <= 1e-10, name


@pytest.mark.parametrize("cell", CELLS)
def test_class_weights_match_pytorch(cell, torch):
    model, inputs, targets = problem("classify", cell, 4, 3, 3, 2, [3, 1, 4, 2, 2], seed=5)
    w = [0.5, 2.0, 1.25]
    want_loss, want = torch_loss_and_grads(model, inputs, targets, class_weights=w)
    loss, grads = model.loss_and_grads(inputs, targets, class_weights=w)
    assert abs(loss - want_loss) <= 1e-10 * abs(want_loss)
    for name in grads:
        assert rel(grads[name], want[name]) <= 1e-10, name


@pytest.mark.parametrize("kind,feedback", CASES, ids=["classify", "tag", "tag-R"])
@pytest.mark.parametrize("cell", CELLS)
def test_finite_differences(kind, feedback, cell):
    model, inputs, targets = problem(kind, cell, 4, 3, 3, 2, [4, 1, 2], seed=11, feedback=feedback)
    loss, grads = model.loss_and_grads(inputs, targets)
    rng = np.random.default_rng(0)
    for name, p in model.params.items():
        idx = rng.choice(p.size, size=min(p.size, 6), replace=False)
        num = numeric_gradient(lambda: model.forward(inputs, targets)[0], p, idx)
        got = grads[name].reshape(-1)[idx]
        assert np.abs(got - num).max() <= 1e-8 * max(np.abs(num).max(), 1e-3), name


@pytest.mark.parametrize("kind,feedback", CASES, ids=["classify", "tag", "tag-R"])
@pytest.mark.parametrize("cell", CELLS)
def test_padding_changes_nothing(kind, feedback, cell):
    """The same texts as a list, and as a (B, T) array padded far past the longest with junk ids
    (and junk tags): the same loss and gradients."""
    model, inputs, targets = problem(kind, cell, 5, 3, 4, 2, [3, 1, 5], seed=21, feedback=feedback)
    loss, grads = model.loss_and_grads(inputs, targets)
    rng = np.random.default_rng(1)
    lens = np.array([len(s) for s in inputs])
    x = rng.integers(0, 5, size=(3, 9))
    for b, s in enumerate(inputs):
        x[b, : len(s)] = s
    y = targets
    if kind == "tag":
        y = rng.integers(0, 3, size=(3, 9))
        for b, s in enumerate(targets):
            y[b, : len(s)] = s
    loss2, grads2 = model.loss_and_grads(x, y, lengths=lens)
    assert abs(loss - loss2) <= 1e-14 * abs(loss)
    for name in grads:
        assert rel(grads2[name], grads[name]) <= 1e-13, name
    # and each text alone, as a batch of one, has the loss its share of the batch says
    if kind == "classify":
        alone = [model.forward([s], [t])[0] for s, t in zip(inputs, targets)]
        assert abs(np.mean(alone) - loss) <= 1e-13


def test_parameter_table():
    shapes = parameter_shapes(7, 5, 2, "lstm", num_outputs=3, feedback=True)
    assert shapes["head.weight"] == (3, 5) and shapes["head.bias"] == (3,)
    assert shapes[FEEDBACK_WEIGHT] == (20, 3)
    assert not any(n.startswith("rnn.") and "feedback" in n for n in shapes)
    assert sum(np.prod(s) for s in shapes.values()) == count_parameters(7, 5, 2, "lstm", 3, True)
    model = CharTagger(7, 3, 5, 2, cell="lstm", feedback=True)
    assert {n: p.shape for n, p in model.params.items()} == shapes
    assert FEEDBACK_WEIGHT not in CharTagger(7, 3, 5, 2).params


@pytest.mark.parametrize("cell", CELLS)
def test_beam_search_finds_the_best_sequence(cell):
    """A beam as wide as every tag sequence is exhaustive: it must return the argmax of the
    sequence probability over all K^T sequences, computed by brute force with teacher forcing."""
    model, inputs, _ = problem("tag", cell, 4, 3, 3, 2, [4, 2, 3], seed=8, feedback=True)
    K = 3
    found = model.decode(inputs, beam=K**4)
    for s, got in zip(inputs, found):
        best, best_tags = -np.inf, None
        for tags in itertools.product(range(K), repeat=len(s)):
            logits = model.logits([s], previous=[np.array(tags)])[0]
            lp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
            total = lp[np.arange(len(s)), tags].sum()
            if total > best:
                best, best_tags = total, tags
        assert tuple(got) == best_tags
    # greedy: each step's argmax given the model's own previous choices
    for s, got in zip(inputs, model.decode(inputs, beam=1)):
        tags = []
        for t in range(len(s)):
            logits = model.logits([s[: t + 1]], previous=[np.array(tags + [0])])[0]
            tags.append(int(np.argmax(logits[t])))
        assert list(got) == tags


def test_decode_without_feedback_is_the_argmax():
    model, inputs, _ = problem("tag", "gru", 4, 3, 3, 1, [4, 2], seed=9)
    for s, got, beam in zip(inputs, model.decode(inputs), model.decode(inputs, beam=3)):
        assert list(got) == list(model.logits([s])[0].argmax(1)) == list(beam)


def test_bad_inputs_are_config_errors():
    model = CharTagger(4, 3, 3, feedback=True)
    with pytest.raises(ConfigError, match="one tag per character"):
        model.loss_and_grads([[1, 2]], [[0]])
    with pytest.raises(ConfigError, match="outside"):
        model.loss_and_grads([[1, 5]], [[0, 1]])
    with pytest.raises(ConfigError, match="at least one"):
        model.loss_and_grads([[]], [[]])
    with pytest.raises(ConfigError, match="beam"):
        model.decode([[1]], beam=0)
    clf = CharClassifier(4, 2, 3)
    with pytest.raises(ConfigError, match="class ids"):
        clf.loss_and_grads([[1], [2]], [0, 2])

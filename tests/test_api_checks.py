"""Every public function of the Python API refuses arguments of the wrong type or range with a
ConfigError (a CharRNNError and a ValueError) of one line naming the parameter.

The surface is discovered, not listed: the names in `charrnn.__all__` (functions, and classes:
their constructors and public methods), which hold the objects that `load` and `score` return.
Each parameter gets the hostile values its declared type refuses; a public callable taking
arguments without a declaration (charrnn.checks.checked) fails the test, so the next one added
is covered or the test says so.
"""

import inspect
import math
import os
import types
import typing
from pathlib import Path, PurePath

import numpy as np
import pytest

import charrnn
from charrnn import CharClassifier, CharRNN, CharRNNError, CharTagger, ConfigError
from charrnn.checks import Range, checked, counted, declaration
from charrnn.data.text import Vocab

from conftest import SONNET

SMALL = dict(hidden_size=8, steps=2, seq_len=8, batch_size=2, eval_every=0, sample_every=0, quiet=True)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("checks")
    text = root / "s.txt"
    text.write_text(SONNET, encoding="utf-8")
    return charrnn.fit(text, out=root / "run", **SMALL)


def public_classes() -> dict[str, type]:
    return {name: obj for name in charrnn.__all__ if isinstance(obj := getattr(charrnn, name), type)
            and not issubclass(obj, BaseException)}


def surface() -> list[tuple[str, type | None, str]]:
    """(label, class or None, attribute): every public callable of the API that takes arguments."""
    out = []
    for name in charrnn.__all__:
        obj = getattr(charrnn, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            continue  # the errors take a message, whatever it is
        if isinstance(obj, type):
            out.append((f"{name}()", obj, "__init__"))
            for attr in sorted(dir(obj)):
                if attr.startswith("_") or isinstance(inspect.getattr_static(obj, attr), property):
                    continue
                if callable(getattr(obj, attr)):
                    out.append((f"{name}.{attr}", obj, attr))
        elif callable(obj):
            out.append((name, None, name))
    return [(label, cls, attr) for label, cls, attr in out if takes_arguments(target(cls, attr))]


def target(cls, attr):
    return getattr(charrnn, attr) if cls is None else inspect.getattr_static(cls, attr) if attr == "__init__" \
        else getattr(cls, attr)


def takes_arguments(fn) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    named = [p for p in params if p.kind not in kinds and p.name not in ("self", "cls")]
    return bool(named)


def members(annotation) -> tuple:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def is_path_type(t) -> bool:
    t = typing.get_origin(t) or t
    return isinstance(t, type) and (issubclass(t, PurePath) or t is os.PathLike)


def spec_accepts(annotation, value) -> bool:
    """What the README promises each annotation accepts, said again independently of the checker."""
    ms = members(annotation)
    path = any(is_path_type(m) for m in ms)
    for m in ms:
        if m is type(None):
            ok = value is None
        elif m is int:
            ok = type(value) is int
        elif m is float:
            ok = type(value) in (int, float) and math.isfinite(value)
        elif m is bool:
            ok = type(value) is bool
        elif m is str and path or is_path_type(m):
            ok = (type(value) is str and value != "") or isinstance(value, os.PathLike)
        elif m is str:
            ok = type(value) is str
        elif m is bytes:
            ok = type(value) is bytes
        else:
            ok = isinstance(value, typing.get_origin(m) or m)
        if ok:
            return True
    return False


POOL = ["5", "", "hot", 1.5, True, None, float("nan"), float("inf"), -1, 123, b"x", ["p"], object()]


def hostile(param) -> list:
    """Values the parameter's declaration refuses: of the wrong type, and outside its range."""
    out = [v for v in POOL if not spec_accepts(param.annotation, v)]
    r = param.range
    if r is not None:
        integer = int in members(param.annotation)
        step = 1 if integer else 0.5
        if r.low is not None:
            out.append(r.low if r.low_open else r.low - step)
        if r.high is not None:
            out.append(r.high if r.high_open else r.high + step)
    return out


def valid(param, tmp_path, examples):
    """A value the declaration accepts (the body never runs: the hostile argument stops the call)."""
    if param.annotation is typing.Any or param.optional:
        return None
    r = param.range or Range()
    lo = 0 if r.low is None else r.low
    ms = members(param.annotation)
    if any(is_path_type(m) for m in ms):
        return str(tmp_path / "nowhere")
    for m in ms:
        if m in (int, float):
            value = lo + 1 if r.low_open or lo < 1 else lo
            if r.high is not None and not r.holds(value):
                value = r.high if not r.high_open else (lo + r.high) / 2
            return m(value)
        if m is bool:
            return False
        if m is str:
            return "x"
        if m is bytes:
            return b"x"
        t = typing.get_origin(m) or m
        if t in examples:
            return examples[t]
    raise AssertionError(f"the test knows no valid {param.annotation} for {param.name}: add one to `examples`")


@pytest.fixture(scope="module")
def examples(lm):
    model = CharRNN(5, 4)
    x = np.zeros((1, 3), dtype=np.intp)
    return {
        CharRNN: model, Vocab: Vocab(["a", "b"]), np.ndarray: np.zeros(2), dict: {}, tuple: (np.zeros((1, 1, 4)),),
        type(model.forward(x, x)[1]): model.forward(x, x)[1], type: np.float32, np.dtype: np.dtype("float32"),
        type(CharClassifier(5, 3).forward([[1, 2]], [0])[1]): CharClassifier(5, 3).forward([[1, 2]], [0])[1],
        type(CharTagger(5, 3).forward([[1, 2]], [[0, 1]])[1]): CharTagger(5, 3).forward([[1, 2]], [[0, 1]])[1],
    }


@pytest.fixture(scope="module")
def instances(lm):
    """An instance of every public class, to call its methods on."""
    return {"LanguageModel": lm, "Score": lm.score("Shall I compare"), "CharRNN": CharRNN(5, 4),
            "CharClassifier": CharClassifier(5, 3), "CharTagger": CharTagger(5, 3, feedback=True)}


def test_load_and_score_return_objects_of_the_enumerated_classes(lm):
    classes = set(public_classes().values())
    assert type(lm) in classes and type(lm.score("So long")) in classes and type(lm.model) in classes
    assert {label for label, _, _ in surface()} >= {"load", "fit", "LanguageModel.generate", "CharRNN()"}


@pytest.mark.parametrize("label,cls,attr", surface(), ids=[s[0] for s in surface()])
def test_every_public_callable_refuses_wrong_types_by_name(label, cls, attr, lm, instances, examples, tmp_path):
    fn = target(cls, attr)
    d = declaration(fn)
    assert d is not None, f"{label} takes arguments but declares none: decorate it with charrnn.checks.checked"
    assert d.params, label
    if attr == "__init__":
        call = cls
    elif cls is None or isinstance(inspect.getattr_static(cls, attr), (classmethod, staticmethod)):
        call = fn
    else:
        call = getattr(instances[cls.__name__], attr)
    sig = inspect.signature(call)
    tried = 0
    for p in d.params:
        if p.annotation is typing.Any:
            continue  # arrays and states: the model's own validators (tests/model)
        required = {q.name: valid(q, tmp_path, examples) for q in d.params
                    if q is not p and sig.parameters[q.name].default is inspect.Parameter.empty}
        for bad in hostile(p):
            with pytest.raises(ConfigError) as e:
                call(**required, **{p.name: bad})
            message = str(e.value)
            assert isinstance(e.value, CharRNNError) and isinstance(e.value, ValueError)
            assert message.startswith(f"{d.where}: {p.name} must be ") and "\n" not in message, message
            tried += 1
        # positionally too: each argument is checked whichever way it is given
        positional = [q for q in sig.parameters.values() if q.kind is q.POSITIONAL_OR_KEYWORD]
        if p.name in [q.name for q in positional]:
            before = positional[: [q.name for q in positional].index(p.name)]
            args = [valid(next(x for x in d.params if x.name == q.name), tmp_path, examples)
                    if q.default is inspect.Parameter.empty else q.default for q in before]
            with pytest.raises(ConfigError, match=f"{p.name} must be"):
                call(*args, hostile(p)[0])
    assert tried or all(p.annotation is typing.Any for p in d.params), label


# -- the instances of the issue, each by name ---------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(length="5"), dict(length=1.5), dict(length=None), dict(length=True), dict(temperature="hot"),
    dict(top_k=2.5), dict(top_k=float("inf")), dict(seed=-1), dict(seed=1.5), dict(seed="abc"), dict(prime=5),
    dict(greedy="yes"), dict(top_p=0), dict(top_p=float("nan")), dict(stop=5),
])
def test_generate_refuses_what_it_used_to_take_or_crash_on(lm, kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=f"^LanguageModel.generate\\(\\): {name} must be "):
        lm.generate(**kwargs)
    with pytest.raises(ValueError):  # code catching ValueError keeps working
        lm.generate(**kwargs)


@pytest.mark.parametrize("bad", [123, None, b"runs/x", ["runs/x"], ""])
def test_load_refuses_what_is_not_a_path(bad):
    with pytest.raises(ConfigError, match="^load\\(\\): run_or_checkpoint must be a path"):
        charrnn.load(bad)


@pytest.mark.parametrize("kwargs", [dict(out=5), dict(config=5), dict(resume=True), dict(force="yes"),
                                    dict(quiet="no"), dict(progress=1), dict(out="")])
def test_fit_refuses_its_own_arguments_before_any_work(kwargs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # out="" used to write the run among the files of the current folder
    Path("s.txt").write_text(SONNET, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^fit\\(\\): {next(iter(kwargs))} must be "):
        charrnn.fit("s.txt", **kwargs)
    assert os.listdir(tmp_path) == ["s.txt"]


def test_path_like_values_and_numpy_numbers_are_accepted(lm, tmp_path):
    assert charrnn.load(Path(lm.path)).cell == lm.cell  # os.PathLike
    assert len(lm.generate("So", length=np.int64(3), temperature=np.float32(0.5), top_k=np.int32(2), seed=np.uint8(1),
                           greedy=np.bool_(False))) == 5
    assert CharRNN(np.int64(5), np.int32(4), seed=np.int64(3)).hidden_size == 4


def test_the_checker_reads_annotations_and_ranges():
    @checked(n=Range(1), p=Range(0, 1, low_open=True))
    def f(n: int, p: float = 0.5, name: str | None = None, where: str | os.PathLike[str] | None = None,
          flag: bool = False, anything: typing.Any = None) -> int:
        return n

    assert f(3, 1, None, Path("x"), True, object()) == 3
    for kwargs, said in [(dict(n=True), "n must be an integer >= 1, got True (bool)"),
                         (dict(n=0), "n must be an integer >= 1, got 0 (int)"),
                         (dict(n=1, p=0), "p must be a finite number in (0, 1], got 0 (int)"),
                         (dict(n=1, p=float("inf")), "p must be a finite number in (0, 1], got inf (float)"),
                         (dict(n=1, name=b"x"), "name must be a string or None, got b'x' (bytes)"),
                         (dict(n=1, where=b"x"), "where must be a path (a non-empty str or os.PathLike) or None"),
                         (dict(n=1, where="a\0b"), "where must be a path"),
                         (dict(n=1, flag=1), "flag must be True or False, got 1 (int)"),
                         (dict(n="x" * 500), "n must be an integer >= 1, got 'xxxxxxxx")]:
        with pytest.raises(ConfigError) as e:
            f(**kwargs)
        assert str(e.value).startswith("test_the_checker_reads_annotations_and_ranges.<locals>.f(): " + said)
        assert len(str(e.value)) < 200 and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="must be an integer >= 1, got array"):
        f(np.array([[1, 2], [3, 4]]))  # a repr over several lines is shown on one

    with pytest.raises(TypeError, match="no parameter"):
        declaration(checked(m=Range(0))(lambda n: n))


def test_config_error_is_both_a_charrnn_error_and_a_value_error():
    assert issubclass(ConfigError, CharRNNError) and issubclass(ConfigError, ValueError)


def test_counted_says_one_thing_and_many_things():
    assert counted(1, "character") == "1 character"
    assert counted(0, "character") == "0 characters"
    assert counted(2048, "character") == "2,048 characters"
    assert counted(2, "text") == "2 texts" and counted(1, "bytes", "bytes") == "1 bytes"

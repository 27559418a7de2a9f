"""One checker for the arguments of the public Python API.

    @checked(length=Range(0, MAX_LENGTH), temperature=Range(0, low_open=True))
    def generate(self, prime: str | None = None, length: int = 500, temperature: float = 1.0): ...

A checked function's parameters are checked against their annotations, before its body runs,
in this one place: a value of the wrong type or outside its range raises ConfigError with one
line naming the function, the parameter and the value. The annotations say the type:

    int                   an integer (Python's or NumPy's), never a bool
    float                 a finite number (an int will do), never a bool
    bool                  True or False only (NumPy's bool too), never 1 or "yes"
    str, bytes            exactly that
    str | os.PathLike     (any union naming os.PathLike or Path) a path: a non-empty str or
                          os.PathLike naming a str path, without NUL; never bytes
    X | None              X, or None
    a class, dict[...]    an instance of it
    Any                   checked by the callee itself (arrays: the model's own validators)

and `Range`s given to the decorator say what a type cannot (a count >= 1, a probability in
(0, 1]). Arguments left at their defaults are not checked: the defaults are the function's own.
The declaration is kept on the function (`declaration(fn)`), so a test can enumerate every
public function's parameters and call each with values of the wrong type.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, TypeVar, Union

import numpy as np

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# A NumPy dtype as the API takes it: "float32", np.float64, np.dtype("float32").
DType = Union[str, type, np.dtype]


@dataclass(frozen=True)
class Range:
    """Bounds of a number: low <= value <= high, each end open (<, >) when said; None: no bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: Any) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        def show(x: float) -> str:
            return f"{x:,}" if isinstance(x, int) else f"{x:g}"

        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{show(self.low)}, "
                    f"{show(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {show(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {show(self.high)}"
        return "any"


@dataclass(frozen=True)
class Param:
    """One checked parameter: what its annotation accepts, and the range of a number."""

    name: str
    annotation: Any  # the evaluated annotation (Any: left to the callee)
    accepts: Callable[[Any], bool] | None  # None: anything
    what: str  # "an integer >= 0", "a path or None", ...
    range: Range | None = None
    optional: bool = False  # None is accepted


@dataclass(frozen=True)
class Declaration:
    """What `checked` knows of a function: its name as messages show it and its parameters."""

    where: str  # "LanguageModel.generate()", "CharRNN()" (the constructor)
    params: tuple[Param, ...]  # in signature order, self / cls and *args / **kwargs left out


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _is_finite_number(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _is_path(v: Any) -> bool:
    if isinstance(v, os.PathLike):
        try:
            v = os.fspath(v)
        except TypeError:
            return False
    return isinstance(v, str) and v != "" and "\0" not in v


# member type -> (test, description); numbers get their range added to the description
_SIMPLE: dict[Any, tuple[Callable[[Any], bool], str]] = {
    int: (_is_int, "an integer"),
    float: (_is_finite_number, "a finite number"),
    bool: (_is_bool, "True or False"),
    str: (lambda v: isinstance(v, str), "a string"),
    bytes: (lambda v: isinstance(v, bytes), "bytes"),
}
_PATH = (_is_path, "a path (a non-empty str or os.PathLike)")


def _is_path_member(t: Any) -> bool:
    origin = typing.get_origin(t) or t
    return isinstance(origin, type) and (issubclass(origin, PurePath) or origin is os.PathLike)


def _member(t: Any) -> tuple[Callable[[Any], bool], str]:
    if t in _SIMPLE:
        return _SIMPLE[t]
    if t is np.dtype:
        return (lambda v: isinstance(v, np.dtype)), "a NumPy dtype"
    if t is np.ndarray:
        return (lambda v: isinstance(v, np.ndarray)), "a NumPy array"
    if t is type:
        return (lambda v: isinstance(v, type)), "a type"
    origin = typing.get_origin(t) or t
    if origin is collections.abc.Callable:
        return callable, "a callable"
    if isinstance(origin, type):
        article = "an" if origin.__name__[:1].lower() in "aeiou" else "a"
        return (lambda v: isinstance(v, origin)), f"{article} {origin.__name__}"
    raise TypeError(f"checked: cannot check an argument annotated {t!r}")


def _param(name: str, annotation: Any, rng: Range | None) -> Param:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return Param(name, Any, None, "anything", rng)
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) \
        else (annotation,)
    optional = type(None) in members
    members = tuple(m for m in members if m is not type(None))
    tests: list[Callable[[Any], bool]] = []
    words: list[str] = []
    if any(_is_path_member(m) for m in members):  # str | os.PathLike, str | Path: a path
        members = tuple(m for m in members if m is not str and not _is_path_member(m))
        tests.append(_PATH[0])
        words.append(_PATH[1])
    for m in members:
        test, word = _member(m)
        tests.append(test)
        words.append(word)
    if rng is not None:
        if not any(m in (int, float) for m in members):
            raise TypeError(f"checked: {name} has a range but is not a number")
        words = [f"{w} {rng}" if w in ("an integer", "a finite number") else w for w in words]
    if optional:
        words.append("None")
    test = tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests)
    if rng is None and not optional:
        accepts = test  # the common case, called on every call of the function: one test
    else:
        def accepts(v: Any) -> bool:
            if v is None:
                return optional
            return test(v) and (rng is None or not _is_number(v) or rng.holds(v))

    return Param(name, annotation, accepts, " or ".join(words), rng, optional)


def _shown(value: Any) -> str:
    """A value as a message shows it: its repr on one line, cut short, and its type."""
    text = " ".join(repr(value).split())
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _declare(fn: Callable[..., Any], ranges: dict[str, Range]) -> Declaration:
    sig = inspect.signature(fn)
    taken = [p for i, p in enumerate(sig.parameters.values())
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not (i == 0 and p.name in ("self", "cls"))]
    # the parameters' annotations only (the return's may name what the module imports later),
    # evaluated once in the function's module (`from __future__ import annotations` keeps them text)
    hints = typing.get_type_hints(types.SimpleNamespace(__annotations__={p.name: p.annotation for p in taken}),
                                  globalns=getattr(fn, "__globals__", None))
    params = [_param(p.name, hints.get(p.name, Any), ranges.get(p.name)) for p in taken]
    names = {p.name for p in taken}
    unknown = set(ranges) - names
    if unknown:
        raise TypeError(f"checked: {fn.__qualname__} has no parameter {', '.join(sorted(unknown))}")
    return Declaration(fn.__qualname__.removesuffix(".__init__") + "()", tuple(params))


def checked(**ranges: Range) -> Callable[[F], F]:
    """Check the decorated function's (or class's constructor's) arguments against their
    annotations and `ranges` (module docstring). The annotations are read on the first call (or by
    `declaration`), once: a class named in them may be defined after the function."""

    def decorate(fn: F) -> F:
        if isinstance(fn, type):  # a class (a dataclass, say): its constructor
            fn.__init__ = decorate(fn.__init__)  # type: ignore[misc]
            return fn
        plan: dict[str, Any] = {}
        # filled on the first call: the parameter each positional argument binds to (None for
        # self / cls and Any) and the checked parameters by name; kept in the closure, as the
        # wrapper runs on every call of the function
        positions: list[Param | None] = []
        by_name: dict[str, Param] = {}

        def declared() -> Declaration:
            if not plan:
                d = _declare(fn, ranges)
                by_name.update({p.name: p for p in d.params if p.accepts is not None})
                kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                positions.extend(by_name.get(p.name) for p in inspect.signature(fn).parameters.values()
                                 if p.kind in kinds)
                plan["declaration"] = d
            return plan["declaration"]

        def refuse(p: Param, value: Any) -> None:
            raise ConfigError(f"{plan['declaration'].where}: {p.name} must be {p.what}, got {_shown(value)}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not plan:
                declared()
            if by_name:
                for p, value in zip(positions, args):
                    if p is not None and not p.accepts(value):  # type: ignore[misc]
                        refuse(p, value)
                for name, value in kwargs.items():
                    p = by_name.get(name)
                    if p is not None and not p.accepts(value):  # type: ignore[misc]
                        refuse(p, value)
            return fn(*args, **kwargs)

        wrapper.__checked__ = declared  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def declaration(fn: Any) -> Declaration | None:
    """The declaration of a function (or of a class's constructor) made by `checked`; None for
    one that is not checked."""
    if isinstance(fn, type):
        fn = fn.__init__
    fn = getattr(fn, "__func__", fn)  # a bound method or a classmethod
    declared = getattr(fn, "__checked__", None)
    return declared() if declared is not None else None


# What a command line's parser takes as a negative number given to an option (`--w -1e308`,
# `--lr -.5`, `--radius -inf`) rather than as an option of its own: argparse's own test takes
# only -1 and -1.5, so `--w -1e308` said "expected one argument" (Python 3.13 takes -digit and
# -.digit too). The parsers of the command line and of `charrnn bench` use it.
NEGATIVE_NUMBER = re.compile(r"^-(\.?\d|inf|nan)", re.IGNORECASE)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 character', '2,048 characters': a count and its noun, in the number it needs."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"

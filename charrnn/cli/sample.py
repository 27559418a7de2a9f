"""charrnn sample: text from a trained model, streamed as it is produced."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ConfigError
from ._common import (add_backend_flags, apply_threads, command, escape_what_stdout_cannot_show, inference_model,
                      load_for_inference, needs_run, positive_int, seed_int)


@command("sample", "generate text from a trained model, streamed as it is produced", outputs=(),
         reads={"RUN": "model", "RUN --novelty": "run"})
def _sample(p: argparse.ArgumentParser):
    from ..sample import SampleConfig

    d = SampleConfig()
    p.add_argument("run", metavar="RUN", help="run directory, checkpoint file or shipped model (charrnn models)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prime", help="text to start from (default: a newline)")
    g.add_argument("--prime-file", metavar="FILE", help="read the prime text from FILE")
    p.add_argument("--length", type=int, default=d.length, help=f"characters to generate (default {d.length})")
    p.add_argument("--temperature", type=float, default=d.temperature, help="< 1 more likely text, > 1 more varied")
    p.add_argument("--top-k", type=int, default=d.top_k, help="sample among the k most likely characters only")
    p.add_argument("--top-p", type=float, default=d.top_p, help="sample within this much probability mass only")
    p.add_argument("--greedy", action="store_true", help="always the most likely character")
    p.add_argument("--seed", type=seed_int, default=None, help="random seed (default: fresh, printed on stderr)")
    p.add_argument("--num-samples", type=positive_int, default=1,
                   help="samples from the same prime, made together on every core; the first is shown as it grows")
    p.add_argument("--stop", metavar="STR", help="end each sample at the first STR generated (left out); "
                   "--length is then a cap, and the samples are printed one per line")
    p.add_argument("--skip-unknown", action="store_true", help="drop prime characters outside the vocabulary")
    p.add_argument("--threads", type=int, default=0, help="cores to use (default: every usable core, or CHARRNN_THREADS)")
    p.add_argument("--novelty", action="store_true",
                   help="say on stderr how much of each sample occurs in the run's training text")
    add_backend_flags(p)

    def run(a: argparse.Namespace) -> int:
        import numpy as np

        from ..data.text import read_text
        from ..sample import check_memory, default_prime, encode_prime, generate, generate_many

        cfg = SampleConfig(a.length, a.temperature, a.top_k, a.top_p, a.greedy)
        cfg.validate()
        if a.novelty:
            needs_run(a.run, "--novelty compares with the run's training text")
        c = load_for_inference(a.run)
        model = inference_model(c.model, a.backend, a.device)
        vocab = c.vocab
        # a bytes model takes the command line's bytes as they were given: Python holds the ones
        # that are not text as surrogate escapes, which os.fsencode turns back into those bytes
        given = os.fsencode if vocab.encoding == "bytes" else (lambda text: text)
        stop = None
        if a.stop is not None:
            from ..api import stop_ids

            if a.stop == "":
                raise ConfigError("--stop must not be empty")
            stop = stop_ids(vocab, given(a.stop))
        apply_threads(a.threads)
        seed = a.seed if a.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        rng = np.random.default_rng(seed)
        prime = None if a.prime is None else given(a.prime)
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
        check_memory(c.model, a.num_samples, a.length, prime_ids.size)  # refused before any work
        index = _novelty_index(c) if a.novelty else None  # refused before anything is generated
        if a.seed is None and not a.greedy:  # printed once the input is known good, so errors stay one line
            print(f"charrnn sample: seed {seed} (pass --seed {seed} to repeat this sample)", file=sys.stderr)
        if vocab.encoding != "bytes":
            escape_what_stdout_cannot_show("sample", vocab.symbols, "every character of this model")
        out = sys.stdout.buffer if vocab.encoding == "bytes" else sys.stdout
        interactive = sys.stdout.isatty()

        def emit(ids) -> None:
            text = vocab.decode_bytes(ids) if vocab.encoding == "bytes" else vocab.decode(ids)
            out.write(text)
            if interactive:
                out.flush()

        def stream(t: int) -> None:
            emit(np.array([t]))

        # the first sample is shown as it grows; several are made together (generate_many) and
        # the others follow once made
        if shown.size:
            emit(shown)
        if a.num_samples == 1:
            made = [generate(model, prime_ids, cfg, rng, on_token=stream, stop=stop)]
        else:
            made = generate_many(model, prime_ids, a.num_samples, cfg, rng, on_token=stream, stop=stop)
        for i, ids in enumerate(made):
            if i:
                emit_sep = "\n" if stop is not None else "\n\n"  # items one per line
                out.write(emit_sep.encode() if vocab.encoding == "bytes" else emit_sep)
                emit(np.concatenate([shown, ids]))
            if index is not None:
                out.flush()
                print(f"\ncharrnn sample: novelty: {index.novelty(ids).summary()}", file=sys.stderr)
        out.write(b"\n" if vocab.encoding == "bytes" else "\n")
        out.flush()
        return 0

    return run


def _novelty_index(c):
    """The run's training text indexed for `--novelty` (its first MAX_CHARS characters)."""
    from ..diagnostics.novelty import MAX_CHARS, NoveltyIndex
    from ..io.rundir import run_text

    text = run_text(c, "--novelty needs the run directory of the model")
    if len(text.train) > MAX_CHARS:
        print(f"charrnn sample: novelty is measured against the first {MAX_CHARS:,} of {len(text.train):,} "
              "training characters", file=sys.stderr)
    if c.vocab.encoding == "bytes":  # words and lines of binary data: one character per byte
        return NoveltyIndex(text.train, lambda ids: c.vocab.decode_bytes(ids).decode("latin-1"))
    return NoveltyIndex(text.train, c.vocab.decode)

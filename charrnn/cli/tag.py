"""charrnn tag train | eval | predict: a tag per character, optionally with the output-to-hidden
recurrence R: the previous tag fed back (--output-recurrence)."""

from __future__ import annotations

import argparse

from ._common import command
from ._tasks import add_task_commands


@command("tag", "tag every character (JSON Lines text + tags), optionally with output recurrence: train | eval | predict",
         outputs=(), run_dirs=("train --out",),
         reads={"train --resume": "run", "eval RUN": "run", "predict RUN": "run"})
def _tag(p: argparse.ArgumentParser):
    return add_task_commands(p, "tag")

"""charrnn classify train | eval | predict: one label per text (a many-to-one network: only the last output counts)."""

from __future__ import annotations

import argparse

from ._common import command
from ._tasks import add_task_commands


@command("classify", "classify whole texts (TSV text<TAB>label): train | eval | predict",
         outputs=(), run_dirs=("train --out",),
         reads={"train --resume": "run", "eval RUN": "run", "predict RUN": "run"})
def _classify(p: argparse.ArgumentParser):
    return add_task_commands(p, "classify")

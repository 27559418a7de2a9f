"""charrnn models: the models that ship with charrnn, usable by name wherever a model is read."""

from __future__ import annotations

import argparse
import json
import math

from ._common import command


@command("models", "list the models shipped with charrnn (use one by name: charrnn sample shakespeare)", outputs=())
def _models(p: argparse.ArgumentParser):
    p.add_argument("--json", action="store_true", help="print one JSON list")

    def run(a: argparse.Namespace) -> int:
        from ..pretrained import folder, shipped

        models = sorted(shipped().values(), key=lambda m: m.name)
        if a.json:
            print(json.dumps([{"name": m.name, "file": str(folder() / m.file), "bytes": m.bytes,
                               "parameters": m.parameters, "data": m.data, "licence": m.licence,
                               "val_nats_per_char": m.val_nats_per_char,
                               "val_bits_per_char": m.val_nats_per_char / math.log(2),
                               "command": m.command, "time_budget_s": m.time_budget_s, "threads": m.threads,
                               "steps": m.steps} for m in models], indent=1))
            return 0
        for m in models:
            print(f"{m.name}: {m.bytes / 1e6:.2f} MB, {m.parameters:,} parameters; validation "
                  f"{m.val_nats_per_char:.3f} nats/char ({m.val_nats_per_char / math.log(2):.3f} bits)")
            print(f"    data: {m.data}; licence: {m.licence}")
            print(f"    trained: {m.command} ({m.steps:,} steps, {m.time_budget_s:g} s, {m.threads} thread(s))")
        if not models:
            print("no shipped models")
        return 0

    return run

"""The models shipped with charrnn: making them from training runs, and what fine-tuning one buys.

    python benchmarks/pretrained.py ship RUN NAME --data TEXT --licence TEXT --command TEXT \
        --budget SECONDS --threads N
    python benchmarks/pretrained.py finetune TEXT_FILE --from NAME [--budget 60] [--out runs/finetune]

`ship` writes RUN's best model as charrnn/pretrained/NAME.safetensors, a read-only model file
(parameters, structure, vocabulary: no optimizer state, no training state), and its entry in
charrnn/pretrained/models.json: size, sha256, the data and its licence, the training command, budget
and threads, the score on the run's whole validation split (nats/char, every character once, as
`charrnn eval` scores it) and a held-out passage (the split's first PASSAGE_CHARS characters) with
the model's score on it, which the tests check. It also prints what storing the weights in float16
would cost on the validation split, the figure that decides the storage (float16 only if it costs at
most 0.002 nats/char).

`finetune` trains two runs on TEXT_FILE at the same time, one thread each, for the same budget
(the trainer's --time-budget): one from scratch with the defaults, one from the shipped model NAME
(--init-from NAME --extend-vocab), and prints each run's validation score (the last validation
scores the whole held-out last tenth of the text).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSAGE_CHARS = 2000


def ship(a: argparse.Namespace) -> None:
    from charrnn.api import LanguageModel
    from charrnn.evaluate.lm import evaluate_ids
    from charrnn.io import formats
    from charrnn.io.arrays import write_arrays
    from charrnn.io.checkpoint import load_checkpoint
    from charrnn.io.rundir import run_text
    from charrnn.model.params import count_parameters
    from charrnn.pretrained import FOLDER, INDEX, INDEX_FORMAT, INDEX_VERSION

    c = load_checkpoint(a.run)
    m = c.model
    out = FOLDER / f"{a.name}.safetensors"
    meta = {"format": formats.MODEL, "version": formats.VERSIONS[formats.MODEL], "model": m.config,
            "vocab": c.vocab.to_json()}
    write_arrays(out, m.params, meta)
    val = np.asarray(run_text(c).val)
    score = evaluate_ids(m, val).nats_per_char
    passage = c.vocab.decode(val[:PASSAGE_CHARS])
    shipped = LanguageModel.load(out)
    passage_score = shipped.score(passage).nats_per_char
    half = {k: v.astype(np.float16).astype(v.dtype) for k, v in m.params.items()}
    m16 = type(m)(m.vocab_size, m.hidden_size, m.num_layers, m.dtype, cell=m.cell, params=half)
    score16 = evaluate_ids(m16, val).nats_per_char
    data = out.read_bytes()
    entry = {
        "name": a.name, "file": out.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "parameters": count_parameters(m.vocab_size, m.hidden_size, m.num_layers, m.cell),
        "data": a.data, "licence": a.licence, "val_nats_per_char": round(score, 4),
        "passage": passage, "passage_nats_per_char": round(passage_score, 4),
        "command": a.command, "time_budget_s": a.budget, "threads": a.threads, "steps": int(c.state["step"]),
    }
    index = FOLDER / INDEX
    doc = json.loads(index.read_text()) if index.exists() else {"format": INDEX_FORMAT, "version": INDEX_VERSION,
                                                               "models": []}
    doc["models"] = sorted([e for e in doc["models"] if e["name"] != a.name] + [entry], key=lambda e: e["name"])
    index.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in entry.items() if k != "passage"} | {
        "model": repr(m), "val_chars": int(val.size), "val_nats_per_char_float16": round(score16, 5),
        "float16_cost": round(score16 - score, 5), "bits_per_char": round(score / math.log(2), 4)}, indent=1))


def finetune(a: argparse.Namespace) -> None:
    common = ["--time-budget", str(a.budget), "--threads", "1", "--quiet", "--force"]
    sides = {"scratch": [], f"from-{a.source}": ["--init-from", a.source, "--extend-vocab"]}
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def run(name: str) -> dict:
        d = a.out / name
        cmd = [sys.executable, "-m", "charrnn", "train", str(a.text), "--out", str(d), *common, *sides[name]]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
        vals = [r["val_nats_per_char"] for r in records if r.get("val_nats_per_char") is not None]
        return {"run": name, "command": "charrnn " + " ".join(cmd[3:]), "status": proc.returncode,
                "final_val_nats_per_char": vals[-1] if vals else None, "best_val": min(vals) if vals else None,
                "steps": records[-1].get("step") if records else None, "stderr": proc.stderr[-300:]}

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, sides))
    print(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("ship")
    s.add_argument("run", type=Path)
    s.add_argument("name")
    s.add_argument("--data", required=True)
    s.add_argument("--licence", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--budget", type=float, required=True)
    s.add_argument("--threads", type=int, required=True)
    f = sub.add_parser("finetune")
    f.add_argument("text", type=Path)
    f.add_argument("--from", dest="source", required=True)
    f.add_argument("--budget", type=float, default=60.0)
    f.add_argument("--out", type=Path, default=Path("runs/finetune"))
    a = ap.parse_args()
    {"ship": ship, "finetune": finetune}[a.what](a)


if __name__ == "__main__":
    main()

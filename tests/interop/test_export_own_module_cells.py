"""The PyTorch export of cells that no torch.nn class computes (minGRU, minLSTM): the README's
few lines of PyTorch, run as printed on the exported file, give the loss `charrnn eval` reports."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from charrnn.core import CELLS
from charrnn.io.checkpoint import load_checkpoint

from conftest import optional, run_cli

torch = optional("torch")
pytestmark = pytest.mark.torch

OWN = [name for name, m in CELLS.items() if m.TORCH_MODULE is not None and ":" in m.TORCH_MODULE]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_lines():
    """The README's Python block that defines min_cell_logits, exactly as printed."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if "def min_cell_logits" in b]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("cell", OWN)
def test_the_readme_lines_compute_the_exported_models_logits(cell, tmp_path, sonnet_file):
    run = tmp_path / "run"
    proc = run_cli("train", sonnet_file, "--out", run, "--cell", cell, "--num-layers", "2", "--hidden-size", "12",
                   "--seq-len", "12", "--batch-size", "4", "--steps", "20", "--sample-every", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    ev = run_cli("eval", run, sonnet_file, "--json")
    assert ev.returncode == 0, ev.stderr
    nats = json.loads(ev.stdout)["nats_per_char"]
    out = tmp_path / "model.safetensors"
    assert run_cli("export", run, "--format", "torch", out).returncode == 0
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = load_file(out)
    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["model"])
    assert cfg["cell"] == cell and "README" in meta["torch_modules"]
    assert sorted(k for k in state if k.startswith("rnn.")) == sorted(
        f"rnn.{n}_l{k}" for k in range(2) for n in ("weight_ih", "bias_ih"))
    namespace = {"torch": torch}
    exec(readme_lines(), namespace)
    vocab = load_checkpoint(run).vocab
    ids = torch.from_numpy(vocab.encode(sonnet_file.read_text()).astype(np.int64))
    with torch.no_grad():
        logits = namespace["min_cell_logits"](state, cfg, ids[:-1])
        want = torch.nn.functional.cross_entropy(logits, ids[1:]).item()
    assert abs(want - nats) <= 1e-4 * nats

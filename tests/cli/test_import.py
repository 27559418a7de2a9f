"""`charrnn import` writes a run directory as training does: under the run's lock (a run being
trained is refused and left alone), and with --force it replaces the whole run, so that no file of
the old one (latest, config, metrics, tokens, samples, report, curves) describes another model;
on a full disk the old run stays whole."""

import shutil

import numpy as np
import pytest

from conftest import SONNET, charrnn, error_line, fill_disk, listing
from charrnn.errors import CharRNNError
from charrnn.io.checkpoint import BEST, load_checkpoint
from charrnn.io.lock import RunLock
from charrnn.io.layout import COMMAND_OUTPUTS, RUN_FILES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own, on NumPy 2


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished tiny run, and a Keras model of another cell over its vocabulary."""
    from charrnn import CharRNN
    from charrnn.interop.keras import export_keras, import_keras

    try:
        import_keras()
    except CharRNNError as e:
        pytest.skip(f"import needs Keras: {e}")
    base = tmp_path_factory.mktemp("import")
    (base / "text.txt").write_text(SONNET * 4)
    proc = charrnn("train", base / "text.txt", "--out", base / "run", "--hidden-size", "8", "--seq-len", "16",
                   "--batch-size", "4", "--steps", "4", "--eval-every", "2", "--sample-every", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    vocab = load_checkpoint(base / "run").vocab
    model = CharRNN(vocab.size, 6, 1, cell="gru", seed=3)
    export_keras(model, vocab, base / "gru.keras")
    return base, model


def import_into(made, run, *flags):
    base, _ = made
    return charrnn("import", base / "gru.keras", "--vocab", base / "gru.vocab.json", "--out", run, *flags)


def test_a_run_being_trained_is_refused_and_left_alone(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made[0] / "run", run)
    with RunLock(run):
        before = listing(run)
        line = error_line(import_into(made, run, "--force"), "import")
        assert "is being written by" in line and listing(run) == before


def test_force_replaces_every_file_of_an_idle_run(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made[0] / "run", run)
    for name in COMMAND_OUTPUTS:
        (run / name).write_text("about the old model")
    (run / ".latest.safetensors.tmp999999999").write_bytes(b"left by a killed training")
    (run / "notes.txt").write_text("the user's own")
    before = listing(run)
    assert "already holds a run: use --force" in error_line(import_into(made, run), "import")
    assert listing(run) == before
    proc = import_into(made, run, "--force")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in run.iterdir()) == [BEST, "notes.txt"]
    assert not set(RUN_FILES + COMMAND_OUTPUTS) - {BEST} & {p.name for p in run.iterdir()}
    c = load_checkpoint(run)
    assert c.model.cell == "gru" and c.model.hidden_size == 6
    assert all(np.allclose(c.model.params[k], v, atol=1e-6) for k, v in made[1].params.items())


def test_a_full_disk_leaves_the_old_run_whole_and_a_new_one_nowhere(made, small_disk):
    run = small_disk / "run"
    shutil.copytree(made[0] / "run", run)
    fill_disk(small_disk)
    before = listing(run)
    assert "No space left on device" in error_line(import_into(made, run, "--force"), "import")
    assert listing(run) == before
    top = listing(small_disk)
    assert "No space left on device" in error_line(import_into(made, small_disk / "new" / "run"), "import")
    assert listing(small_disk) == top

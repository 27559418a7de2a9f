"""Bad input and faults: one clear line on stderr, exit status 2 (3 when training gives up on a
diverging run), no traceback, and nothing left half-written.

Every case goes through the command line's `main`: in a real `python -m charrnn` process where the
process matters (training, resuming, every command on a damaged run), and otherwise in this
process (`charrnn(...)`), which runs the same code without an interpreter's start-up and fails the
test on any exception that would have been a traceback. Faults that need something to break
inside the process (a full disk, a NaN on a chosen step) are in-process too.
"""

import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from charrnn import CharRNN, cli
from charrnn.io import writer as serialization
from charrnn.io.checkpoint import BEST, CONFIG, LATEST, METRICS, TOKENS, load_checkpoint
from charrnn.settings import TrainConfig
from charrnn.errors import CheckpointError
from charrnn.io.arrays import read_arrays, write_arrays
from charrnn.train import Diverged, Trainer

from conftest import SONNET, HalfWrittenFile, charrnn, error_line, rewrite_metadata, run_cli, snapshot

TINY = ["--hidden-size", "16", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
        "--sample-every", "0", "--lr-schedule", "constant"]


def files_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small finished run, copied by the tests that change it."""
    base = tmp_path_factory.mktemp("trained")
    text = base / "sonnet.txt"
    text.write_text(SONNET * 6)
    run = base / "run"
    proc = run_cli("train", text, "--out", run, "--quiet", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run


@pytest.fixture
def run_copy(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


# ------------------------------------------------------------------------------------------------
# the training text


def refuse_to_train(tmp_path, text, *flags):
    """Train on `text` into a fresh --out; the command must fail and create nothing."""
    before = files_under(tmp_path)
    proc = charrnn("train", text, "--out", tmp_path / "out" / "run", *TINY, *flags)
    line = error_line(proc, "train")
    assert files_under(tmp_path) == before, "a refused run left files behind"
    return line


def test_missing_text_file(tmp_path):
    line = refuse_to_train(tmp_path, tmp_path / "nope.txt")
    assert "nope.txt: no such file" in line
    # the real command line says exactly the same
    assert error_line(run_cli("train", tmp_path / "nope.txt", "--out", tmp_path / "run", *TINY), "train") == line
    assert not (tmp_path / "run").exists()


def test_text_is_an_empty_directory(tmp_path):
    (tmp_path / "adir").mkdir()
    assert "adir holds no file to train on" in refuse_to_train(tmp_path, tmp_path / "adir")


def test_empty_text(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert "empty.txt is empty" in refuse_to_train(tmp_path, tmp_path / "empty.txt")


@pytest.mark.parametrize("content", ["a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_one_character_or_one_symbol_text(tmp_path, content):
    (tmp_path / "one.txt").write_text(content)
    line = refuse_to_train(tmp_path, tmp_path / "one.txt")
    assert "only one distinct symbol ('a'" in line and "at least 2" in line


@pytest.mark.parametrize("data, offset", [(b"abc\xffdef", 3), (b"x" * 5000 + "é".encode() + b"\xc3", 5002)])
def test_invalid_utf8_names_the_byte_offset_and_the_way_out(tmp_path, data, offset):
    (tmp_path / "bad.txt").write_bytes(data)
    line = refuse_to_train(tmp_path, tmp_path / "bad.txt")
    assert f"byte offset {offset}" in line and "--encoding bytes" in line


def test_binary_file_is_refused_as_text_and_trains_as_bytes(tmp_path):
    blob = bytes(np.random.default_rng(1).integers(0, 256, size=3000, dtype=np.uint8))
    (tmp_path / "blob.bin").write_bytes(blob)
    line = refuse_to_train(tmp_path, tmp_path / "blob.bin")
    assert "not valid UTF-8" in line and "--encoding bytes" in line
    proc = charrnn("train", tmp_path / "blob.bin", "--encoding", "bytes", "--out", tmp_path / "run", "--quiet", *TINY)
    assert proc.returncode == 0, proc.stderr


def test_text_shorter_than_one_window_trains_with_a_smaller_window_and_says_so(tmp_path):
    (tmp_path / "short.txt").write_text("abcdefgh")
    run = tmp_path / "run"
    proc = run_cli("train", tmp_path / "short.txt", "--out", run, *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "seq_len 16 -> 7" in proc.stderr and "batch_size 4 -> 1" in proc.stderr
    assert "without validation" in proc.stderr  # 8 characters cannot spare 10% for validation
    assert json.loads((run / CONFIG).read_text())["val_frac"] == 0.0
    c = load_checkpoint(run / LATEST)
    assert c.state["seq_len"] == 7 and c.state["step"] == 4
    # two characters are the least that can train: one input, one target
    (tmp_path / "two.txt").write_text("ab")
    assert charrnn("train", tmp_path / "two.txt", "--out", tmp_path / "two", "--quiet", *TINY).returncode == 0


@pytest.mark.parametrize("flags, expect", [
    (["--hidden-size", "-1"], "--hidden-size"),
    (["--batch-size", "0"], "--batch-size"),
    (["--seq-len", "-5"], "--seq-len"),
    (["--steps", "-1"], "--steps"),
    (["--num-layers", "0"], "--num-layers"),
    (["--hidden-size", "abc"], "--hidden-size"),
    (["--lr", "nan"], "--lr"),
    (["--hidden-size", "5000000"], "GiB"),  # a model that would not fit: refused with the estimate
    (["--hidden-size", "40000", "--batch-size", "64"], "GiB"),  # and a batch that would not (with a wide model)
    (["--num-layers", "1000000000", "--hidden-size", "1"], "GiB"),
])
def test_zero_negative_or_absurd_sizes(tmp_path, sonnet_file, flags, expect):
    line = refuse_to_train(tmp_path, sonnet_file, *flags)
    assert expect in line
    if expect == "GiB":
        assert "need about" in line and "lower --hidden-size" in line


def test_an_existing_run_is_refused_and_kept_unless_forced(tmp_path, sonnet_file, unicode_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--quiet", *TINY).returncode == 0
    before = snapshot(run)
    line = error_line(run_cli("train", sonnet_file, "--out", run, *TINY), "train")
    assert "already holds a run" in line and "--resume" in line and "--force" in line
    assert snapshot(run) == before
    # --force with a text that cannot be used refuses before anything of the old run is removed
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    error_line(run_cli("train", tmp_path / "bad.txt", "--out", run, "--force", *TINY), "train")
    assert snapshot(run) == before
    proc = run_cli("train", unicode_file, "--out", run, "--force", "--quiet", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "東" in load_checkpoint(run).vocab.symbols


def test_out_is_a_file(tmp_path, sonnet_file):
    (tmp_path / "afile").write_text("x")
    assert "is not a directory" in error_line(charrnn("train", sonnet_file, "--out", tmp_path / "afile", *TINY), "train")


# ------------------------------------------------------------------------------------------------
# prime and evaluation texts


def test_prime_outside_the_vocabulary(trained):
    line = error_line(run_cli("sample", trained, "--prime", "Zebra€", "--length", "5"), "sample")
    assert "'Z'" in line and "€" in line and "vocabulary" in line


def test_prime_file_problems(trained, tmp_path):
    assert "no such file" in error_line(charrnn("sample", trained, "--prime-file", tmp_path / "nope"), "sample")
    (tmp_path / "bad.txt").write_bytes(b"So\xff")
    assert "byte offset 2" in error_line(charrnn("sample", trained, "--prime-file", tmp_path / "bad.txt"), "sample")


def test_evaluation_text_outside_the_vocabulary(trained, tmp_path):
    (tmp_path / "alien.txt").write_text("ZZZ123###")
    line = error_line(run_cli("eval", trained, tmp_path / "alien.txt"), "eval")
    assert "none of its characters are in the model's vocabulary" in line
    (tmp_path / "empty.txt").write_text("")
    assert "is empty" in error_line(charrnn("eval", trained, tmp_path / "empty.txt"), "eval")
    # a partly unknown text is scored without the unknown characters, and says which they were
    (tmp_path / "mixed.txt").write_text("Shall I compare thee? Zzz")
    proc = charrnn("eval", trained, tmp_path / "mixed.txt")
    assert proc.returncode == 0 and "'Z'" in proc.stderr and "not scored" in proc.stderr


# ------------------------------------------------------------------------------------------------
# damaged, foreign and hostile checkpoints


def damage(kind: str, src: Path, dst: Path) -> None:
    blob = src.read_bytes()
    if kind == "truncated":
        dst.write_bytes(blob[: len(blob) // 2])
    elif kind == "empty":
        dst.write_bytes(b"")
    elif kind == "foreign":
        dst.write_text(SONNET)
    elif kind == "random":
        dst.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8)))
    elif kind == "other-safetensors":
        from safetensors.numpy import save_file

        save_file({"weight": np.zeros((2, 2), np.float32)}, str(dst))
    elif kind == "flipped-header":
        b = bytearray(blob)
        b[20] ^= 0xFF
        dst.write_bytes(bytes(b))
    elif kind == "newer-version":
        dst.write_bytes(blob)
        rewrite_metadata(dst, lambda m: m.update(version=99))
    elif kind == "nan-parameter":
        arrays, meta = read_arrays(src)
        arrays["head.bias"] = arrays["head.bias"].copy()
        arrays["head.bias"][1] = np.nan
        write_arrays(dst, arrays, meta)
    elif kind == "inf-hidden-state":
        arrays, meta = read_arrays(src)
        arrays["state/hidden"] = np.full_like(arrays["state/hidden"], np.inf)
        write_arrays(dst, arrays, meta)
    elif kind == "huge-shape":
        dst.write_bytes(blob)
        rewrite_metadata(dst, lambda m: m["model"].update(hidden_size=10**9))
    else:
        raise AssertionError(kind)


EXPECT = {
    "truncated": "not a readable checkpoint",
    "empty": "empty or truncated file",
    "foreign": "not a readable checkpoint",
    "random": "not a readable checkpoint",
    "other-safetensors": "not a charrnn file",
    "flipped-header": "not a readable checkpoint",
    "newer-version": "written by a newer charrnn",
    "nan-parameter": "head.bias holds NaN or infinite values",
    "inf-hidden-state": "hidden state holds NaN or infinite values",
    "huge-shape": "implausibly large",
}


@pytest.mark.parametrize("kind", list(EXPECT))
def test_bad_checkpoints_give_one_clear_line(trained, tmp_path, kind):
    bad = tmp_path / "bad.safetensors"
    damage(kind, trained / LATEST, bad)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    line = error_line(charrnn("sample", bad, "--length", "5", "--seed", "0"), "sample")
    assert str(bad) in line and EXPECT[kind] in line


@pytest.mark.parametrize("kind", ["truncated", "newer-version", "nan-parameter"])
def test_every_command_refuses_a_bad_checkpoint_and_resume_keeps_the_run(run_copy, tmp_path, sonnet_file, kind):
    damage(kind, run_copy / LATEST, tmp_path / "bad.safetensors")
    shutil.copy(tmp_path / "bad.safetensors", run_copy / LATEST)
    (run_copy / BEST).unlink()  # so that a run directory resolves to the damaged file
    before = snapshot(run_copy)
    assert EXPECT[kind] in error_line(run_cli("eval", run_copy, sonnet_file), "eval")
    assert EXPECT[kind] in error_line(run_cli("export", run_copy, tmp_path / "out.safetensors"), "export")
    assert not (tmp_path / "out.safetensors").exists()
    assert EXPECT[kind] in error_line(run_cli("train", "--resume", run_copy, "--steps", "8"), "train")
    assert snapshot(run_copy) == before


def test_nan_in_the_optimizer_state_stops_a_resume(run_copy):
    arrays, meta = read_arrays(run_copy / LATEST)
    name = next(k for k in arrays if k.startswith("optim/"))
    arrays[name] = np.full_like(arrays[name], np.nan)
    write_arrays(run_copy / LATEST, arrays, meta)
    line = error_line(charrnn("train", "--resume", run_copy, "--steps", "8"), "train")
    assert "NaN or infinite" in line


def test_resume_problems(run_copy, tmp_path):
    assert "no checkpoint in this directory" in error_line(charrnn("train", "--resume", tmp_path), "train")
    assert "no such run directory" in error_line(charrnn("train", "--resume", tmp_path / "nope"), "train")
    model = tmp_path / "model.safetensors"
    CharRNN(5, 4).save(model)
    assert "bare model file" in error_line(charrnn("train", "--resume", model), "train")
    # a checkpoint other than the latest continues only in a new directory (test_failures2)
    line = error_line(charrnn("train", "--resume", run_copy / BEST), "train")
    assert "give --out NEW_DIR" in line


def test_resume_on_a_text_with_a_different_vocabulary(run_copy, tmp_path):
    before = snapshot(run_copy)
    other = tmp_path / "other.txt"
    other.write_text(SONNET.replace("S", "Ω") * 6)  # one new symbol
    line = error_line(run_cli("train", other, "--resume", run_copy, "--steps", "8"), "train")
    assert "'Ω'" in line and "vocabulary" in line
    # same symbols, same length, different text: caught too, not trained on
    same_length = tmp_path / "same.txt"
    same_length.write_text((SONNET * 6)[::-1])
    line = error_line(charrnn("train", same_length, "--resume", run_copy, "--steps", "8"), "train")
    assert "not the text this run was trained on" in line
    assert snapshot(run_copy) == before  # tokens.bin above all
    proc = run_cli("train", "--resume", run_copy, "--steps", "6", "--quiet")
    assert proc.returncode == 0, proc.stderr


def test_resume_after_the_text_moved_and_tokens_were_deleted(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--quiet", *TINY).returncode == 0
    (run / TOKENS).unlink()
    sonnet_file.rename(tmp_path / "moved.txt")
    line = error_line(charrnn("train", "--resume", run, "--steps", "6"), "train")
    assert "sonnet.txt: no such file" in line
    proc = run_cli("train", tmp_path / "moved.txt", "--resume", run, "--steps", "6", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (run / TOKENS).is_file() and load_checkpoint(run / LATEST).state["step"] == 6


def test_export_to_a_missing_directory_writes_nothing(trained, tmp_path):
    line = error_line(charrnn("export", trained, tmp_path / "no" / "such" / "dir.safetensors"), "export")
    assert "cannot write" in line and not (tmp_path / "no").exists()


# ------------------------------------------------------------------------------------------------
# in-process faults: a full disk, Ctrl-C during set-up


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _FullDisk(f):
    """A file whose write stores half the data and then fails as a full disk does."""
    return HalfWrittenFile(f, _disk_full)


def fill_disk_after(monkeypatch, module, writes_ok: int, match: str):
    """From the (writes_ok + 1)-th file opened for writing whose name contains `match`, fail."""
    count = {"n": 0}

    def fake_open(file, mode="r", *args, **kwargs):
        f = open(file, mode, *args, **kwargs)
        if "w" in mode or "a" in mode:
            if match in str(file):
                count["n"] += 1
                if count["n"] > writes_ok:
                    return _FullDisk(f)
        return f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_disk_full_during_a_checkpoint_keeps_the_last_one(tmp_path, sonnet_file, monkeypatch, capsys):
    run = tmp_path / "run"
    # the set-up save (step 0) and the step-2 save succeed, the step-4 save hits a full disk
    fill_disk_after(monkeypatch, serialization, 2, LATEST)
    status = cli.main(["train", str(sonnet_file), "--out", str(run), "--quiet", *TINY, "--steps", "6"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("charrnn train: error: cannot write") and "No space left on device" in err
    monkeypatch.undo()
    c = load_checkpoint(run / LATEST)
    assert c.state["step"] == 2 and all(np.isfinite(p).all() for p in c.model.params.values())
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name or p.name.endswith(".new")]
    # and the run resumes from that checkpoint once there is space again
    assert cli.main(["train", "--resume", str(run), "--steps", "6", "--quiet"]) == 0
    assert load_checkpoint(run / LATEST).state["step"] == 6


def test_disk_full_while_logging_metrics(tmp_path, sonnet_file, monkeypatch, capsys):
    from charrnn.train import loop as train_module

    run = tmp_path / "run"
    fill_disk_after(monkeypatch, train_module, 0, METRICS)
    status = cli.main(["train", str(sonnet_file), "--out", str(run), "--quiet", *TINY, "--log-every", "1"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "No space left on device" in err
    monkeypatch.undo()
    assert load_checkpoint(run / LATEST).state["step"] == 0  # the set-up checkpoint, intact


def test_disk_full_while_encoding_the_text_leaves_nothing(tmp_path, sonnet_file, monkeypatch, capsys):
    import os

    from charrnn.data import text as data

    real = os.fdopen

    def full(fd, mode="r", *args, **kwargs):
        return _FullDisk(real(fd, mode, *args, **kwargs)) if "w" in mode else real(fd, mode, *args, **kwargs)

    monkeypatch.setattr(data.os, "fdopen", full)
    status = cli.main(["train", str(sonnet_file), "--out", str(tmp_path / "a" / "run"), *TINY])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert not (tmp_path / "a").exists()


def test_ctrl_c_during_set_up_leaves_nothing(tmp_path, sonnet_file, monkeypatch, capsys):
    from charrnn.train import lm as train_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "make_optimizer", interrupted)
    status = cli.main(["train", str(sonnet_file), "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err
    assert status == 130 and err == "charrnn train: interrupted\n"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# divergence: a NaN or infinity never reaches the parameters


def tiny_trainer(text: Path, run: Path, **changes) -> tuple[Trainer, io.StringIO]:
    cfg = TrainConfig(text=str(text), hidden_size=16, seq_len=16, batch_size=4, steps=20, eval_every=4,
                      sample_every=0, lr_schedule="constant", log_every=1)
    out = io.StringIO()
    return Trainer(cfg.replace(**changes), run, stream=out, progress=False), out


def watch_parameters(trainer: Trainer) -> list:
    """Record, after every optimizer step, whether any parameter is non-finite."""
    seen = []
    real = trainer.optimizer.step

    def step(grads):
        real(grads)
        seen.append(all(np.isfinite(p).all() for p in trainer.model.params.values()))

    trainer.optimizer.step = step
    return seen


def test_nan_loss_and_gradient_are_rolled_back_and_training_goes_on(tmp_path, sonnet_file, monkeypatch):
    trainer, out = tiny_trainer(sonnet_file, tmp_path / "run")
    real = CharRNN.loss_and_grads
    calls = {"n": 0}

    def flaky(self, inputs, targets, h0=None):
        calls["n"] += 1
        loss, grads, h = real(self, inputs, targets, h0)
        if calls["n"] == 6:
            loss = float("nan")
        if calls["n"] == 11:
            grads["rnn.weight_hh_l0"][0, 0] = np.inf
        return loss, grads, h

    monkeypatch.setattr(CharRNN, "loss_and_grads", flaky)
    finite = watch_parameters(trainer)
    result = trainer.run()
    assert result.step == 20 and all(finite)
    log = out.getvalue()
    assert "loss nan at step 6: restored the last good checkpoint (step 4) and halved the learning rate" in log
    assert "gradient norm inf" in log and "(x0.25)" in log and "recovery 2 of 5" in log
    c = load_checkpoint(tmp_path / "run" / LATEST)
    assert c.state["divergences"] == 2 and c.state["lr_scale"] == 0.25 and c.state["step"] == 20
    assert all(np.isfinite(p).all() for p in c.model.params.values())
    # every step is trained from the restored data position: 20 steps, 2 failed calls, and
    assert calls["n"] == 20 + 2 + 1  # step 5 was lost to the first roll-back


def test_overflow_in_the_update_is_rolled_back_too(tmp_path, sonnet_file):
    # finite loss and gradients, but a rate beyond float32's range takes the weights past it
    trainer, out = tiny_trainer(sonnet_file, tmp_path / "run", optimizer="sgd", lr=1e39, clip_norm=0.0,
                                max_divergences=1)
    finite = watch_parameters(trainer)
    with pytest.raises(Diverged, match="overflowed"):
        trainer.run()
    assert "a parameter overflowed in the update at step 1" in out.getvalue()
    assert finite.count(False) == 2  # each one was rolled back before anything else saw it
    c = load_checkpoint(tmp_path / "run" / LATEST)
    assert c.state["step"] == 0 and all(np.isfinite(p).all() for p in c.model.params.values())


def test_divergence_gives_up_with_exit_3_and_the_last_good_checkpoint(tmp_path, sonnet_file):
    run = tmp_path / "run"
    # 1e300 is a valid float, but no float32 weight survives an update at that rate, or at half or a quarter of it
    proc = run_cli("train", sonnet_file, "--out", run, *TINY, "--steps", "50", "--optimizer", "sgd", "--lr", "1e300",
                   "--clip-norm", "0", "--max-divergences", "2", "--quiet")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn train: error: training diverged")
    assert "3 times" in lines[0] and str(run / LATEST) in lines[0] and "--lr" in lines[0]
    c = load_checkpoint(run / LATEST)
    assert all(np.isfinite(p).all() for p in c.model.params.values())
    assert c.state["divergences"] == 2 and c.state["lr_scale"] == 0.25


def test_eval_of_too_little_text_and_of_a_huge_loss(tmp_path, sonnet_file):
    """Fewer than 2 scorable characters is a one-line error, never NaN; a loss past exp's range
    prints an infinite perplexity and strict JSON (null), never a traceback."""
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, *TINY).returncode == 0
    one = tmp_path / "one.txt"
    one.write_text("S")
    for args in ([], ["--json"]):
        proc = run_cli("eval", run, one, *args)
        assert proc.returncode == 2 and "nothing to score" in proc.stderr and proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1
    ckpt_path = run / "best.safetensors"
    arrays, meta = read_arrays(ckpt_path)
    arrays["head.bias"] = np.full_like(arrays["head.bias"], -1e4)
    arrays["head.bias"][0] = 1e4  # every other character gets ~2e4 nats
    write_arrays(ckpt_path, arrays, meta)
    proc = run_cli("eval", ckpt_path, sonnet_file, "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["perplexity"] is None and doc["nats_per_char"] > 1000
    proc = run_cli("eval", ckpt_path, sonnet_file)
    assert proc.returncode == 0 and "perplexity inf" in proc.stdout


@pytest.mark.parametrize("where", [LATEST, METRICS])
def test_disk_full_mid_run_of_a_classifier_or_tagger_is_one_line(tmp_path, monkeypatch, capsys, where):
    """The one loop's handling, for the task objectives too: one line, the last checkpoint
    intact, and the run resumes once there is space again."""
    from charrnn.train import loop as train_module
    from charrnn.io import task_checkpoint as task_checkpoint

    data = tmp_path / "c.tsv"
    data.write_text("".join(f"{w}\t{w[0]}\n" for w in ("ab", "ba", "abba", "baab", "aab", "bba") * 10))
    run = tmp_path / "run"
    if where == LATEST:  # the set-up checkpoint and the step-2 one succeed, the step-4 one hits a full disk
        fill_disk_after(monkeypatch, serialization, 2, LATEST)
    else:
        fill_disk_after(monkeypatch, train_module, 0, METRICS)
    status = cli.main(["classify", "train", str(data), "--out", str(run), "--quiet", "--hidden-size", "4",
                       "--steps", "6", "--eval-every", "2", "--log-every", "1"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("charrnn classify: error: cannot write") and "No space left on device" in err
    monkeypatch.undo()
    c = task_checkpoint.load_task_checkpoint(run / LATEST)
    assert c.state["step"] == (2 if where == LATEST else 0)
    assert cli.main(["classify", "train", "--resume", str(run), "--quiet"]) == 0
    assert task_checkpoint.load_task_checkpoint(run / LATEST).state["step"] == 6

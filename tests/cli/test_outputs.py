"""Every command that writes, against every hostile target.

The commands come from the command registry: each declares, where it registers, the arguments
that name a file it writes (`outputs`) and the run directories it writes (`run_dirs`). A command
without a declaration, or a declared argument without a way to run it here (RECIPES), fails; so
a command added later is covered or a test fails. Each file output is tried on every target a
command must never write (a run's training files, of the run it reads and of another, a training
checkpoint under another name, links, a FIFO, a device, a directory, an empty path, an existing
file without --force), and each must be refused in one line with exit 2, leaving the target and
its folder exactly as they were; then it must write a new file, replace an existing one with
--force, and keep its previous output whole on a full disk.
"""

import contextlib
import json
import os
import random
import shutil
import signal
import stat
from pathlib import Path

import pytest

from conftest import SONNET, charrnn, error_line, fill_disk, listing, optional
from charrnn.cli._common import COMMANDS, OUTPUTS, RUN_DIRS
from charrnn.io.checkpoint import LATEST
from charrnn.io.lock import LOCK, RunLock
from charrnn.io.layout import COMMAND_OUTPUTS, CURVES, REPORT, RUN_FILES

TINY = ["--hidden-size", "8", "--seq-len", "16", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
        "--sample-every", "2", "--sample-length", "20", "--log-every", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished tiny runs, "this" (which the commands read) and "other", and a text."""
    base = tmp_path_factory.mktemp("outputs")
    (base / "text.txt").write_text(SONNET * 4)
    proc = charrnn("train", base / "text.txt", "--out", base / "this", "--quiet", *TINY)
    assert proc.returncode == 0, proc.stderr
    (base / "this" / "text.txt").write_text("abcab\n")  # what a run trained on strings keeps (fit(texts=...))
    shutil.copytree(base / "this", base / "other")
    assert {p.name for p in (base / "this").iterdir()} >= set(RUN_FILES)
    return base


def onnx_export_argv(run: Path, target: str) -> list:
    optional("onnx")  # the file is built with onnx: skipped where it is missing, failed in CI
    return ["export", run, "--format", "onnx", target]


def bench_argv(run: Path, target: str) -> list:
    return ["bench", "--rows", "peak", "--repeats", "1", "--threads", "1", "--json", target]


# (command, declared output) -> (the command line writing `target`, reading the run `run`; the
# suffix its file takes). Every declared output needs one.
RECIPES = {
    ("export", "OUT"): (lambda run, t: ["export", run, t], ".safetensors"),
    # another format of the same output, written by its own module through the same checks (keras,
    # which writes a second file beside OUT, does not fit these tests' one-file listing)
    ("export", "OUT --format onnx"): (onnx_export_argv, ".onnx"),
    ("impulse", "--plot"): (lambda run, t: ["impulse", "--steps", "3", "--plot", t], ".png"),
    ("diagnose", "--plot"): (lambda run, t: ["diagnose", run, "--window", "20", "--max-lag", "3", "--warmup", "0",
                                             "--plot", t], ".png"),
    ("plot", "--out"): (lambda run, t: ["plot", run, "--out", t], ".png"),
    ("report", "--out"): (lambda run, t: ["report", run, "--out", t], ".html"),
    ("heatmap", "--out"): (lambda run, t: ["heatmap", run, "--max-chars", "30", "--out", t], ".html"),
    ("bench", "--json"): (bench_argv, ".json"),
}
FILE_OUTPUTS = [(c, o) for c, outputs in OUTPUTS.items() for o in outputs]
# what the tests below try: the declared outputs and the other formats
TRIED = [*FILE_OUTPUTS, pytest.param("export", "OUT --format onnx", marks=pytest.mark.onnx)]


class Hung(BaseException):
    """The command blocked (on a FIFO, say) past its deadline."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Interrupt the block after `seconds`: a command that would wait forever fails the test."""

    def hung(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def quick(monkeypatch):
    """bench without its minutes of measuring, and report with a page made at once: where what
    is tested is the way to the file, not what goes in it (the real report runs below)."""
    from charrnn import bench
    from charrnn.report import html

    monkeypatch.setattr(bench, "run_rows", lambda args, reps, n_threads, defaults=None: [])
    monkeypatch.setattr(bench, "versions", lambda: {})
    monkeypatch.setattr(html, "build_report", lambda run: f"<p>a report of {run}</p>")


def run_command(argv: list) -> object:
    with deadline(60):
        return charrnn(*argv)


# -- the registry -------------------------------------------------------------------------------

def test_every_command_declares_what_it_writes_and_each_output_can_be_run_here():
    undeclared = sorted(set(COMMANDS) - set(OUTPUTS))
    assert not undeclared, f"commands without outputs=(...) in their @command registration: {undeclared}"
    missing = [out for out in FILE_OUTPUTS if out not in RECIPES]
    assert not missing, f"declared outputs without a recipe in this test (add one): {missing}"
    missing = [(c, o) for c, dirs in RUN_DIRS.items() for o in dirs if (c, o) not in RUN_DIR_RECIPES]
    assert not missing, f"declared run directories without a recipe in this test (add one): {missing}"
    assert FILE_OUTPUTS and any(RUN_DIRS.values())


@pytest.mark.parametrize("command", sorted({c for c, _ in FILE_OUTPUTS}))
def test_every_command_that_writes_a_file_documents_force(command):
    proc = charrnn(command, "--help")
    assert proc.returncode == 0 and "--force" in proc.stdout and "replace" in proc.stdout, proc.stdout


# -- hostile targets ------------------------------------------------------------------------------

HOSTILE = [f"{run} run's {n}" for run in ("this", "other") for n in (*RUN_FILES, LOCK)] + [
    "a checkpoint under another name", "a link to a file", "a dangling link", "a FIFO", "a device", "a directory",
    "an empty path", "a path ending in a slash", "a missing folder", "an existing file, without --force"]


def make_target(what: str, tmp: Path, runs: Path, suffix: str) -> str:
    """Set up the hostile target `what` under `tmp` (or name it in a run); its path as given."""
    if what.startswith(("this run's ", "other run's ")):
        run = runs / ("this" if what.startswith("this") else "other")
        return str(run / what.split("'s ", 1)[1])
    target = tmp / f"target{suffix}"
    if what == "a checkpoint under another name":
        shutil.copy(runs / "this" / LATEST, target)
    elif what == "a link to a file":
        (tmp / "precious.txt").write_text("the user's")
        target.symlink_to(tmp / "precious.txt")
    elif what == "a dangling link":
        target.symlink_to(tmp / "nowhere")
    elif what == "a FIFO":
        os.mkfifo(target)
    elif what == "a device":
        if os.geteuid() != 0:
            return os.devnull  # a user cannot replace it: nothing to lose if the refusal failed
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a null device of our own
    elif what == "a directory":
        target.mkdir()
    elif what == "an empty path":
        return ""
    elif what == "a path ending in a slash":
        return f"{tmp / 'newdir'}/"
    elif what == "a missing folder":
        return str(tmp / "no" / "such" / f"x{suffix}")
    elif what == "an existing file, without --force":
        target.write_text("the user's")
    return str(target)


@pytest.mark.parametrize("what", HOSTILE)
@pytest.mark.parametrize("command, output", TRIED)
def test_a_hostile_target_is_refused_in_one_line_and_left_as_it_was(runs, tmp_path, monkeypatch, command, output,
                                                                     what):
    build, suffix = RECIPES[(command, output)]
    monkeypatch.chdir(tmp_path)  # an empty path would mean this folder
    work = tmp_path / "work"
    work.mkdir()
    target = make_target(what, work, runs, suffix)
    before = {d: listing(d) for d in (work, runs / "this", runs / "other")}
    argv = build(runs / "this", target) + ([] if what.endswith("without --force") else ["--force"])
    proc = run_command(argv)
    error_line(proc, command)
    after = {d: listing(d) for d in before}
    assert after == before, f"{command} {output} {what!r} changed {[str(d) for d in before if after[d] != before[d]]}"
    assert not (work / "nowhere").exists() and not (work / "newdir").exists() and not (work / "no").exists()


# -- what a command may write -----------------------------------------------------------------------

@pytest.mark.parametrize("command, output", TRIED)
def test_a_new_file_is_written_and_an_existing_one_replaced_with_force(runs, tmp_path, quick, command, output):
    build, suffix = RECIPES[(command, output)]
    target = tmp_path / f"out{suffix}"
    proc = run_command(build(runs / "this", str(target)))
    assert proc.returncode == 0, proc.stderr
    first = target.read_bytes()
    assert first and listing(tmp_path).keys() == {target.name}  # no temporary left
    target.write_bytes(b"the user's")
    assert proc.returncode == 0 and run_command(build(runs / "this", str(target)) + ["--force"]).returncode == 0
    assert target.read_bytes() not in (b"the user's", b"") and listing(tmp_path).keys() == {target.name}


@pytest.mark.parametrize("command, own", [("report", REPORT), ("plot", CURVES)])
def test_a_commands_own_output_in_a_run_is_replaced_by_its_next_run_without_force_or_lock(runs, tmp_path, command,
                                                                                          own):
    run = tmp_path / "run"
    shutil.copytree(runs / "this", run)
    (run / own).write_bytes(b"an older one")
    with RunLock(run):  # a run that is training: report and plot read it and need no lock
        proc = charrnn(command, run)
        assert proc.returncode == 0, proc.stderr
        assert (run / own).read_bytes() != b"an older one"
        # the other command's own output is not this one's to replace
        other = next(n for n in COMMAND_OUTPUTS if n != own)
        (run / other).write_bytes(b"kept")
        assert "already exists: --force replaces it" in error_line(charrnn(command, run, "--out", run / other), command)
        assert (run / other).read_bytes() == b"kept"


@pytest.mark.parametrize("command, output", TRIED)
def test_a_full_disk_leaves_the_previous_output_whole(runs, small_disk, quick, command, output):
    build, suffix = RECIPES[(command, output)]
    target = small_disk / f"out{suffix}"
    target.write_bytes(b"the previous output")
    fill_disk(small_disk)
    before = listing(small_disk)
    line = error_line(run_command(build(runs / "this", str(target)) + ["--force"]), command)
    assert "No space left on device" in line
    assert listing(small_disk) == before


@pytest.mark.parametrize("command, own", [("report", REPORT), ("plot", CURVES)])
def test_a_full_disk_leaves_a_runs_own_output_whole(runs, small_disk, quick, command, own):
    run = small_disk / "run"
    shutil.copytree(runs / "this", run)
    (run / own).write_bytes(b"the previous one")
    fill_disk(small_disk)
    before = listing(run)
    assert "No space left on device" in error_line(charrnn(command, run), command)
    assert listing(run) == before


# -- run directories ------------------------------------------------------------------------------

def task_data(d: Path, task: str) -> Path:
    r = random.Random(0)
    words = ["".join(r.choice("ab") for _ in range(r.randint(2, 12))) for _ in range(60)]
    if task == "classify":
        (d / "data.tsv").write_text("".join(f"{w}\t{w[0]}\n" for w in words))
        return d / "data.tsv"
    (d / "data.jsonl").write_text("".join(json.dumps({"text": w, "tags": list(w.upper())}) + "\n" for w in words))
    return d / "data.jsonl"


def keras_import_argv(runs: Path, target: str) -> list:
    from charrnn.errors import CharRNNError
    from charrnn.interop.keras import export_keras, import_keras

    try:
        import_keras()
    except CharRNNError as e:
        pytest.skip(f"import needs Keras: {e}")
    from charrnn.io.checkpoint import load_checkpoint

    model = runs / "model.keras"
    if not model.exists():
        c = load_checkpoint(runs / "this")
        export_keras(c.model, c.vocab, model)
    return ["import", model, "--vocab", runs / "model.vocab.json", "--out", target]


SMALL = ["--hidden-size", "8", "--steps", "2"]
# (command, declared run directory) -> the command line writing the run directory `target`
RUN_DIR_RECIPES = {
    ("train", "--out"): lambda runs, t: ["train", runs / "text.txt", "--out", t, *SMALL],
    ("classify", "train --out"): lambda runs, t: ["classify", "train", task_data(runs, "classify"), "--out", t, *SMALL],
    ("tag", "train --out"): lambda runs, t: ["tag", "train", task_data(runs, "tag"), "--out", t, *SMALL],
    ("import", "--out"): keras_import_argv,
}
RUN_DIR_OUTPUTS = [(c, o) for c, dirs in RUN_DIRS.items() for o in dirs]
HOSTILE_RUN_DIRS = ["an empty path", "a file", "a link to a file", "a FIFO", "a device", "a run being trained"]


@pytest.mark.parametrize("what", HOSTILE_RUN_DIRS)
@pytest.mark.parametrize("command, output", RUN_DIR_OUTPUTS)
def test_a_run_directory_that_cannot_be_one_is_refused_in_one_line(runs, tmp_path, monkeypatch, command, output, what):
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    target = work / "target"
    if what == "a run being trained":
        shutil.copytree(runs / "this", target)
    elif what == "an empty path":
        target = ""
    elif what == "a device" and os.geteuid() != 0:
        target = os.devnull
    elif what == "a file":
        target.write_text("the user's")
    elif what == "a link to a file":
        (work / "precious.txt").write_text("the user's")
        target.symlink_to(work / "precious.txt")
    elif what == "a FIFO":
        os.mkfifo(target)
    elif what == "a device":
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    argv = RUN_DIR_RECIPES[(command, output)](runs, str(target)) + ["--force"]
    folders = [tmp_path, work] + ([target] if what == "a run being trained" else [])
    with RunLock(target) if what == "a run being trained" else contextlib.nullcontext():
        before = [listing(d) for d in folders]
        proc = run_command(argv)
        assert [listing(d) for d in folders] == before
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"charrnn {command}")
    if what == "a run being trained":
        assert "is being written by" in proc.stderr

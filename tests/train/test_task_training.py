"""Classification and tagging end to end: synthetic problems whose answer is known are learned
within a fixed number of steps (and R is what makes the tagging one learnable), exact resume,
the split and the batches, and every bad input as one line naming the file and line (exit 2)."""

import json
import random
import re

import numpy as np
import pytest

from conftest import charrnn, optional
from charrnn.settings import TaskConfig
from charrnn.train import Trainer as TaskTrainer
from charrnn.io.layout import BEST, LATEST
from charrnn.io.task_checkpoint import load_task_checkpoint
from charrnn.data.labelled import BucketBatcher, Example, stratified_split


def error_line(proc, cmd):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn {cmd}: error: "), proc.stderr
    return lines[0]


def first_char_tsv(path, n=400, seed=0):
    """The class is the text's first character, which must be carried to its end."""
    r = random.Random(seed)
    lines = []
    for _ in range(n):
        s = "".join(r.choice("abcd") for _ in range(r.randint(1, 15)))
        lines.append(f"{s}\t{s[0].upper()}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def parity_jsonl(path, n=300, seed=1, longest=40):
    """The tag flips at every 'a': the previous tag and this character decide the tag, which R
    gives the first layer directly; without R the network must count the a's in its state."""
    r = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            s = "".join(r.choice("ab") for _ in range(r.randint(1, longest)))
            tags, cur = [], 0
            for c in s:
                cur ^= c == "a"
                tags.append("XY"[cur])
            f.write(json.dumps({"text": s, "tags": tags}) + "\n")
    return path


def eval_json(run, data, task, *extra):
    proc = charrnn(task, "eval", run, data, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_classifier_learns_the_first_character(tmp_path):
    data = first_char_tsv(tmp_path / "c.tsv")
    proc = charrnn("classify", "train", data, "--out", tmp_path / "run", "--steps", 150, "--eval-every", 50,
                   "--hidden-size", 32, "--lr", 0.01, "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = eval_json(tmp_path / "run", data, "classify")
    assert r["accuracy"] >= 0.95 and r["macro_f1"] >= 0.95
    assert np.array(r["confusion"]).sum() == 400 and r["labels"] == ["A", "B", "C", "D"]
    proc = charrnn("classify", "predict", tmp_path / "run", "cab", "dd", "--top", 2, "--json")
    preds = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [p["labels"][0]["label"] for p in preds] == ["C", "D"]
    assert all(len(p["labels"]) == 2 and p["labels"][0]["probability"] > 0.5 for p in preds)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_output_recurrence_learns_what_the_plain_tagger_cannot(tmp_path, cell):
    """With R every cell learns the parity tags in 60 steps; the tanh RNN without R does not
    (the GRU's gates, it turns out, count the a's well enough on their own)."""
    data = parity_jsonl(tmp_path / "p.jsonl")
    acc = {}
    for fb in (False, True):
        run = tmp_path / f"run{fb}"
        args = ["tag", "train", data, "--out", run, "--steps", 60, "--eval-every", 0, "--hidden-size", 8,
                "--cell", cell, "--lr", 0.03, "--val-frac", 0, "--lr-schedule", "constant", "--quiet"]
        assert charrnn(*args, *(["--output-recurrence"] if fb else [])).returncode == 0
        acc[fb] = eval_json(run, data, "tag")
    assert acc[True]["accuracy"] >= 0.99  # free-running: the model's own previous tags fed back
    assert acc[True]["teacher_forced_accuracy"] >= 0.99
    assert "teacher_forced_accuracy" not in acc[False]
    if cell == "rnn":
        assert acc[False]["accuracy"] < 0.8
    beam = eval_json(tmp_path / "runTrue", data, "tag", "--beam", 3)
    assert beam["accuracy"] >= 0.99 and beam["beam"] == 3
    proc = charrnn("tag", "predict", tmp_path / "runTrue", "abba", "--json")
    assert json.loads(proc.stdout) == {"text": "abba", "tags": ["Y", "Y", "Y", "X"]}


def train_cfg(data, **kw):
    base = dict(task="classify", data=str(data), hidden_size=8, batch_size=8, steps=30, eval_every=10,
                dropout=0.2, balance="sampling", num_layers=2)
    return TaskConfig(**(base | kw))


@pytest.mark.parametrize("task", ["classify", "tag"])
def test_resume_is_exact(tmp_path, task):
    data = first_char_tsv(tmp_path / "c.tsv", n=120) if task == "classify" else parity_jsonl(tmp_path / "p.jsonl", n=120)
    kw = {} if task == "classify" else dict(task="tag", balance="none", feedback=True)
    TaskTrainer(train_cfg(data, **kw), tmp_path / "straight", quiet=True).run()
    first = TaskTrainer(train_cfg(data, **kw), tmp_path / "split", quiet=True)
    first.total_steps = 20  # as if stopped there (the schedule still runs to 30)
    first.run()
    TaskTrainer(TaskConfig(task=kw.get("task", "classify"), steps=30), tmp_path / "split", resume=True, quiet=True).run()
    a = load_task_checkpoint(tmp_path / "straight" / LATEST)
    b = load_task_checkpoint(tmp_path / "split" / LATEST)
    assert a.state["step"] == b.state["step"] == 30
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    for name in a.optimizer_arrays:
        assert np.array_equal(a.optimizer_arrays[name], b.optimizer_arrays[name]), name
    assert (tmp_path / "split" / BEST).is_file()


def test_resume_refuses_changed_data_and_settings(tmp_path):
    data = first_char_tsv(tmp_path / "c.tsv", n=60)
    TaskTrainer(train_cfg(data, steps=5), tmp_path / "run", quiet=True).run()
    error_line(charrnn("classify", "train", "--resume", tmp_path / "run", "--hidden-size", 9), "classify")
    first_char_tsv(data, n=61)
    line = error_line(charrnn("classify", "train", "--resume", tmp_path / "run", "--steps", 9), "classify")
    assert "changed" in line


def test_a_run_being_written_is_refused_to_a_second_writer(tmp_path):
    from charrnn.io.lock import RunLocked

    data = first_char_tsv(tmp_path / "c.tsv", n=60)
    first = TaskTrainer(train_cfg(data, steps=5), tmp_path / "run", quiet=True)
    with pytest.raises(RunLocked, match=r"is being written by .*pid"):
        TaskTrainer(TaskConfig(steps=8), tmp_path / "run", resume=True, quiet=True)
    with pytest.raises(RunLocked):
        TaskTrainer(train_cfg(data, steps=5), tmp_path / "run", force=True, quiet=True)
    first.run()  # its lock goes with the end of the run: the run can be continued now
    TaskTrainer(TaskConfig(steps=8), tmp_path / "run", resume=True, quiet=True).run()
    assert load_task_checkpoint(tmp_path / "run" / LATEST).state["step"] == 8


def test_a_flag_given_at_its_default_value_is_kept_by_the_automatic_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(TaskTrainer, "run", lambda self: {})  # the plan is all this test needs
    data = first_char_tsv(tmp_path / "c.tsv", n=60)
    runs = {}
    for name, flags in (("auto", []), ("asked", ["--patience", "0", "--eval-every", "200"])):
        proc = charrnn("classify", "train", data, "--out", tmp_path / name, "--hidden-size", 4, "--quiet", *flags)
        assert proc.returncode == 0, proc.stderr
        runs[name] = json.loads((tmp_path / name / "config.json").read_text())
    assert runs["auto"]["patience"] == 5 and runs["auto"]["eval_every"] < 200  # the plan's own
    assert runs["asked"]["patience"] == 0 and runs["asked"]["eval_every"] == 200  # as given


def test_split_is_stratified_and_seeded():
    examples = [Example("x", "A" if i % 10 else "B", i + 1) for i in range(200)] + [Example("y", "C", 201)]
    tr, va = stratified_split("classify", examples, 0.1, seed=3)
    labels = np.array([e.label for e in examples])
    assert (labels[va] == "A").sum() == 18 and (labels[va] == "B").sum() == 2 and "C" not in labels[va]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 201
    tr2, va2 = stratified_split("classify", examples, 0.1, seed=3)
    assert np.array_equal(va, va2) and not np.array_equal(va, stratified_split("classify", examples, 0.1, seed=4)[1])


def test_batches_group_lengths_and_resume_mid_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    b = BucketBatcher(lengths, 20, seed=7)
    batches = [b.next_batch() for _ in range(75)]  # one and a half epochs
    assert sorted(np.concatenate(batches[:50]).tolist()) == list(range(1000))
    spread = np.mean([lengths[x].max() - lengths[x].min() for x in batches])
    assert spread < 10  # against ~95 for random batches
    c = BucketBatcher(lengths, 20, seed=7)
    c.load_state_dict({"epoch": 1, "position": 10}, "test")
    assert all(np.array_equal(c.next_batch(), x) for x in batches[60:])


def test_balanced_sampling_and_class_weights_train_on_skewed_classes(tmp_path):
    lines = ["a" * (1 + i % 5) + "\tA" for i in range(190)] + ["b" * (1 + i % 5) + "\tB" for i in range(10)]
    data = tmp_path / "skew.tsv"
    data.write_text("\n".join(lines) + "\n")
    b = BucketBatcher(np.ones(200, dtype=np.intp), 50, seed=0, weights=np.array([1 / 190] * 190 + [1 / 10] * 10))
    drawn = np.concatenate([b.next_batch() for _ in range(8)])
    assert 0.4 < (drawn >= 190).mean() < 0.6
    for balance in ("weights", "sampling"):
        run = tmp_path / balance
        TaskTrainer(TaskConfig(data=str(data), balance=balance, hidden_size=8, steps=40, lr=0.02, val_frac=0,
                               eval_every=0), run, quiet=True).run()
        r = eval_json(run, data, "classify")
        assert r["per_label"]["B"]["recall"] == 1.0 and r["accuracy"] == 1.0


# ------------------------------------------------------------------------------------------------
# bad input: one line naming the file and line, exit 2, and an existing run untouched


@pytest.mark.parametrize("content,message", [
    ("abc\tA\nno tab here\n", ":2: no tab"),
    ("abc\tA\n\tB\n", ":2: empty text"),
    ("abc\tA\nabd\tA\n", "only one class ('A')"),
    ("abc\tA\nab\t \n", ":2: empty label"),
])
def test_bad_classification_files(tmp_path, content, message):
    data = tmp_path / "bad.tsv"
    data.write_text(content)
    line = error_line(charrnn("classify", "train", data, "--out", tmp_path / "run"), "classify")
    assert str(data) in line and message in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("obj,message", [
    ('{"text": "ab", "tags": ["X"]}', ":2: 1 tags for a text of 2 characters"),
    ('{"text": "", "tags": []}', ":2: empty text"),
    ('{"text": "ab"}', ":2: expected"),
    ("not json", ":2: not valid JSON"),
])
def test_bad_tagging_files(tmp_path, obj, message):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "ab", "tags": ["X", "Y"]}\n' + obj + "\n")
    line = error_line(charrnn("tag", "train", data, "--out", tmp_path / "run"), "tag")
    assert str(data) in line and message in line


def test_eval_problems_name_the_line_and_keep_the_run(tmp_path):
    data = first_char_tsv(tmp_path / "c.tsv", n=60)
    run = tmp_path / "run"
    assert charrnn("classify", "train", data, "--out", run, "--steps", 5, "--hidden-size", 8, "--quiet").returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = tmp_path / "other.tsv"
    other.write_text("abc\tA\nxyz\tZ\n")
    line = error_line(charrnn("classify", "eval", run, other), "classify")
    assert f"{other}:2: label 'Z' was not seen in training" in line
    # unseen characters and longer texts than any in training are read, and said so
    other.write_text("a" * 50 + "\tA\nxyz\tB\n")
    proc = charrnn("classify", "eval", run, other, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["unknown_chars"] == 3
    assert "longer than any in training" in proc.stderr and "'x'" in proc.stderr
    error_line(charrnn("classify", "predict", run, ""), "classify")
    error_line(charrnn("tag", "eval", run, other), "tag")  # a classifier is not a tagger
    error_line(charrnn("classify", "train", data, "--out", run), "classify")  # no --force: refused
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_language_model_commands_refuse_a_task_run(tmp_path):
    data = first_char_tsv(tmp_path / "c.tsv", n=40)
    run = tmp_path / "run"
    assert charrnn("classify", "train", data, "--out", run, "--steps", 2, "--hidden-size", 4, "--quiet").returncode == 0
    for args in (("sample", run), ("eval", run, data), ("train", "--resume", run)):
        line = error_line(charrnn(*args), args[0])
        assert "a classify model, not a language model" in line


def test_a_nan_step_is_rolled_back_and_a_signal_checkpoints(tmp_path, monkeypatch):
    """The language model's fault handling: a NaN loss never reaches the parameters (the last
    checkpoint is restored, the rate halved, training goes on), and SIGTERM finishes the step,
    checkpoints and stops with status 143, from where a resume continues."""
    import os
    import signal

    from charrnn.model import CharClassifier
    from charrnn.train import Interrupted

    data = first_char_tsv(tmp_path / "c.tsv", n=80)
    real = CharClassifier.loss_and_grads
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        loss, grads = real(self, *args, **kwargs)
        if calls["n"] == 7:
            return float("nan"), grads
        if calls["n"] == 15:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss, grads

    monkeypatch.setattr(CharClassifier, "loss_and_grads", flaky)
    trainer = TaskTrainer(train_cfg(data, steps=40, eval_every=5), tmp_path / "run", quiet=True)
    with pytest.raises(Interrupted) as e:
        trainer.run()
    assert e.value.status == 143
    c = load_task_checkpoint(tmp_path / "run" / LATEST)
    # steps 1-6 ran, the 7th was NaN: back to the checkpoint of step 5, then on to step 13
    assert c.state["divergences"] == 1 and c.state["lr_scale"] == 0.5 and c.state["step"] == 13
    assert all(np.isfinite(p).all() for p in c.model.params.values())
    monkeypatch.setattr(CharClassifier, "loss_and_grads", real)
    result = TaskTrainer(TaskConfig(), tmp_path / "run", resume=True, quiet=True).run()
    assert result.step == 40


# ------------------------------------------------------------------------------------------------
# the one loop: a task run resumes exactly after a signal or a kill, validation and early stopping
# on, on the NumPy engine and on the torch backend


class Killed(BaseException):
    """The process dying where it stands: nothing of the loop's own handling runs."""


def timeless(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("examples_per_s", "elapsed")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_checkpoint(a, b):
    ca, cb = load_task_checkpoint(a), load_task_checkpoint(b)
    drop = ("elapsed",)
    assert {k: v for k, v in ca.state.items() if k not in drop} == {k: v for k, v in cb.state.items() if k not in drop}
    for name in ca.model.params:
        assert np.array_equal(ca.model.params[name], cb.model.params[name]), name
    assert ca.optimizer_arrays.keys() == cb.optimizer_arrays.keys()
    for name in ca.optimizer_arrays:
        assert np.array_equal(ca.optimizer_arrays[name], cb.optimizer_arrays[name]), name


def stop_at(trainer, step, how):
    """At the start of step `step`: SIGTERM's effect (the flag its handler sets), or death."""
    real = trainer.objective.next_batch

    def next_batch():
        if trainer.objective.state.step == step - 1:
            if how == "kill":
                raise Killed
            trainer._signal = __import__("signal").SIGTERM
        return real()

    trainer.objective.next_batch = next_batch


TASK_RUNS = {
    # a high rate: validation stops improving and patience ends the run early
    "classify": dict(task="classify", hidden_size=8, batch_size=8, steps=200, eval_every=4, patience=2, lr=0.05,
                     log_every=3, dropout=0.1),
    "tag": dict(task="tag", feedback=True, hidden_size=8, batch_size=8, steps=200, eval_every=4, patience=2, lr=0.1,
                log_every=3, dropout=0.2),
}


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.torch)])
@pytest.mark.parametrize("task", ["classify", "tag"])
@pytest.mark.parametrize("how", ["signal", "kill"])
def test_a_stopped_task_run_resumes_as_the_run_that_never_stopped(tmp_path, task, backend, how):
    if backend == "torch":
        optional("torch")
    data = first_char_tsv(tmp_path / "c.tsv", n=120) if task == "classify" else parity_jsonl(tmp_path / "p.jsonl", n=120)
    given = TASK_RUNS[task] | {"data": str(data), "backend": backend}
    ref, run = tmp_path / "ref", tmp_path / "run"
    result = TaskTrainer(given, ref, quiet=True).run()
    best = load_task_checkpoint(ref / BEST).state["step"]
    assert result.stopped == "early" and result.step == best + 8 and result.step > 14  # the case this test is about
    trainer = TaskTrainer(given, run, quiet=True)
    # a signal during step 14, between validations (every 4); a death at the start of step 16,
    # after the record of step 15 was logged past the checkpoint of step 12
    stop_at(trainer, 14 if how == "signal" else 16, how)
    with pytest.raises(Killed if how == "kill" else __import__("charrnn").train.Interrupted):
        trainer.run()
    saved = load_task_checkpoint(run / LATEST).state["step"]
    assert saved == (14 if how == "signal" else 12)
    if how == "kill":  # what a killed process leaves: records past its last checkpoint, and its lock
        assert max(r["step"] for r in timeless(run)) == 15
        trainer.objective.lock.release()
    else:  # the signal's checkpoint is neither validated nor logged
        assert max(r["step"] for r in timeless(run)) == 12
    resumed = TaskTrainer({"task": task, "backend": backend}, run, resume=True, quiet=True).run()
    assert resumed.step == result.step and resumed.stopped == "early"
    same_checkpoint(run / LATEST, ref / LATEST)
    same_checkpoint(run / BEST, ref / BEST)
    assert timeless(run) == timeless(ref)


@pytest.mark.torch
@pytest.mark.parametrize("task", ["classify", "tag"])
def test_the_torch_backend_trains_the_task_models_as_the_numpy_engine_does(tmp_path, task):
    """float64, no dropout: the same steps on both engines give the same weights, optimizer
    slots and losses to rounding (the tagger with R included)."""
    optional("torch")
    data = first_char_tsv(tmp_path / "c.tsv", n=80) if task == "classify" else parity_jsonl(tmp_path / "p.jsonl", n=80)
    given = TASK_RUNS[task] | {"data": str(data), "dtype": "float64", "dropout": 0.0, "steps": 12, "patience": 0,
                               "lr": 0.01, "num_layers": 2}
    if task == "classify":
        given["balance"] = "weights"
    for backend in ("numpy", "torch"):
        TaskTrainer(given | {"backend": backend}, tmp_path / backend, quiet=True).run()
    a, b = load_task_checkpoint(tmp_path / "numpy" / LATEST), load_task_checkpoint(tmp_path / "torch" / LATEST)
    assert a.state["step"] == b.state["step"] == 12
    for name in a.model.params:
        np.testing.assert_allclose(b.model.params[name], a.model.params[name], rtol=1e-9, atol=1e-11, err_msg=name)
    for name in a.optimizer_arrays:
        np.testing.assert_allclose(b.optimizer_arrays[name], a.optimizer_arrays[name], rtol=1e-8, atol=1e-14,
                                   err_msg=name)
    la, lb = timeless(tmp_path / "numpy"), timeless(tmp_path / "torch")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert (ra[key] is None) == (rb[key] is None), key
            if ra[key] is not None:
                assert ra[key] == pytest.approx(rb[key], rel=1e-9, abs=1e-12), key


def test_a_tagger_with_r_reports_its_free_running_accuracy_beside_the_teacher_forced_one(tmp_path):
    """Training's validation is teacher-forced, which flatters a tagger with R: its closing line, its
    metrics and eval name both accuracies, and each is the one eval computes on the same texts."""
    data, val = parity_jsonl(tmp_path / "p.jsonl"), parity_jsonl(tmp_path / "v.jsonl", n=40, seed=7)
    run = tmp_path / "run"
    proc = charrnn("tag", "train", data, "--val", val, "--out", run, "--steps", 12, "--eval-every", 0,
                   "--hidden-size", 8, "--lr", 0.03, "--output-recurrence")
    assert proc.returncode == 0, proc.stderr
    closing = proc.stderr.strip().splitlines()[-1]
    m = re.search(r"validation accuracy (\d\.\d{4}) free-running, (\d\.\d{4}) teacher-forced\b", closing)
    assert m, closing
    assert closing.endswith(f"Evaluate with: charrnn tag eval {run} DATA")
    r = eval_json(run / LATEST, val, "tag")
    assert (f"{r['accuracy']:.4f}", f"{r['teacher_forced_accuracy']:.4f}") == m.groups()
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert f"{last['val_free_running_accuracy']:.4f}" == m.group(1) and f"{last['val_accuracy']:.4f}" == m.group(2)
    table = charrnn("tag", "eval", run / LATEST, val).stdout
    assert f"accuracy {m.group(1)} free-running" in table.splitlines()[0]
    assert f"free-running accuracy {m.group(1)}" in table and f"teacher-forced {m.group(2)}" in table
    # without R there is one accuracy, and nothing calls it teacher-forced
    proc = charrnn("tag", "train", data, "--val", val, "--out", tmp_path / "plain", "--steps", 4, "--eval-every", 0,
                   "--hidden-size", 8)
    assert proc.returncode == 0 and "teacher-forced" not in proc.stderr and "free-running" not in proc.stderr
    assert "val_free_running_accuracy" not in (tmp_path / "plain" / "metrics.jsonl").read_text()


def test_the_confusion_matrix_names_its_rows_and_columns(tmp_path):
    data = first_char_tsv(tmp_path / "c.tsv", n=80)
    run = tmp_path / "run"
    assert charrnn("classify", "train", data, "--out", run, "--steps", 3, "--hidden-size", 8, "--quiet").returncode == 0
    lines = charrnn("classify", "eval", run, data).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("confusion"))
    head, rows = lines[at + 1].split(), lines[at + 2:at + 6]
    assert head[-4:] == ["A", "B", "C", "D"] and lines[at + 1].startswith("true \\ predicted")
    r = eval_json(run, data, "classify")
    assert [row.split()[0] for row in rows] == r["labels"]
    assert [[int(v.replace(",", "")) for v in row.split()[1:]] for row in rows] == r["confusion"]


def test_after_built_in_data_the_closing_hint_names_the_dataset(tmp_path):
    """The hint is a command that runs as printed: built-in data has no DATA file to give."""
    run = tmp_path / "run"
    proc = charrnn("tag", "train", "--dataset", "pytokens", "--out", run, "--steps", 1, "--eval-every", 0,
                   "--hidden-size", 4)
    assert proc.returncode == 0, proc.stderr
    assert re.match(r"charrnn tag: 1 step[ ,]", proc.stderr.strip().splitlines()[-1])  # one step, not "1 steps"
    hint = proc.stderr.strip().splitlines()[-1].split("Evaluate with: ")[1]
    assert hint == f"charrnn tag eval {run} --dataset pytokens"
    assert charrnn(*hint.split()[1:], "--json").returncode == 0

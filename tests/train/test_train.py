"""The everyday workflow: train, resume exactly, sample, evaluate, export; end to end."""

import json
import re
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from charrnn import CharRNN, cli
from charrnn.io.checkpoint import BEST, CONFIG, LATEST, METRICS, SAMPLES, TOKENS, load_checkpoint
from charrnn.settings import TrainConfig
from charrnn.data.text import Vocab
from charrnn.optim import clip_grad_value_, make_optimizer
from charrnn.io.arrays import read_arrays, write_arrays
from charrnn.train import Trainer, lr_at

from conftest import SONNET, UNICODE, run_cli, tiny_config

TINY = ["--hidden-size", "24", "--seq-len", "16", "--batch-size", "4", "--eval-every", "10",
        "--sample-every", "10", "--sample-length", "40", "--log-every", "5"]
GOLDEN = Path(__file__).parent / "golden" / "tiny_run_losses.json"


def final_params(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / LATEST).model.params


def deterministic(records):
    """Metrics fields that do not depend on wall-clock time."""
    drop = {"chars_per_s", "elapsed"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def read_metrics(run_dir: Path):
    return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]


# ------------------------------------------------------------------------------------------------


def test_train_command_makes_a_complete_run_directory(tmp_path, sonnet_file):
    run = tmp_path / "run"
    proc = run_cli("train", sonnet_file, "--out", run, "--steps", "30", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in (CONFIG, LATEST, BEST, METRICS, SAMPLES, TOKENS):
        assert (run / name).is_file(), name
    config = json.loads((run / CONFIG).read_text())
    assert config["hidden_size"] == 24 and config["steps"] == 30 and config["optimizer"] == "adam"
    records = read_metrics(run)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    for key in ("step", "chars", "train_loss", "smoothed_loss", "val_nats_per_char", "val_bits_per_char",
                "lr", "grad_norm", "chars_per_s", "elapsed"):
        assert key in records[0]
    evaluated = [r for r in records if r["val_nats_per_char"] is not None]
    assert [r["step"] for r in evaluated] == [10, 20, 30]
    assert all(math.isclose(r["val_bits_per_char"], r["val_nats_per_char"] / math.log(2)) for r in evaluated)
    assert records[-1]["chars"] == 30 * 4 * 16
    assert records[-1]["train_loss"] < records[0]["train_loss"]  # it learns
    assert (run / SAMPLES).read_text().count("---- step") == 3
    best = load_checkpoint(run / BEST)
    assert best.state["best_val_loss"] == min(r["val_nats_per_char"] for r in evaluated)


def test_exact_resume_is_bit_identical(tmp_path, sonnet_file):
    """2N steps in one run == N steps, then --resume to 2N: same parameters, same metrics."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = [*TINY, "--lr-schedule", "step", "--lr-decay-every", "7", "--lr-decay", "0.9"]
    assert run_cli("train", sonnet_file, "--out", one, "--steps", "40", *common).returncode == 0
    assert run_cli("train", sonnet_file, "--out", two, "--steps", "20", *common).returncode == 0
    proc = run_cli("train", "--resume", two, "--steps", "40")
    assert proc.returncode == 0, proc.stderr
    a, b = final_params(one), final_params(two)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ca, cb = load_checkpoint(one / LATEST), load_checkpoint(two / LATEST)
    assert all(np.array_equal(ca.optimizer_arrays[k], cb.optimizer_arrays[k]) for k in ca.optimizer_arrays)
    assert np.array_equal(ca.hidden, cb.hidden)
    assert ca.state["data"] == cb.state["data"] and ca.state["sample_rng"] == cb.state["sample_rng"]
    assert deterministic(read_metrics(one)) == deterministic(read_metrics(two))
    assert (one / SAMPLES).read_text() == (two / SAMPLES).read_text()
    # and the comparison is sensitive: resuming with the carried hidden state zeroed differs
    three = tmp_path / "three"
    assert run_cli("train", sonnet_file, "--out", three, "--steps", "20", *common).returncode == 0
    arrays, meta = read_arrays(three / LATEST)
    arrays["state/hidden"] = np.zeros_like(arrays["state/hidden"])
    write_arrays(three / LATEST, arrays, meta)
    assert run_cli("train", "--resume", three, "--steps", "40").returncode == 0
    assert not np.array_equal(final_params(three)["head.weight"], a["head.weight"])


def test_resume_refuses_settings_that_change_the_run(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "10", *TINY).returncode == 0
    proc = run_cli("train", "--resume", run, "--hidden-size", "64", "--steps", "20")
    assert proc.returncode == 2 and "--hidden-size" in proc.stderr


def test_lr_schedules():
    cfg = TrainConfig(text="x", lr=1.0, min_lr_frac=0.1)
    assert lr_at(cfg, 0, 100, 10, None) == 1.0
    assert math.isclose(lr_at(cfg, 50, 100, 10, None), 0.55)
    assert math.isclose(lr_at(cfg, 100, 100, 10, None), 0.1)
    assert math.isclose(lr_at(cfg, 0, 0, 10, 0.5), 0.55)  # a time-budget run follows the clock
    step = cfg.replace(lr_schedule="step", lr_decay=0.5)
    assert [lr_at(step, s, 100, 10, None) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    warm = cfg.replace(lr_schedule="constant", warmup_steps=4)
    assert [lr_at(warm, s, 100, 10, None) for s in (0, 1, 3, 4, 50)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_validation_split_never_reaches_training(tmp_path, monkeypatch):
    # the first 90% uses only 'a'/'b', the last 10% only 'c'/'d': any leak shows up as an id
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("ab"), size=900)) + "".join(rng.choice(list("cd"), size=100))
    path = tmp_path / "t.txt"
    path.write_text(text)
    seen = set()
    real = CharRNN.loss_and_grads

    def spy(self, inputs, targets, h0=None):
        seen.update(np.unique(inputs).tolist(), np.unique(targets).tolist())
        return real(self, inputs, targets, h0)

    monkeypatch.setattr(CharRNN, "loss_and_grads", spy)
    cfg = tiny_config(path, steps=40, sample_every=0)
    trainer = Trainer(cfg, tmp_path / "run", quiet=True)
    trainer.run()
    vocab = trainer.vocab
    assert vocab.symbols == ["a", "b", "c", "d"]
    assert seen == {0, 1}
    assert trainer.n_val == 100 and trainer.batcher.n_tokens == 900


def test_training_data_is_memory_mapped(tmp_path, monkeypatch):
    import charrnn.data.text

    path = tmp_path / "big.txt"
    path.write_text(SONNET * 32000)  # ~20 MB
    # The encoder's working memory is a fixed multiple of its chunk size; shrink the chunk so a
    # small file shows that memory does not grow with the text.
    monkeypatch.setitem(charrnn.data.text.encode_file.__kwdefaults__, "chunk_bytes", 1 << 16)
    # the same run on a small text first, so that what is imported and compiled once per process
    # (numba and its kernels) is not counted
    small = tmp_path / "small.txt"
    small.write_text(SONNET * 4)
    Trainer(tiny_config(small, steps=3, sample_every=0, eval_every=0, eval_max_chars=2000), tmp_path / "warm",
            quiet=True).run()
    tracemalloc.start()
    trainer = Trainer(tiny_config(path, steps=3, sample_every=0, eval_every=0, eval_max_chars=2000),
                      tmp_path / "run", quiet=True)
    trainer.run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = path.stat().st_size
    assert isinstance(trainer.encoded.ids, np.memmap)
    assert (tmp_path / "run" / TOKENS).stat().st_size == size  # one byte per id for < 256 symbols
    assert peak < size / 4, (peak, size)


def test_sample_is_deterministic_and_streams_the_prime(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "20", *TINY).returncode == 0
    a = run_cli("sample", run, "--prime", "Shall I", "--length", "80", "--seed", "5")
    b = run_cli("sample", run, "--prime", "Shall I", "--length", "80", "--seed", "5")
    c = run_cli("sample", run, "--prime", "Shall I", "--length", "80", "--seed", "6")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout != c.stdout
    assert a.stdout.startswith("Shall I") and len(a.stdout.rstrip("\n")) >= len("Shall I") + 70
    greedy = run_cli("sample", run, "--greedy", "--length", "30", "--prime", "And")
    assert greedy.returncode == 0 and greedy.stdout == run_cli("sample", run, "--greedy", "--length", "30",
                                                               "--prime", "And").stdout
    several = run_cli("sample", run, "--num-samples", "3", "--length", "20", "--seed", "1", "--prime", "So")
    assert several.stdout.count("So") >= 3
    long_prime = "Shall I compare thee to a summer's day? " * 3
    proc = run_cli("sample", run, "--prime", long_prime, "--length", "5", "--seed", "1")
    assert proc.returncode == 0 and proc.stdout.startswith(long_prime) and len(proc.stdout.rstrip("\n")) == len(long_prime) + 5
    prime_file = tmp_path / "prime.txt"
    prime_file.write_text("Thou art")
    proc = run_cli("sample", run, "--prime-file", prime_file, "--length", "10", "--seed", "2")
    assert proc.returncode == 0 and proc.stdout.startswith("Thou art")
    for flags in (["--temperature", "0.5"], ["--top-k", "3"], ["--top-p", "0.5"]):
        proc = run_cli("sample", run, "--length", "40", "--seed", "3", *flags)
        assert proc.returncode == 0 and set(proc.stdout) <= set(SONNET)


def test_sample_refuses_unknown_prime_characters_by_name(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "5", *TINY).returncode == 0
    proc = run_cli("sample", run, "--prime", "Zebra€")
    assert proc.returncode == 2
    assert "'Z'" in proc.stderr and "€" in proc.stderr and proc.stderr.count("\n") == 1
    ok = run_cli("sample", run, "--prime", "Zebra€", "--skip-unknown", "--length", "5", "--seed", "0")
    assert ok.returncode == 0 and ok.stdout.startswith("ebra") and "skipped 2" in ok.stderr


def test_unicode_round_trip_through_train_sample_eval(tmp_path, unicode_file):
    run = tmp_path / "run"
    proc = run_cli("train", unicode_file, "--out", run, "--steps", "30", *TINY)
    assert proc.returncode == 0, proc.stderr
    vocab = load_checkpoint(run).vocab
    for ch in ["é", "\u0301", "東", "🐈", "😀", "—"]:
        assert ch in vocab.symbols  # whole code points, never bytes
    assert set(vocab.symbols) == set(UNICODE)
    sample = run_cli("sample", run, "--prime", "東京", "--length", "100", "--seed", "0")
    assert sample.returncode == 0 and sample.stdout.startswith("東京")
    assert set(sample.stdout.rstrip("\n")) <= set(UNICODE)
    ev = run_cli("eval", run, unicode_file, "--json")
    assert ev.returncode == 0, ev.stderr
    out = json.loads(ev.stdout)
    assert out["chars"] == len(UNICODE * 40) - 1 and out["unknown_chars"] == 0
    # an evaluation text with unseen characters is scored without them, and says so
    other = tmp_path / "other.txt"
    other.write_text("Café ☕ au lait 🐈", encoding="utf-8")
    ev = run_cli("eval", run, other, "--json")
    out = json.loads(ev.stdout)
    assert out["unknown_chars"] > 0 and "☕" in out["unknown_symbols"] and "not scored" in ev.stderr


def test_eval_matches_the_model_and_reports_all_units(tmp_path, sonnet_file):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "20", *TINY).returncode == 0
    proc = run_cli("eval", run, sonnet_file, "--json")
    out = json.loads(proc.stdout)
    assert out["chars"] == len(SONNET * 6) - 1
    assert math.isclose(out["bits_per_char"], out["nats_per_char"] / math.log(2))
    assert math.isclose(out["perplexity"], math.exp(out["nats_per_char"]))
    # the same number by hand: one stream, state carried through the whole text
    c = load_checkpoint(run)
    ids = c.vocab.encode(SONNET * 6).astype(np.int64)
    logits, _ = c.model.logits(ids[None, :-1])
    logp = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
    want = -logp[np.arange(len(ids) - 1), ids[1:]].mean()
    assert math.isclose(out["nats_per_char"], want, rel_tol=1e-5)
    human = run_cli("eval", run, sonnet_file)
    assert "nats/char" in human.stdout and "bits/char" in human.stdout and "perplexity" in human.stdout


def test_export_loads_into_pytorch_with_the_same_loss_as_eval(tmp_path, sonnet_file, torch):
    run = tmp_path / "run"
    assert run_cli("train", sonnet_file, "--out", run, "--steps", "20", "--num-layers", "2", "--cell", "rnn", *TINY).returncode == 0
    out = tmp_path / "model.safetensors"
    proc = run_cli("export", run, "--format", "torch", out)
    assert proc.returncode == 0, proc.stderr
    from safetensors.torch import load_file

    state = load_file(str(out))
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    vocab = Vocab.from_json(json.loads(meta["vocab"]))
    V, H = len(vocab.symbols), 24
    rnn, head = torch.nn.RNN(V, H, num_layers=2), torch.nn.Linear(H, V)
    rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    ids = torch.from_numpy(vocab.encode(SONNET * 6).astype(np.int64))
    with torch.no_grad():
        x = torch.nn.functional.one_hot(ids[:-1], V).float()[:, None, :]  # (T, 1, V)
        hs, _ = rnn(x)
        loss = torch.nn.functional.cross_entropy(head(hs[:, 0]), ids[1:]).item()
    ours = json.loads(run_cli("eval", run, sonnet_file, "--json").stdout)["nats_per_char"]
    assert math.isclose(loss, ours, rel_tol=1e-4)


def test_train_on_bytes(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, size=5000, dtype=np.uint8))
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    run = tmp_path / "run"
    proc = run_cli("train", path, "--encoding", "bytes", "--out", run, "--steps", "5", *TINY)
    assert proc.returncode == 0, proc.stderr
    c = load_checkpoint(run)
    assert c.vocab.encoding == "bytes" and c.model.vocab_size == len(set(data))


def test_min_char_rnn_preset_reproduces_seed_002(tmp_path):
    """The preset's trajectory equals the seed's program, written out here the seed's way
    (summed loss, clip +-5, Adagrad eps 1e-8 inside the sqrt)."""
    text = (SONNET * 3)[:1500]
    path = tmp_path / "input.txt"
    path.write_text(text)
    steps = 12
    trainer = Trainer(TrainConfig(text=str(path), preset="min-char-rnn", steps=steps, sample_every=0,
                                  eval_every=0), tmp_path / "run", quiet=True)
    cfg = trainer.cfg
    assert (cfg.hidden_size, cfg.seq_len, trainer.batch_size, cfg.optimizer, cfg.lr, cfg.clip_value,
            cfg.init, cfg.val_frac) == (100, 25, 1, "adagrad", 0.1, 5.0 / 25, "normal", 0.0)
    p0 = {k: v.copy() for k, v in trainer.model.params.items()}
    trainer.run()

    # seed 002: column vectors, a dict per time step, one-hot matmuls, Adagrad with eps in the sqrt
    chars = trainer.vocab.symbols
    ix = {c: i for i, c in enumerate(chars)}
    V = len(chars)
    Wxh, Whh, Why = p0["rnn.weight_ih_l0"].copy(), p0["rnn.weight_hh_l0"].copy(), p0["head.weight"].copy()
    bh = (p0["rnn.bias_ih_l0"] + p0["rnn.bias_hh_l0"])[:, None].copy()
    by = p0["head.bias"][:, None].copy()
    mem = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
    hprev = np.zeros((100, 1))
    p = 0
    for _ in range(steps):
        inputs = [ix[c] for c in text[p:p + 25]]
        targets = [ix[c] for c in text[p + 1:p + 26]]
        xs, hs, ps = {}, {-1: hprev}, {}
        for t in range(len(inputs)):
            xs[t] = np.zeros((V, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
            y = Why @ hs[t] + by
            ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        dWxh, dWhh, dWhy, dbh, dby = (np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by))
        dhnext = np.zeros_like(hprev)
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t].T
            dby += dy
            dh = Why.T @ dy + dhnext
            dhraw = (1 - hs[t] ** 2) * dh
            dbh += dhraw
            dWxh += dhraw @ xs[t].T
            dWhh += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        grads = [dWxh, dWhh, dWhy, dbh, dby]
        for param, g, m in zip([Wxh, Whh, Why, bh, by], grads, mem):
            np.clip(g, -5, 5, out=g)
            m += g * g
            param -= 0.1 * g / np.sqrt(m + 1e-8)
        hprev = hs[len(inputs) - 1]
        p += 25
    got = trainer.model.params
    # Adagrad's 1/sqrt(memory) amplifies round-off a little each step (~1e-10 after 12 steps);
    # a wrong update would be off by ~lr = 0.1.
    assert np.allclose(got["rnn.weight_ih_l0"], Wxh, rtol=0, atol=1e-8)
    assert np.allclose(got["rnn.weight_hh_l0"], Whh, rtol=0, atol=1e-8)
    assert np.allclose(got["head.weight"], Why, rtol=0, atol=1e-8)
    assert np.allclose(got["head.bias"], by[:, 0], rtol=0, atol=1e-8)
    assert np.allclose(got["rnn.bias_ih_l0"], bh[:, 0], rtol=0, atol=1e-8)
    assert not np.any(got["rnn.bias_hh_l0"])  # the second PyTorch bias is not trained
    assert np.abs(got["rnn.weight_hh_l0"] - p0["rnn.weight_hh_l0"]).max() > 0.1  # it did train


def tiny_run_losses():
    """The golden run: float64, 2 layers, Adam + clipping, state carried across windows."""
    rng = np.random.default_rng(42)
    text_ids = rng.integers(0, 11, size=2000)
    model = CharRNN(11, 16, 2, dtype="float64", seed=7, init="orthogonal")
    opt = make_optimizer("adam", model.params, 3e-3)
    h = None
    losses = []
    B, T = 4, 12
    streams = text_ids[: B * (len(text_ids) // B)].reshape(B, -1)
    for step in range(20):
        x = streams[:, step * T:(step + 1) * T]
        y = streams[:, step * T + 1:(step + 1) * T + 1]
        loss, grads, h = model.loss_and_grads(x, y, h)
        clip_grad_value_(grads, 5.0)
        opt.step(grads)
        losses.append(loss)
    return losses


def test_golden_trajectory():
    want = json.loads(GOLDEN.read_text())
    got = tiny_run_losses()
    assert len(want) == 20
    assert np.allclose(got, want, rtol=1e-10, atol=0), np.abs(np.array(got) - want).max()


if __name__ == "__main__":  # regenerate the golden file after an intended change
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(tiny_run_losses(), indent=1) + "\n")


def test_default_plan_validates_often_and_stops_when_validation_stops_improving(tmp_path, sonnet_file, monkeypatch):
    """No --steps: the time-budget plan (train/plan.py) for the default 15 minutes, validating a
    twentieth of it apart (here: 100 steps at the injected speed) and stopping early after five
    validations without a new best."""
    from charrnn.train.clock import Clock
    from charrnn.train.plan import Planner

    monkeypatch.setattr(Planner, "measure", lambda self, settings: 1e4)
    monkeypatch.setattr(Clock, "measure_step_seconds", lambda self, busy, steps: 900.0 / 20 / 100)
    trainer = Trainer(TrainConfig(text=str(sonnet_file), hidden_size=32, sample_every=0), tmp_path / "run", quiet=True)
    cfg = trainer.cfg
    assert (cfg.steps, cfg.time_budget, cfg.eval_seconds, cfg.patience) == (0, 900.0, 45.0, 5)
    assert cfg.plan and json.loads((tmp_path / "run" / CONFIG).read_text())["plan"] == cfg.plan  # recorded
    result = trainer.run()
    assert trainer.cfg.eval_every == 100
    assert result.stopped == "early"
    best = load_checkpoint(tmp_path / "run" / BEST)
    assert result.step - best.state["step"] == 5 * 100
    vals = [r["val_nats_per_char"] for r in read_metrics(tmp_path / "run") if r["val_nats_per_char"] is not None]
    assert min(vals) == best.state["best_val_loss"] < vals[-1]
    # explicit steps are honoured: no early stop unless asked for
    explicit = Trainer(TrainConfig(text=str(sonnet_file), hidden_size=32, sample_every=0, steps=30),
                       tmp_path / "run2", quiet=True)
    assert explicit.cfg.patience == 0 and explicit.cfg.eval_every == 500


def test_the_smoothed_loss_starts_at_the_first_step_s_loss(tmp_path):
    """Bias-corrected: the reported loss is a weighted mean of the steps' own losses from the
    first step on, not a curve creeping down from a uniform guess's (ln V) as before."""
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 6)
    Trainer(tiny_config(text, steps=4, log_every=1, eval_every=0, sample_every=0), tmp_path / "run", quiet=True).run()
    records = [json.loads(line) for line in (tmp_path / "run" / METRICS).read_text().splitlines()]
    losses = [r["train_loss"] for r in records]
    assert records[0]["smoothed_loss"] == pytest.approx(losses[0], rel=1e-12)
    beta = 0.99  # the default smoothing
    average = 0.0
    for n, (record, loss) in enumerate(zip(records, losses), 1):
        average = beta * average + (1 - beta) * loss
        assert record["smoothed_loss"] == pytest.approx(average / (1 - beta**n), rel=1e-9)
    assert min(losses) <= records[-1]["smoothed_loss"] <= max(losses)


def test_without_a_terminal_progress_is_plain_lines_with_one_unit(tmp_path, monkeypatch):
    """A log file or a pipe gets a plain line now and then, never the bar's carriage returns, and
    the loss in nats with bits named beside the validation."""
    import io

    from charrnn.train import progress

    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.0)  # a line at every step, for the test
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 6)
    out = io.StringIO()
    Trainer(tiny_config(text, steps=12, log_every=2, eval_every=4, sample_every=0), tmp_path / "run", stream=out).run()
    written = out.getvalue()
    assert "\r" not in written
    lines = [line for line in written.splitlines() if line.startswith("step ")]
    assert len(lines) == 12 and lines[-1].startswith("step 12 of 12: loss ")
    assert re.search(r"loss \d+\.\d{3} nats, val \d+\.\d{3} nats \(\d+\.\d{3} bits\), [\d,]+ chars/s", lines[-1])


def test_without_numba_a_run_says_so_once_and_trains_in_numpy(tmp_path, monkeypatch):
    """numba is a default dependency; where it does not import, one line says the NumPy path trains
    (never on CHARRNN_JIT=0, a choice, nor on the torch backend), and the numbers are the same."""
    import io

    from charrnn.core import _jit

    text = tmp_path / "t.txt"
    text.write_text(SONNET * 6)
    said = {}
    for case, numba, jit in (("with", _jit.numba, "1"), ("without", None, "1"), ("switched off", None, "0")):
        monkeypatch.setattr(_jit, "numba", numba)
        monkeypatch.setattr(_jit, "_looked", True)
        monkeypatch.setenv("CHARRNN_JIT", jit)
        out = io.StringIO()
        Trainer(tiny_config(text, steps=3, sample_every=0, log_every=1), tmp_path / case, stream=out).run()
        said[case] = [line for line in out.getvalue().splitlines() if "numba is not installed" in line]
    assert len(said["without"]) == 1 and said["without"][0].endswith("pip install numba")
    assert said["switched off"] == [] and (_jit.numba is None or said["with"] == [])
    assert _jit.missing_notice() is None  # CHARRNN_JIT=0 is still set: a choice, not a missing install
    losses = {case: [json.loads(line)["train_loss"] for line in (tmp_path / case / "metrics.jsonl").open()]
              for case in said}
    assert losses["without"] == losses["switched off"] and len(losses["without"]) == 3


def test_intervals_in_seconds_are_turned_into_steps_once_and_kept_on_resume(tmp_path, monkeypatch):
    """Under a time budget the intervals not given follow the clock: the speed measured once
    (injected here: 0.5 s a step) turns a twentieth of the budget into the validation interval and
    an eighth into the sampling one, recorded in config.json and the checkpoint; a resumed run
    keeps them without measuring again and ends as the run that never stopped."""
    import signal

    from charrnn.io.checkpoint import load_checkpoint
    from charrnn.train import Interrupted

    from charrnn.train.clock import Clock

    monkeypatch.setattr(Clock, "measure_step_seconds", lambda self, busy, steps: 0.5)
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 30)
    given = dict(text=str(text), hidden_size=16, seq_len=16, batch_size=4, steps=80, time_budget=100.0, log_every=5)
    ref = Trainer(given, tmp_path / "ref", quiet=True)
    ref.run()
    cfg = json.loads((tmp_path / "ref" / CONFIG).read_text())
    assert cfg["eval_every"] == 10 and cfg["sample_every"] == 25  # 5 s and 12.5 s at 0.5 s a step
    assert load_checkpoint(tmp_path / "ref" / LATEST).state["step_seconds"] == 0.5
    validated = [r["step"] for r in map(json.loads, (tmp_path / "ref" / METRICS).read_text().splitlines())
                 if r["val_nats_per_char"] is not None]
    assert validated == [20, 30, 40, 50, 60, 70, 80]  # from the measurement at step 11 on
    assert [line for line in (tmp_path / "ref" / SAMPLES).read_text().splitlines() if line.startswith("----")] == \
        ["---- step 25 ----", "---- step 50 ----", "---- step 75 ----"]
    # stopped by a signal after the measurement, resumed without measuring again
    run = Trainer(given, tmp_path / "run", quiet=True)
    real = run.objective.next_batch

    def next_batch():
        if run.objective.state.step == 33:
            run._signal = signal.SIGTERM
        return real()

    run.objective.next_batch = next_batch
    with pytest.raises(Interrupted):
        run.run()
    monkeypatch.setattr(Clock, "measure_step_seconds", lambda self, busy, steps: pytest.fail("measured again"))
    Trainer({}, tmp_path / "run", resume=True, quiet=True).run()

    def timeless(d):
        return [{k: v for k, v in json.loads(line).items() if k not in ("chars_per_s", "elapsed")}
                for line in (d / METRICS).read_text().splitlines()]

    assert timeless(tmp_path / "run") == timeless(tmp_path / "ref")
    assert (tmp_path / "run" / SAMPLES).read_text() == (tmp_path / "ref" / SAMPLES).read_text()
    a, b = load_checkpoint(tmp_path / "run" / LATEST), load_checkpoint(tmp_path / "ref" / LATEST)
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name


def test_the_closing_validation_stays_inside_the_time_budget(tmp_path, monkeypatch):
    """When the whole split would take longer than what the budget leaves for it, the closing
    validation scores a sample of it, and says so where it is printed and stored."""
    from charrnn.train.clock import Clock

    # a validation of the whole split estimated at an hour: far beyond a tenth of the budget
    monkeypatch.setattr(Clock, "closing_cost", lambda self: 3600.0)
    text = tmp_path / "t.txt"
    text.write_text(SONNET * 60)
    status = cli.main(["train", str(text), "--out", str(tmp_path / "run"), "--hidden-size", "16", "--seq-len", "16",
                       "--batch-size", "4", "--time-budget", "2", "--sample-every", "0"])
    assert status == 0
    records = [json.loads(line) for line in (tmp_path / "run" / METRICS).read_text().splitlines()]
    last = records[-1]
    assert 0 < last["val_chars"] < len(SONNET * 60) // 10
    assert last["elapsed"] < 2.0  # the tenth of the budget kept for the closing validation


def test_numbered_checkpoints_and_the_environment_record(tmp_path):
    """--keep-every keeps a training checkpoint of every N steps (the newest --keep-last of
    them), each one a run's checkpoint to sample from or continue; environment.json gets one entry
    per invocation, and is no configuration: --config refuses it."""
    from charrnn.io.checkpoint import load_checkpoint

    text = tmp_path / "t.txt"
    text.write_text(SONNET * 6)
    run = tmp_path / "run"
    common = ["--hidden-size", "8", "--seq-len", "8", "--batch-size", "2", "--quiet", "--keep-every", "5"]
    assert cli.main(["train", str(text), "--out", str(run), "--steps", "30", "--keep-last", "3", *common]) == 0
    kept = sorted(p.name for p in run.glob("step-*.safetensors"))
    assert kept == ["step-000020.safetensors", "step-000025.safetensors", "step-000030.safetensors"]
    assert load_checkpoint(run / "step-000025.safetensors").state["step"] == 25
    assert cli.main(["train", "--resume", str(run), "--steps", "40"]) == 0
    kept = sorted(p.name for p in run.glob("step-*.safetensors"))
    assert kept == ["step-000030.safetensors", "step-000035.safetensors", "step-000040.safetensors"]
    # a numbered checkpoint continues in a new directory as the run itself would have
    assert cli.main(["train", "--resume", str(run / "step-000035.safetensors"), "--out", str(tmp_path / "fork"),
                     "--steps", "40", "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "fork" / LATEST), load_checkpoint(run / LATEST)
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name]), name
    entries = json.loads((run / "environment.json").read_text())
    assert [e["invocation"] for e in entries] == ["new run", "resume"] and [e["step"] for e in entries] == [0, 30]
    for e in entries:
        assert e["charrnn"] and e["numpy"] == np.__version__ and e["cores"] >= 1 and e["python"].count(".") == 2
    proc = run_cli("train", text, "--config", run / "environment.json", "--out", tmp_path / "other")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and not (tmp_path / "other").exists()

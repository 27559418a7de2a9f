"""The API against the Python API and the diagnostics: every answer is what a notebook gets for
the same model and arguments (generation with a seed to the character, scores and states to 1e-6)."""

import json
import re

import numpy as np
import pytest

import charrnn
from charrnn.diagnostics import heatmap, saturation
from charrnn.diagnostics.match import select_and_match
from charrnn.diagnostics.ngram import compare as ngram_compare
from charrnn.io.rundir import run_text

from conftest import run_cli
from served import events, trained_runs

from starlette.testclient import TestClient  # noqa: E402  (after served checked the extra)

from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.pool import Pool  # noqa: E402
from charrnn.serve.service import Service, load_models  # noqa: E402

TEXT = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def client(runs):
    service = Service(load_models([str(runs["lstm"]), str(runs["rnn"])]))
    with TestClient(create_app(service, Pool(2, 16)), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def lms(runs):
    return {cell: charrnn.load(run) for cell, run in runs.items()}


def ok(r):
    assert r.status_code == 200, r.text
    assert "access-control-allow-origin" not in r.headers
    return r.json()


def test_models_lists_every_served_model(client, lms):
    models = ok(client.get("/api/models"))
    assert [m["name"] for m in models] == ["run-lstm", "run-rnn"]
    for m, cell in zip(models, ("lstm", "rnn")):
        lm = lms[cell]
        assert m == {"name": f"run-{cell}", "cell": lm.cell, "hidden_size": lm.hidden_size,
                     "num_layers": lm.num_layers, "vocab": lm.symbols}


def test_names_are_made_unique(runs):
    service = Service(load_models([str(runs["lstm"]), str(runs["lstm"] / "best.safetensors"), str(runs["lstm"]),
                                   str(runs["rnn"] / "best.safetensors")]))
    assert list(service.models) == ["run-lstm", "best", "run-lstm-2", "best-2"]


GENERATIONS = [
    dict(prime="Shall I", length=80, seed=1),
    dict(prime="", length=60, seed=2, temperature=0.7),
    dict(prime="Thou", length=60, seed=3, top_k=4),
    dict(prime="Thou", length=60, seed=4, top_p=0.6),
    dict(prime="And ", length=40, seed=5, greedy=True),
    dict(prime="So", length=200, seed=6, stop="e "),
    dict(prime="When", length=0, seed=7),
]


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("args", GENERATIONS)
def test_generate_is_the_python_apis(client, lms, cell, args):
    answer = ok(client.post("/api/generate", json={"model": f"run-{cell}", **args}))
    assert answer == {"text": lms[cell].generate(**args), "seed": args["seed"]}


def test_several_samples_are_the_python_apis(client, lms):
    args = dict(prime="Shall", length=50, seed=11, temperature=0.9)
    answer = ok(client.post("/api/generate", json={"model": "run-lstm", "n": 3, **args}))
    assert answer == {"texts": lms["lstm"].samples(3, **args), "seed": 11}


def test_a_generation_without_a_seed_says_the_seed_it_drew(client, lms):
    answer = ok(client.post("/api/generate", json={"model": "run-rnn", "prime": "Thy", "length": 60}))
    assert isinstance(answer["seed"], int) and answer["seed"] >= 0
    assert answer["text"] == lms["rnn"].generate("Thy", 60, seed=answer["seed"])


@pytest.mark.parametrize("args", GENERATIONS[:2] + GENERATIONS[5:])
def test_a_stream_sends_the_same_text_in_pieces(client, lms, args):
    with client.stream("POST", "/api/generate", json={"model": "run-lstm", "stream": True, **args}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = events(r.read())
    names = [n for n, _ in got]
    assert names[-1] == "done" and set(names[:-1]) <= {"piece"}
    expected = lms["lstm"].generate(**args)
    assert "".join(v for n, v in got if n == "piece") == expected
    assert got[-1][1] == {"text": expected, "seed": args["seed"]}


def test_a_stream_of_several_samples_sends_the_first_in_pieces(client, lms):
    args = dict(prime="Shall", length=50, seed=11)
    with client.stream("POST", "/api/generate", json={"model": "run-lstm", "stream": True, "n": 3, **args}) as r:
        assert r.status_code == 200
        got = events(r.read())
    texts = lms["lstm"].samples(3, **args)
    assert "".join(v for n, v in got if n == "piece") == texts[0]
    assert got[-1] == ("done", {"texts": texts, "seed": 11})


def test_score_is_the_python_apis(client, lms):
    for cell, lm in lms.items():
        answer = ok(client.post("/api/score", json={"model": f"run-{cell}", "text": TEXT}))
        s = lm.score(TEXT)
        np.testing.assert_allclose(answer["log_probs"], s.log_probs, rtol=0, atol=1e-6)
        assert len(answer["log_probs"]) == len(TEXT) - 1
        assert answer["nats_per_char"] == pytest.approx(s.nats_per_char, abs=1e-6)
        assert answer["bits_per_char"] == pytest.approx(s.bits_per_char, abs=1e-6)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_inspect_is_the_python_apis(client, lms, cell):
    lm = lms[cell]
    answer = ok(client.post("/api/inspect", json={"model": f"run-{cell}", "text": TEXT, "top_k": 3}))
    assert answer["chars"] == list(TEXT) and answer["layer"] == lm.num_layers - 1
    np.testing.assert_allclose(answer["log_probs"], lm.score(TEXT).log_probs, atol=1e-6)
    np.testing.assert_allclose(answer["states"]["h"], lm.hidden_states(TEXT)[-1], atol=1e-6)
    ids = lm.encode(TEXT)
    gates, _ = saturation.cell_gates(lm.model)
    expected_names = list(lm.model.state_parts) + [g for g in gates if g not in lm.model.state_parts]
    assert list(answer["states"]) == expected_names
    for part in lm.model.state_parts[1:]:
        np.testing.assert_allclose(answer["states"][part], heatmap.activations(lm.model, ids, 0, part), atol=1e-6)
    for g in expected_names[len(lm.model.state_parts):]:
        np.testing.assert_allclose(answer["states"][g], saturation.gate_values(lm.model, ids, 0)[:, gates.index(g)],
                                   atol=1e-6)
    # the top guesses: the softmax of the model's logits after each character, likeliest first
    p = softmax(lm.model.logits(ids[None])[0][0].astype(np.float64))
    for i in (0, 7, len(TEXT) - 1):
        best = np.argsort(-p[i], kind="stable")[:3]
        assert [g["char"] for g in answer["top"][i]] == [lm.symbols[j] for j in best]
        np.testing.assert_allclose([g["p"] for g in answer["top"][i]], p[i, best], atol=1e-6)


def test_inspect_one_state_of_a_layer(client, lms):
    answer = ok(client.post("/api/inspect", json={"model": "run-lstm", "text": TEXT[:30], "state": "f", "layer": 0}))
    assert list(answer["states"]) == ["f"] and len(answer["states"]["f"]) == 30 and len(answer["states"]["f"][0]) == 24
    assert len(answer["top"]) == 30 and len(answer["top"][0]) == 5


def test_units_are_the_heatmaps_trackers(client, lms):
    lm = lms["lstm"]
    answer = ok(client.post("/api/units", json={"model": "run-lstm", "text": TEXT}))
    assert answer["state"] == "c"  # the LSTM's heatmap state
    acts = heatmap.activations(lm.model, lm.encode(TEXT), 0, "c")
    expected = heatmap.find_trackers(TEXT, acts)
    assert [(t["property"], t["unit"]) for t in answer["trackers"]] == [(t.prop, t.unit) for t in expected]
    assert [t["r"] for t in answer["trackers"]] == pytest.approx([t.r for t in expected], abs=1e-9)


def test_match_is_select_and_match_on_the_scaled_state(client, lms):
    lm = lms["lstm"]
    acts = heatmap.scale(heatmap.activations(lm.model, lm.encode(TEXT), 0, "c"))
    for start, end, threshold in [(4, 9, 0.3), (40, 46, 0.5), (0, 2, -0.5)]:
        answer = ok(client.post("/api/match", json={"model": "run-lstm", "text": TEXT, "start": start, "end": end,
                                                    "threshold": threshold}))
        m = select_and_match(acts, start, end, threshold)
        assert answer["units"] == m.units and answer["matches"] == [list(s) for s in m.stretches]


def test_compare_scores_the_text_with_every_model(client, lms):
    answer = ok(client.post("/api/compare", json={"text": TEXT}))
    assert [m["name"] for m in answer["models"]] == ["run-lstm", "run-rnn"]
    for row, cell in zip(answer["models"], ("lstm", "rnn")):
        np.testing.assert_allclose(row["log_probs"], lms[cell].score(TEXT).log_probs, atol=1e-6)
        assert row["chars"] == list(TEXT)
    answer = ok(client.post("/api/compare", json={"text": "Shall I ☃"}))
    assert all("'☃'" in m["error"] for m in answer["models"])


def test_gradflow_is_diagnoses(client, runs):
    answer = ok(client.post("/api/gradflow", json={"model": "run-rnn"}))
    r = run_cli("diagnose", runs["rnn"], "--json")
    assert r.returncode == 0, r.stderr
    expected = json.loads(r.stdout)
    assert answer["warmup"] == expected["warmup"] and answer["text"] == expected["text"]
    for key in ("cell", "max_lag", "text_chars", "targets", "verdict", "effective_memory"):
        assert answer[key] == expected[key], key
    np.testing.assert_allclose(answer["grad_norm_by_lag"], expected["grad_norm_by_lag"], rtol=1e-9)
    np.testing.assert_allclose(answer["spectral_radius"], expected["spectral_radius"], rtol=1e-9)


def test_saturation_is_the_diagnostics(client, lms):
    lm = lms["lstm"]
    answer = ok(client.post("/api/saturation", json={"model": "run-lstm", "text": TEXT}))
    expected = saturation.gate_saturation(lm.model, lm.encode(TEXT))
    assert answer["gates"] == [s.to_json() for s in expected] and answer["chars"] == len(TEXT)
    assert [g["gate"] for g in answer["gates"]] == list(saturation.cell_gates(lm.model)[1])
    on_run = ok(client.post("/api/saturation", json={"model": "run-lstm"}))
    assert on_run["text"] == "the run's validation text" and len(on_run["gates"][0]["left"]) == lm.hidden_size
    assert ok(client.post("/api/saturation", json={"model": "run-rnn", "text": TEXT}))["gates"] == []


def test_ngram_is_the_diagnostics(client, lms, runs):
    lm = lms["lstm"]
    answer = ok(client.post("/api/ngram", json={"model": "run-lstm", "order": 3, "text": TEXT}))
    c = lm.path  # the checkpoint the model came from: the run's training split is the n-gram's
    from charrnn.io.checkpoint import load_checkpoint

    train = run_text(load_checkpoint(c)).train
    expected = ngram_compare(train, lm.encode(TEXT), lm.score(TEXT).log_probs, list(TEXT), len(lm.symbols), 3)
    assert answer["order"] == 3 and answer["fit_chars"] == len(train)
    np.testing.assert_allclose(answer["ngram_log_probs"], expected.ngram_log_probs, rtol=1e-12)
    np.testing.assert_allclose(answer["model_log_probs"], lm.score(TEXT).log_probs, atol=1e-6)
    assert answer["by_char"][0]["char"] == expected.by_character()[0].char
    held = ok(client.post("/api/ngram", json={"model": "run-lstm"}))
    assert held["text"] == "the run's validation text" and held["order"] == 5


def test_text_is_the_runs_held_out_text(client, lms, runs):
    from charrnn.io.checkpoint import load_checkpoint

    answer = ok(client.post("/api/text", json={"model": "run-lstm", "chars": 50}))
    rt = run_text(load_checkpoint(runs["lstm"]))
    assert answer["text"] == lms["lstm"].decode(rt.val[:50]) and answer["where"] == "the run's validation text"


def test_the_model_may_be_left_out_when_one_is_served(runs, lms):
    service = Service(load_models([str(runs["rnn"])]))
    with TestClient(create_app(service, Pool(1, 4)), base_url="http://127.0.0.1") as c:
        answer = ok(c.post("/api/generate", json={"prime": "So", "length": 30, "seed": 9}))
        assert answer["text"] == lms["rnn"].generate("So", 30, seed=9)


def test_with_several_models_one_must_be_named(client):
    r = client.post("/api/score", json={"text": TEXT})
    assert r.status_code == 422 and "run-lstm, run-rnn" in r.json()["error"]


def test_health_counts_the_pools_work(client):
    answer = ok(client.get("/api/health"))
    assert answer == {"running": 0, "queued": 0, "workers": 2, "queue": 16, "models": ["run-lstm", "run-rnn"]}


def test_the_page_is_served_with_its_policy(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for needle in ("http://", "https://", "<link rel=\"stylesheet\"", "src=", "@import", "url("):
        assert needle not in page.replace("http://www.w3.org/2000/svg", "")
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    # the page asks nothing but /api
    assert set(re.findall(r'"(/[a-z/]*)', page)) <= {"/api/models", "/api/", "/api/generate"}




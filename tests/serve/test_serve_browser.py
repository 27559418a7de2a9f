"""The explorer page in headless Chromium against a real server: a seeded generation streams in and
equals the API's text, hovering a character shows the API's top guesses, a selection underlines
the stretches the API matches, the analyses and the comparison draw, nothing is logged as an
error, and a screenshot is not blank."""

import io
import json

import numpy as np
import pytest

import charrnn
from charrnn.diagnostics import heatmap
from charrnn.diagnostics.match import select_and_match

from conftest import optional
from devtools import Browser
from served import Server, post, trained_runs

pytestmark = pytest.mark.browser
optional("websocket")  # the DevTools client
matplotlib = optional("matplotlib")  # reads the screenshot
import matplotlib.image  # noqa: E402

TEXT = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 3


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    runs = trained_runs(tmp_path_factory)
    with Server(runs["lstm"], runs["rnn"]) as server:
        browser = Browser(tmp_path_factory.mktemp("chromium"))
        try:
            browser.open(server.url + "/")
            browser.wait_for("document.getElementById('i-state').options.length > 0")
            yield browser, server
        finally:
            browser.close()


def set_value(b, id_, value):
    b.evaluate(f"document.getElementById({json.dumps(id_)}).value = {json.dumps(value)}, 1")


def test_a_seeded_generation_streams_in_and_equals_the_apis(page):
    b, server = page
    set_value(b, "g-prime", "Shall I")
    set_value(b, "g-length", "150")
    set_value(b, "g-seed", "5")
    set_value(b, "g-n", "2")
    # record every state of the first sample's text as it grows
    b.evaluate("window.__seen = []; new MutationObserver(() => window.__seen.push("
               "document.querySelector('.sample pre') ? document.querySelector('.sample pre').textContent : '')"
               ").observe(document.getElementById('g-out'), {subtree: true, childList: true, characterData: true}), 1")
    b.click("#g-run")
    b.wait_for("document.querySelectorAll('.sample').length === 2 && "
               "[...document.querySelectorAll('.sample')].every(s => s.dataset.done === '1')")
    shown = b.evaluate("[...document.querySelectorAll('.sample pre')].map(p => p.textContent)")
    seeds = b.evaluate("[...document.querySelectorAll('.sample')].map(s => s.dataset.seed)")
    assert seeds == ["5", "6"]
    for text, seed in zip(shown, (5, 6)):
        status, answer = post(server.port, "generate", {"model": "run-lstm", "prime": "Shall I", "length": 150,
                                                         "temperature": 0.8, "seed": seed})
        assert status == 200 and text == answer["text"]
    seen = [s for s in b.evaluate("window.__seen") if s]
    assert all(shown[0].startswith(s) for s in seen)  # it only ever grew toward the final text


def inspected(b, text):
    set_value(b, "i-text", text)
    b.click("#i-run")
    b.wait_for(f"document.querySelectorAll('#i-view span').length === {len(text)}")


def test_hovering_a_character_shows_the_apis_top_guesses(page):
    b, server = page
    inspected(b, TEXT)
    status, api = post(server.port, "inspect", {"model": "run-lstm", "text": TEXT, "state": "c"})
    assert status == 200
    for i in (3, 40, len(TEXT) - 1):
        x, y = b.centre(f"#i-view span[data-i='{i}']")
        b.mouse("mouseMoved", x, y)
        b.wait_for(f"document.getElementById('tip').dataset.i === '{i}' && "
                   "document.getElementById('tip').style.display === 'block'")
        rows = b.evaluate("[...document.querySelectorAll('#tip tr')].map(r => [...r.cells].map(c => c.textContent))")
        shown = {"\n": "\u21b5", " ": "\u2423"}
        assert rows == [[f"'{shown.get(g['char'], g['char'])}'", f"{100 * g['p']:.1f}%"] for g in api["top"][i]]
        tip = b.evaluate("document.getElementById('tip').textContent")
        if i + 1 < len(TEXT):
            assert f"surprisal {-api['log_probs'][i] / np.log(2):.2f} bits" in tip
        else:
            assert "next came" not in tip
    # every character is coloured by the unit's value: red above zero, blue below
    unit = int(b.evaluate("document.getElementById('i-unit').value"))
    colours = b.evaluate("[...document.querySelectorAll('#i-view span')].map(s => s.style.backgroundColor)")
    values = np.array(api["states"]["c"])[:, unit]
    for colour, v in zip(colours, values):
        if abs(v) > 0.05:
            assert colour.startswith("rgba(214, 39, 40" if v > 0 else "rgba(31, 119, 180"), (colour, v)


def test_a_selection_lists_its_units_and_underlines_the_apis_matches(page, tmp_path_factory):
    b, server = page
    set_value(b, "i-state", "h")
    inspected(b, TEXT)
    # a selection that has matches elsewhere, found with the diagnostics themselves
    lm = charrnn.load(trained_runs(tmp_path_factory)["lstm"])
    acts = heatmap.scale(lm.hidden_states(TEXT)[0].astype(np.float64))
    start, end, threshold = next((s, s + n, t) for t in (0.5, 0.3) for n in (4, 3, 2) for s in range(len(TEXT) - n)
                                 if 0 < len(select_and_match(acts, s, s + n, t).stretches) < 20)
    status, api = post(server.port, "match", {"model": "run-lstm", "text": TEXT, "state": "h", "start": start,
                                              "end": end, "threshold": threshold})
    assert status == 200 and api["matches"]
    set_value(b, "m-threshold", str(threshold))
    # the real mouse: press before the first character, drag to the last, release
    x0, y0 = b.centre(f"#i-view span[data-i='{start}']")
    x1, y1 = b.centre(f"#i-view span[data-i='{end - 1}']")
    b.mouse("mouseMoved", x0 - 2, y0)
    b.mouse("mousePressed", x0 - 2, y0, 1)
    b.mouse("mouseMoved", (x0 + x1) / 2, (y0 + y1) / 2, 1)
    b.mouse("mouseMoved", x1 + 2, y1, 1)
    b.mouse("mouseReleased", x1 + 2, y1)
    b.wait_for("document.querySelectorAll('#i-view span.sel').length > 0")
    selected = b.evaluate("[...document.querySelectorAll('#i-view span.sel')].map(s => +s.dataset.i)")
    assert selected == list(range(start, end))
    underlined = b.evaluate("[...document.querySelectorAll('#i-view span.match')].map(s => +s.dataset.i)")
    assert underlined == [i for s, e in api["matches"] for i in range(s, e)]
    units = b.evaluate("[...document.querySelectorAll('#m-units button')].map(x => x.textContent)")
    assert units == [f"unit {u}" for u in api["units"]]


def test_the_analyses_and_the_comparison_draw(page):
    b, server = page
    b.click("#d-run")
    b.wait_for("!!(document.querySelector('#d-gradflow svg polyline') && document.querySelector('#d-saturation svg') "
               "&& document.querySelector('#d-ngram table'))", timeout=120)
    dots = b.evaluate("document.querySelectorAll('#d-saturation circle').length")
    assert dots == 3 * 24  # the LSTM's three sigmoid gates, a dot per unit
    set_value(b, "c-text", TEXT[:80])
    b.click("#c-run")
    b.wait_for("document.querySelectorAll('#c-out .cmp-row').length === 2")
    heads = b.evaluate("[...document.querySelectorAll('#c-out .cmp-row h3')].map(h => h.textContent)")
    for head, name in zip(heads, ("run-lstm", "run-rnn")):
        status, api = post(server.port, "score", {"model": name, "text": TEXT[:80]})
        assert head == f"{name}: {api['bits_per_char']:.3f} bits/char"


def test_no_console_errors_and_a_screenshot_that_is_not_blank(page, tmp_path):
    b, _ = page
    b.evaluate("window.scrollTo(0, 0), 1")
    shot = b.screenshot()
    img = matplotlib.image.imread(io.BytesIO(shot), format="png")[..., :3]
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img.std() > 0.05  # not one flat colour
    assert (img.min(axis=2) < 0.9).mean() > 0.02  # text, boxes and colours cover part of it
    # the heatmap's colours are on screen: reddish and bluish pixels both
    r, g, bl = img[..., 0], img[..., 1], img[..., 2]
    assert ((r > bl + 0.2) & (r > g + 0.2)).any() and ((bl > r + 0.2)).any()
    assert b.console_errors() == []

"""`charrnn report RUN`: one self-contained HTML page about a run.

Everything comes from the run directory: config.json, metrics.jsonl, samples.txt, tokens.bin and
the best (else latest) checkpoint. Figures are PNGs inlined as base64 data URLs and the page has
no script, font or style from anywhere else, so it opens offline and can be mailed as one file.
A part that has nothing to show yet (no metrics, no samples, no checkpoint) is a section that
says so instead of a figure.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import checkpoint as ckpt
from ..errors import CharRNNError
from ..io.rundir import read_config, read_metrics, read_samples, run_dir_of, run_text

# what the report measures: characters of validation text for the gradient flow and the heatmap
GRADFLOW_WINDOW = 240
GRADFLOW_MAX_LAG = 80
HEATMAP_CHARS = 600
WARMUP = 100
SAMPLES_SHOWN = 4
# the n-gram comparison: held-out characters scored, the order, characters coloured, rows shown
NGRAM_CHARS = 2000
NGRAM_ORDER = 5
NGRAM_SHOWN = 600
NGRAM_ROWS = 10

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 62em;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.empty { color: #8a6d3b; background: #fcf8e3; border: 1px solid #faebcc; padding: 0.6em 1em; }
.sample, .heat { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap;
                 border: 1px solid #ddd; padding: 0.6em; font-size: 0.9em; }
.copied { background: #ffe08a; }
.note { color: #555; font-size: 0.9em; }
.config { columns: 2; }
"""


@dataclass
class Section:
    title: str
    body: str


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _empty(message: str) -> str:
    return f'<p class="empty">Nothing to show: {_esc(message)}</p>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _config_section(run_dir: Path) -> Section:
    cfg = read_config(run_dir)
    if cfg is None:
        return Section("Configuration", _empty(f"{run_dir / ckpt.CONFIG} does not exist yet"))
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v))}</td></tr>" for k, v in cfg.items())
    return Section("Configuration", f'<div class="config"><table>{rows}</table></div>')


def _curves_section(run_dir: Path) -> Section:
    from ..diagnostics.plots import curves_figure, png_bytes

    m = read_metrics(run_dir)
    if not m.records:
        return Section("Training curves", _empty("no metrics yet (metrics.jsonl has no step recorded)"))
    last = m.records[-1]
    val = [r for r in m.records if r.get("val_nats_per_char") is not None]
    facts = [f"{len(m.records)} reports up to step {last['step']:,}"]
    if val:
        best = min(val, key=lambda r: r["val_nats_per_char"])
        facts.append(f"best validation {best['val_nats_per_char']:.4f} nats/char "
                     f"({best['val_bits_per_char']:.4f} bits) at step {best['step']:,}")
    if m.skipped:
        facts.append(f"{m.skipped} unreadable line(s) skipped")
    from ..diagnostics.gradflow import gate_names

    gates = gate_names((read_config(run_dir) or {}).get("cell"))
    body = f'<p>{_esc("; ".join(facts))}.</p>' + _img(png_bytes(curves_figure(m.records, gates)), "training curves")
    norms = last.get("grad_norms")
    if isinstance(norms, dict) and norms:
        rows = "".join(f"<tr><td>{_esc(k)}</td><td>{v:.4g}</td></tr>" for k, v in norms.items())
        body += (f"<p>Gradient norm of every parameter at step {last['step']:,} (before clipping):</p>"
                 f"<table><tr><th>parameter</th><th>norm</th></tr>{rows}</table>")
    return Section("Training curves", body)


def _sample_html(text: str, copied: np.ndarray) -> str:
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and copied[j] == copied[i]:
            j += 1
        piece = _esc(text[i:j])
        out.append(f'<span class="copied">{piece}</span>' if copied[i] else piece)
        i = j
    return '<div class="sample">' + "".join(out) + "</div>"


def _samples_section(run_dir: Path, c: Any) -> Section:
    from ..diagnostics.novelty import COPY_MARK, MAX_CHARS, NoveltyIndex

    samples = read_samples(run_dir)
    if not samples:
        return Section("Samples", _empty("no samples yet (samples.txt is empty or missing)"))
    shown = samples[-SAMPLES_SHOWN:]
    index = None
    note = ""
    if c is not None and c.vocab is not None and c.vocab.encoding != "bytes":
        try:
            text = run_text(c)
            index = NoveltyIndex(text.train, c.vocab.decode)
            if index.truncated:
                note = f" (measured against the first {MAX_CHARS:,} training characters)"
        except CharRNNError as e:
            note = f" (no novelty marks: {e})"
    body = [f"<p>The last {len(shown)} of {len(samples)} samples written during training. "
            f'<span class="copied">Highlighted</span>: inside a substring of {COPY_MARK} or more characters '
            f"that occurs in the training text{_esc(note)}.</p>"]
    for step, s in shown:
        body.append(f"<h3>step {step:,}</h3>")
        if index is not None:
            ids = c.vocab.encode(s, unknown="skip")
            known = c.vocab.decode(ids)
            nov = index.novelty(ids)
            body.append(f'<p class="note">{_esc(nov.summary())}</p>')
            body.append(_sample_html(known, index.copied_mask(ids)))
        else:
            body.append(_sample_html(s, np.zeros(len(s), dtype=bool)))
    return Section("Samples", "".join(body))


def _model_sections(c: Any) -> list[Section]:
    """Gradient flow and heatmaps, measured on the run's validation text."""
    from ..diagnostics.gradflow import diagnose
    from ..diagnostics.heatmap import display_text, heatmap_sections, text_html
    from ..diagnostics.plots import gradflow_figure, png_bytes

    rt = run_text(c)
    source = rt.val if len(rt.val) > 1 else rt.train
    ids = np.asarray(source[: WARMUP + max(GRADFLOW_WINDOW, HEATMAP_CHARS)], dtype=np.intp)
    model = c.model
    warm = max(0, min(WARMUP, len(ids) - 3))
    state0 = model.logits(ids[None, :warm])[1] if warm else None
    text_ids = ids[warm:]
    sections = []
    window = text_ids[:GRADFLOW_WINDOW]
    if len(window) < 3:
        sections.append(Section("Gradient flow through time", _empty("the run's text is too short to measure it")))
    else:
        lag = min(GRADFLOW_MAX_LAG, len(window) - 2)
        d = diagnose(model, window, lag, state0)
        reading = "".join(f"<li>{_esc(line)}</li>" for line in d.reading())
        rows = "".join(
            f"<tr><td>{l}</td><td>{_esc(_fmt(r.spectral_radius))}</td><td>{r.jacobian_norm['median']:.3f}</td>"
            f"<td>{r.saturation['all']:.1%}</td><td>{_esc(r.effective_memory if r.effective_memory is not None else f'> {lag}')}</td>"
            f"<td>{_esc(r.verdict)}</td></tr>" for l, r in enumerate(d.layers))
        sections.append(Section("Gradient flow through time", (
            f"<p>|dL_t/dh_(t-k)| by lag k, exactly, averaged over {d.targets} targets of the validation text "
            f"({len(window)} characters after {warm} to settle the state).</p>"
            + _img(png_bytes(gradflow_figure({model.cell: d})), "gradient norm against lag")
            + f"<ul>{reading}</ul><table><tr><th>layer</th><th>spectral radius of W_hh</th>"
            "<th>|state Jacobian| (median)</th><th>saturated</th><th>effective memory</th><th>reading</th></tr>"
            f"{rows}</table>")))
    sections.append(_saturation_section(model, window, state0))
    sections.append(_ngram_section(c, rt))
    heat_ids = text_ids[:HEATMAP_CHARS]
    text = display_text(c.vocab, heat_ids)
    part = model.cell_module.HEATMAP_STATE
    trackers, panels = heatmap_sections(model, text, heat_ids, model.num_layers - 1, part, None, state0)
    if not panels:
        sections.append(Section("Hidden units", _empty("no property of the text varies (no lines, words or capitals)")))
    else:
        body = "".join(f"<h3>{_esc(h)}</h3>{text_html(text, v)}" for h, v in panels)
        sections.append(Section("Hidden units", (
            "<p>Each character coloured by one unit's value after reading it (red positive, blue negative); "
            "the units shown are those that correlate best with a property of the text.</p>" + body)))
    return sections


def _saturation_section(model: Any, ids: np.ndarray, state0: Any) -> Section:
    """Gate saturation as Karpathy et al. (2015) draw it, on the gradient flow's window."""
    from ..diagnostics.plots import png_bytes
    from ..diagnostics.saturation import LEFT, RIGHT, gate_saturation, saturation_figure

    title = "Gate saturation"
    if len(ids) < 1:
        return Section(title, _empty("the run's text is too short to measure it"))
    sats = gate_saturation(model, ids, state0)
    if not sats:
        return Section(title, _empty(f"a {model.cell} has no sigmoid gates (its units saturate at +-1: see the "
                                     "gradient flow's table)"))
    rows = "".join(
        f"<tr><td>{s.layer}</td><td>{_esc(s.gate)}</td><td>{s.left.mean():.1%}</td><td>{s.right.mean():.1%}</td>"
        f"<td>{int((s.right > 0.5).sum())}</td><td>{int((s.left > 0.5).sum())}</td></tr>" for s in sats)
    return Section(title, (
        f"<p>For every sigmoid gate of every unit, the fraction of the {len(ids)} characters of validation text "
        f"where it is left-saturated (below {LEFT}: nearly shut) and right-saturated (above {RIGHT}: nearly open), "
        "one dot per unit (Karpathy, Johnson and Fei-Fei 2015, figure 3). Units in the top-left corner keep their gate "
        "open all the time (a forget gate that carries information far); units near the diagonal switch with the "
        "text.</p>" + _img(png_bytes(saturation_figure(sats)), "gate saturation per unit")
        + "<table><tr><th>layer</th><th>gate</th><th>time left-saturated (mean over units)</th>"
        "<th>time right-saturated</th><th>units open more than half the time</th>"
        f"<th>units shut more than half the time</th></tr>{rows}</table>"))


def _ngram_section(c: Any, rt: Any) -> Section:
    """The model's loss per character against an interpolated Kneser-Ney n-gram fitted on the
    run's training split, on its held-out text: what the recurrence buys."""
    from ..api import LanguageModel
    from ..diagnostics.heatmap import text_html
    from ..diagnostics.ngram import compare_model, max_order

    title = "The recurrent model against an n-gram"
    if len(rt.val) < 2:
        return Section(title, _empty("the run holds out no validation text to compare on"))
    order = min(NGRAM_ORDER, max_order(c.vocab.size))
    comp = compare_model(LanguageModel(c.model, c.vocab), rt.train, np.asarray(rt.val[:NGRAM_CHARS]), order)
    rows = "".join(
        f"<tr><td><code>{_esc(repr(g.char))}</code></td><td>{g.count}</td><td>{g.model_bits:.2f}</td>"
        f"<td>{g.ngram_bits:.2f}</td><td>{g.gain:+.2f}</td></tr>"
        for g in comp.by_character(min_count=5)[:NGRAM_ROWS])
    gains = np.r_[0.0, comp.gains][:NGRAM_SHOWN]  # the first character is not scored
    shown = "".join(comp.chars[:NGRAM_SHOWN])
    return Section(title, (
        f"<p>On {len(comp.chars):,} characters of validation text, this model needs "
        f"<b>{comp.model_bits_per_char:.3f} bits per character</b>; an interpolated Kneser-Ney {order}-gram (Chen and "
        f"Goodman 1998, discounts {', '.join(f'{d:.2f}' for d in comp.discounts)}) fitted on the run's "
        f"{comp.fit_chars:,} training characters needs <b>{comp.ngram_bits_per_char:.3f}</b>. The n-gram sees the "
        f"{order - 1} characters before; the network has its state. The characters (seen 5 times or more) where the "
        "network gains most:</p><table><tr><th>character</th><th>count</th><th>network, bits</th>"
        f"<th>{order}-gram, bits</th><th>gain</th></tr>{rows}</table>"
        "<p>Each character coloured by the bits the network saves on it (red) or loses (blue) against the n-gram: "
        "long-range ones, such as a closing bracket or quote, or the start of a speaker's line, are where the state "
        "pays (hover for the bits).</p>" + text_html(shown, gains)))


def _fmt(v: Any) -> str:
    return ", ".join(f"{x:.3f}" for x in v) if isinstance(v, list) else f"{v:.3f}"


def build_report(run: str | Path) -> str:
    """The whole page for a run directory (or a checkpoint file inside one), as a string."""
    from ..diagnostics.plots import pyplot

    pyplot()  # a missing matplotlib is reported before any work
    run_dir = run_dir_of(run)  # refuses an empty or missing path (never the current folder)
    c = None
    model_note = ""
    try:
        c = ckpt.load_checkpoint(run, dtype="float64")
    except CharRNNError as e:
        model_note = str(e)
    sections = [_config_section(run_dir), _curves_section(run_dir), _samples_section(run_dir, c)]
    if c is not None and c.vocab is not None and c.config is not None:
        try:
            sections += _model_sections(c)
        except CharRNNError as e:
            sections.append(Section("Gradient flow and hidden units", _empty(str(e))))
    else:
        why = model_note or f"{c.path if c else run} is not a training checkpoint"
        sections.append(Section("Gradient flow and hidden units", _empty(why)))
    title = f"charrnn report: {run_dir.name}"
    summary = ""
    if c is not None:
        saved = c.config.dtype if c.config is not None else "its own dtype"
        summary = (f"<p>{_esc(c.model)} from {_esc(c.path.name)} (trained in {_esc(saved)}; measured here in "
                   "float64).</p>")
    body = "".join(f"<h2>{_esc(s.title)}</h2>{s.body}" for s in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{_esc(title)}</h1>{summary}{body}</body></html>")

"""A self-contained HTML training report per model version: learning curves, confusion matrix, per-class table,
the data check in words, the search's trials, hyperparameters and lineage.

No plotting library: the curves are inline SVG, so the file opens anywhere and can be mailed as it is. The
sections are functions of their own: the web view's version page shows the same ones (every value escaped).
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from db.names import format_model_ref
from worker.ml.files import write_text_atomic
from worker.ops.report_trust import (about_section, baselines_section, calibration_section, selection_note,
                                     warnings_section)


def report_path(artifact_path: str | Path) -> Path:
    """Beside the artifact folder (not inside it: that would change the artifact's hash)."""
    artifact = Path(artifact_path)
    return artifact.with_name(artifact.name + ".report.html")


def _polyline(xs: Sequence[float], ys: Sequence[float], x_range, y_range, box, color: str) -> str:
    (x0, x1), (y0, y1), (left, top, width, height) = x_range, y_range, box
    points = []
    for x, y in zip(xs, ys):
        if y is None:
            continue
        px = left + (x - x0) / ((x1 - x0) or 1) * width
        py = top + height - (y - y0) / ((y1 - y0) or 1) * height
        points.append(f"{px:.1f},{py:.1f}")
    dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{color}"/>' for p in points)
    return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>{dots}'


def curve_svg(title: str, epochs: Sequence[int], series: dict[str, Sequence[float]]) -> str:
    """A small line chart of per-epoch values, one line per series, with a legend."""
    width, height, left, top, plot_w, plot_h = 420, 240, 50, 30, 340, 160
    values = [v for ys in series.values() for v in ys if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.1
    lo, hi = lo - pad, hi + pad
    x_range = (min(epochs), max(epochs)) if epochs else (0, 1)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    for frac in (0.0, 0.5, 1.0):
        y_val = lo + (hi - lo) * frac
        y_px = top + plot_h - frac * plot_h
        parts.append(f'<text x="{left - 6}" y="{y_px + 4:.1f}" font-size="10" text-anchor="end">{y_val:.3f}</text>')
    for e in epochs:
        x_px = left + (e - x_range[0]) / ((x_range[1] - x_range[0]) or 1) * plot_w
        parts.append(f'<text x="{x_px:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle">{e}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 28}" font-size="11" text-anchor="middle">epoch</text>')
    for i, (name, ys) in enumerate(series.items()):
        color = colors[i % len(colors)]
        parts.append(_polyline(epochs, ys, x_range, (lo, hi), (left, top, plot_w, plot_h), color))
        parts.append(f'<text x="{left + 8 + i * 110}" y="{top + 14}" font-size="11" fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def confusion_table(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Rows: the true class; columns: the predicted one. The diagonal (correct) is green, errors red; the
    darker, the more documents. A row's total and recall close it."""
    peak_hit = max((row[i] for i, row in enumerate(matrix) if i < len(row)), default=0) or 1
    peak_miss = max((n for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j), default=0) or 1
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for i, (label, row) in enumerate(zip(labels, matrix)):
        cells = []
        for j, n in enumerate(row):
            hit = i == j
            alpha = 0.15 + 0.75 * n / (peak_hit if hit else peak_miss) if n else 0.0
            color = f"rgba(44,160,44,{alpha:.2f})" if hit else f"rgba(214,39,40,{alpha:.2f})"
            tip = html.escape(f"true {label}, predicted {labels[j] if j < len(labels) else j}: {n}", quote=True)
            cells.append(f'<td class="{"hit" if hit else "miss"}" title="{tip}" style="background:{color}">{n}</td>')
        total = sum(row)
        recall = f"{row[i] / total:.2f}" if total and i < len(row) else "-"
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}<td>{total}</td><td>{recall}</td></tr>")
    return (f'<table class="cm"><tr><th>true \\ predicted</th>{head}<th>total</th><th>recall</th></tr>'
            f'{"".join(rows)}</table><p class="legend"><span class="key hit-key"></span> diagonal: correct '
            '<span class="key miss-key"></span> off the diagonal: errors (darker: more documents)</p>')


def per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    """Precision, recall, F1 and support per class; multi-label models add each label's threshold."""
    thresholds = any("threshold" in m for m in per_class.values())
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{m['precision']:.4f}</td><td>{m['recall']:.4f}</td>"
        f"<td>{m['f1']:.4f}</td><td>{m['support']}</td>"
        + (f"<td>{m.get('threshold', 0.5):.2f}</td>" if thresholds else "") + "</tr>"
        for label, m in per_class.items())
    extra = "<th>threshold</th>" if thresholds else ""
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            f"{extra}</tr>{rows}</table>")


def trials_table(trials: Sequence[dict] | None) -> str:
    """A hyperparameter search's trials, the selected one in bold; empty without a search."""
    if not trials:
        return ""
    names = list(trials[0]["options"])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for t in trials:
        cells = "".join(f"<td>{html.escape(str(t['options'][n]))}</td>" for n in names)
        style = ' style="font-weight:bold"' if t.get("selected") else ""
        rows.append(f"<tr{style}><td>{t['trial']}</td>{cells}<td>{t['accuracy']:.4f}</td><td>{t['macro_f1']:.4f}</td>"
                    f"<td>{t['best_epoch']}</td><td>{t['seconds']:.0f}</td></tr>")
    return (f"<h2>Hyperparameter search ({len(trials)} trials, selected in bold)</h2>"
            f"<table><tr><th>trial</th>{head}<th>accuracy</th><th>macro-F1</th><th>best epoch</th><th>seconds</th></tr>"
            f"{''.join(rows)}</table>")


def summary_section(model: dict[str, Any]) -> str:
    """The headline numbers in words."""
    metrics = model.get("metrics") or {}
    history = metrics.get("history") or model.get("history") or []
    parts = [f"validation accuracy <b>{metrics.get('accuracy', 0):.4f}</b>",
             f"macro-F1 <b>{metrics.get('macro_f1', 0):.4f}</b>",
             f"kept epoch {html.escape(str(metrics.get('best_epoch')))} of {len(history)}"
             f"{html.escape(selection_note(metrics.get('selection')))}"]
    if metrics.get("train_seconds"):
        parts.append(f"trained in {metrics['train_seconds']:.0f} s "
                     f"({metrics.get('train_examples_per_second') or 0:.1f} examples/s)")
    if metrics.get("stopped_early"):
        parts.append("stopped early")
    if metrics.get("resumed_from_epoch"):
        parts.append(f"resumed from the checkpoint of epoch {metrics['resumed_from_epoch']}")
    return (f"<p>Base model <code>{html.escape(str(model.get('base_model')))}</code>; " + ", ".join(parts) + ".</p>"
            + refit_note((model.get("lineage") or {}).get("refit")))


def refit_sentence(refit: dict) -> str:
    """What a refit kept (worker/ml/refit.py), and why the scores shown are the validation run's: one sentence
    for `train` and the report."""
    trained = f"trained {int(refit['epochs'])} epoch(s) on all {int(refit['train_size'])} labelled documents"
    if refit.get("averaged"):  # versions of 2026-12-06, when the refit model was averaged with the selection model
        kept = f"the model kept averages the validation run's model with one {trained}"
    elif refit.get("averaged") is False:
        kept = f"the model kept was {trained} (averaged with the validation run's model, it scored lower on validation)"
    else:  # the refit model alone: versions from before refits averaged, and since averaging was dropped
        kept = f"the model kept was {trained}"
    return f"{kept}; the scores shown are the validation run's (the refit saw the validation documents)"


def refit_note(refit: dict | None) -> str:
    """A refit model (worker/ml/refit.py): what it kept, and why the scores shown are the selection run's."""
    return f"<p><b>Refit:</b> {html.escape(refit_sentence(refit))}.</p>" if refit else ""


def curves_section(metrics: dict[str, Any], history: Sequence[dict] | None = None) -> str:
    """Loss and validation scores per epoch, two inline SVG charts."""
    history = history if history is not None else metrics.get("history") or []
    epochs = [h["epoch"] for h in history]
    loss = curve_svg("loss", epochs, {"train": [h.get("train_loss") for h in history],
                                      "validation": [h.get("val_loss") for h in history]})
    scores = curve_svg("validation scores", epochs, {"accuracy": [h.get("accuracy") for h in history],
                                                     "macro-F1": [h.get("macro_f1") for h in history]})
    return f'<div class="curves">{loss} {scores}</div>'


def confusion_section(metrics: dict) -> str:
    if metrics.get("multi_label"):  # no single confusion matrix: per-label scores below
        return (f"<p>Multi-label: exact-match accuracy {metrics.get('accuracy', 0):.4f}, micro-F1 "
                f"{metrics.get('micro_f1', 0):.4f}; a label is given when its score reaches its threshold.</p>")
    return ("<h2>Confusion matrix (validation, best epoch)</h2>"
            + confusion_table(metrics.get("confusion_matrix") or [], metrics.get("labels") or []))


def data_check_section(lineage: dict[str, Any]) -> str:
    """The data check training ran, in words: its warnings, then what it counted."""
    check = (lineage or {}).get("data_check")
    if not isinstance(check, dict):
        return "<p>No data check was recorded for this version.</p>"
    warnings = check.get("warnings") or []
    items = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    out = [f'<ul class="warnings">{items}</ul>' if warnings else "<p>No warnings.</p>"]
    counts = check.get("class_counts") or {}
    facts = [f"{check.get('documents', 0)} labelled documents in {len(counts)} classes ("
             + ", ".join(f"{html.escape(str(k))}: {v}" for k, v in counts.items())
             + (f"; imbalance {check['imbalance_ratio']}:1" if check.get("imbalance_ratio") else "") + ")"]
    length = check.get("length") or {}
    if length:
        facts.append(f"lengths {length.get('min')}-{length.get('max')} {html.escape(str(length.get('unit')))} (median "
                     f"{length.get('median')}, p95 {length.get('p95')}); {100 * length.get('truncated_share', 0):.1f}% "
                     f"longer than max_length {length.get('max_length')}")
    facts.append(f"{check.get('exact_duplicates', 0)} exact and {check.get('near_duplicates', 0)} near-exact duplicate "
                 f"texts, {check.get('conflicting_label_groups', 0)} texts with conflicting labels, "
                 f"{check.get('empty_texts', 0)} empty texts")
    if check.get("validation_texts_seen_in_training"):
        facts.append(f"{check['validation_texts_seen_in_training']} validation texts also in training, left out of "
                     "validation")
    out.append("<p>" + "; ".join(facts) + ".</p>")
    for example in (check.get("conflict_examples") or [])[:5]:
        out.append(f'<p class="example">&ldquo;{html.escape(str(example.get("text")))}&rdquo; labelled '
                   f'{html.escape(", ".join(map(str, example.get("labels") or [])))}</p>')
    return "".join(out)


def key_value_table(values: dict[str, Any] | None) -> str:
    """One row per key; nested values as compact JSON."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td class=\"text\">"
        f"{html.escape(v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str))}</td></tr>"
        for k, v in sorted((values or {}).items()) if k != "data_check")
    return f'<table class="kv">{rows}</table>'


STYLE = """body{font-family:sans-serif;margin:2em;max-width:60em} table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} .cm td{min-width:4em} td.text{text-align:left}
.legend .key{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-left:1em}
.hit-key{background:rgba(44,160,44,.7)} .miss-key{background:rgba(214,39,40,.7)} ul.warnings{color:#8a4b00}
.warn{border:2px solid #d62728;padding:0 1em;margin:1em 0} .lead{font-size:1.1em;color:#b00}"""


def int8_section(record: dict | None) -> str:
    """What OpenVINO int8 costs against fp32 on the same texts (worker/ops/quantize.py); empty when never built."""
    if not record or "int8" not in record:
        return ""
    cal, on = record.get("calibration") or {}, record.get("evaluated_on") or {}
    rows = "".join(f"<tr><td>{name}</td><td>{record[name]['accuracy']:.4f}</td><td>{record[name]['macro_f1']:.4f}</td>"
                   "</tr>" for name in ("fp32", "int8"))
    note = (f"Quantized by NNCF {html.escape(str(record.get('nncf')))} for OpenVINO "
            f"{html.escape(str(record.get('openvino')))} from {cal.get('size')} texts ({html.escape(str(cal.get('source')))}, "
            f"seed {cal.get('seed')}); scored on {html.escape(str(on.get('what')))} ({on.get('texts')} texts). "
            f"Model files sha256 <code>{html.escape(str(record.get('sha256')))}</code>.")
    return (f"<h2>OpenVINO int8 against fp32</h2><table><tr><th>precision</th><th>accuracy</th><th>macro-F1</th></tr>"
            f"{rows}</table><p>{note}</p>")


def render_report(model: dict[str, Any]) -> str:
    """HTML for a model version given as a dict: name, version, base_model, metrics, hyperparameters, lineage."""
    metrics = model.get("metrics") or {}
    title = format_model_ref(model["name"], model["version"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bertjobs report {html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Model {html.escape(title)}</h1>
{warnings_section(metrics)}
{about_section(model.get('lineage') or {})}
{summary_section(model)}
<h2>Learning curves</h2>
{curves_section(metrics)}
{baselines_section(metrics)}
{confusion_section(metrics)}
<h2>Per class</h2>
{per_class_table(metrics.get('per_class') or {})}
<h2>Data check</h2>
{data_check_section(model.get('lineage') or {})}
{trials_table(metrics.get('trials'))}
{calibration_section(metrics)}
{int8_section(metrics.get('openvino_int8'))}
<h2>Hyperparameters</h2>
{key_value_table(model.get('hyperparameters'))}
<h2>Lineage</h2>
{key_value_table(model.get('lineage'))}
</body></html>
"""


def write_report(model: dict[str, Any], artifact_path: str | Path) -> Path:
    path = report_path(artifact_path)
    write_text_atomic(path, render_report(model))
    return path


def write_model_report(mv) -> Path:
    """The report of a registered model version (a ``db.models.ModelVersion``), beside its artifact."""
    return write_report({"name": mv.name, "version": mv.version, "base_model": mv.base_model, "metrics": mv.metrics,
                         "hyperparameters": mv.hyperparameters, "lineage": mv.lineage}, mv.artifact_path)

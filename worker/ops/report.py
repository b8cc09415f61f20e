"""A self-contained HTML training report per model version: learning curves, confusion matrix, per-class table.

No plotting library: the curves are inline SVG, so the file opens anywhere and can be mailed as it is.
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
    peak = max((max(row) for row in matrix), default=0) or 1
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for label, row in zip(labels, matrix):
        cells = "".join(
            f'<td style="background: rgba(31,119,180,{0.1 + 0.8 * n / peak:.2f})">{n}</td>' for n in row)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return (f'<table class="cm"><tr><th>true \\ predicted</th>{head}</tr>{"".join(rows)}</table>')


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


def _confusion_section(metrics: dict) -> str:
    if metrics.get("multi_label"):  # no single confusion matrix: per-label scores below
        return (f"<p>Multi-label: exact-match accuracy {metrics.get('accuracy', 0):.4f}, micro-F1 "
                f"{metrics.get('micro_f1', 0):.4f}; a label is given when its score reaches its threshold.</p>")
    return ("<h2>Confusion matrix (validation, best epoch)</h2>"
            + confusion_table(metrics.get("confusion_matrix") or [], metrics.get("labels") or []))


def render_report(model: dict[str, Any]) -> str:
    """HTML for a model version given as a dict: name, version, base_model, metrics, hyperparameters, lineage."""
    metrics = model.get("metrics") or {}
    history = metrics.get("history") or []
    epochs = [h["epoch"] for h in history]
    title = format_model_ref(model["name"], model["version"])
    loss = curve_svg("loss", epochs, {"train": [h["train_loss"] for h in history],
                                      "validation": [h["val_loss"] for h in history]})
    scores = curve_svg("validation scores", epochs, {"accuracy": [h["accuracy"] for h in history],
                                                     "macro-F1": [h["macro_f1"] for h in history]})
    summary = (f"accuracy {metrics.get('accuracy', 0):.4f}, macro-F1 {metrics.get('macro_f1', 0):.4f}, "
               f"kept epoch {metrics.get('best_epoch')} of {len(history)}{selection_note(metrics.get('selection'))}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>bertjobs report {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} .cm td{{min-width:4em}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}} .warn{{border:2px solid #d62728;padding:0 1em;margin:1em 0}}
.lead{{font-size:1.1em;color:#b00}}</style></head>
<body>
<h1>Model {html.escape(title)}</h1>
{warnings_section(metrics)}
{about_section(model.get('lineage') or {})}
<p>Base model <code>{html.escape(str(model.get('base_model')))}</code>; validation {html.escape(summary)}.</p>
<h2>Learning curves</h2>
<div>{loss} {scores}</div>
{baselines_section(metrics)}
{_confusion_section(metrics)}
<h2>Per class</h2>
{per_class_table(metrics.get('per_class') or {})}
{trials_table(metrics.get('trials'))}
{calibration_section(metrics)}
{int8_section(metrics.get('openvino_int8'))}
<h2>Hyperparameters</h2>
<pre>{html.escape(json.dumps(model.get('hyperparameters') or {}, indent=2, sort_keys=True))}</pre>
<h2>Lineage</h2>
<pre>{html.escape(json.dumps(model.get('lineage') or {}, indent=2, sort_keys=True, default=str))}</pre>
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

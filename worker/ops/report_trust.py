"""The training report's honest-numbers sections (worker/ops/report.py puts them in): what the model is for,
its trust warnings and the TF-IDF baseline verdict at the top, the baselines table, and calibration with a
reliability diagram (inline SVG). Each reads the model version's metrics and lineage and returns HTML ("" when
the version has nothing to show, e.g. one trained before these were recorded)."""
from __future__ import annotations

import html
from typing import Sequence


def about_section(lineage: dict) -> str:
    """The description and tags given at training (`train --description --tag`, `models describe`)."""
    tags = lineage.get("tags") or {}
    if not lineage.get("description") and not tags:
        return ""
    items = "".join(f"<code>{html.escape(k)}={html.escape(str(v))}</code> " for k, v in sorted(tags.items()))
    return (f'<p class="about">{html.escape(lineage.get("description") or "")}</p>'
            + (f"<p>Tags: {items}</p>" if items else ""))


def warnings_section(metrics: dict) -> str:
    """First thing in the report: the TF-IDF verdict when the model is not clearly better, and every trust
    warning (such a version becomes production only with --force)."""
    comparison = metrics.get("tfidf_comparison") or {}
    lead = ""
    if comparison and not comparison.get("clearly_better") and comparison.get("line"):
        lead = f'<p class="lead"><strong>{html.escape(comparison["line"])}</strong></p>'
    warnings = metrics.get("trust_warnings") or []
    if not warnings:
        return lead
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return (f'{lead}<div class="warn"><h2>Warnings</h2><ul>{items}</ul>'
            "<p>This version becomes production only with <code>models promote --force</code>.</p></div>")


def _interval(metrics: dict, name: str) -> str:
    interval = (metrics.get("intervals") or {}).get(name)
    return f" ({interval['low']:.4f}-{interval['high']:.4f})" if interval else ""


def baselines_section(metrics: dict) -> str:
    """The model beside the majority-class and TF-IDF baselines on the same validation split."""
    majority, tfidf = metrics.get("majority_baseline"), metrics.get("tfidf_baseline")
    if not majority and not tfidf:
        return ""
    rows = [("this model", f"{metrics.get('accuracy', 0):.4f}{_interval(metrics, 'accuracy')}",
             f"{metrics.get('macro_f1', 0):.4f}{_interval(metrics, 'macro_f1')}", "")]
    if majority:
        rows.append((f"always {majority['label']!r}", f"{majority['accuracy']:.4f}", f"{majority['macro_f1']:.4f}", ""))
    if tfidf and "error" in tfidf:
        rows.append(("TF-IDF + logistic regression", "failed", html.escape(tfidf["error"]), ""))
    elif tfidf:
        rows.append(("TF-IDF + logistic regression", f"{tfidf['accuracy']:.4f}", f"{tfidf['macro_f1']:.4f}",
                     f"{tfidf['fit_seconds']:.1f} s"))
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td><td>{d}</td></tr>" for a, b, c, d in rows)
    line = (metrics.get("tfidf_comparison") or {}).get("line")
    return ("<h2>Baselines (same validation split; 95% bootstrap intervals)</h2><table><tr><th>model</th>"
            f"<th>accuracy</th><th>macro-F1</th><th>fit</th></tr>{body}</table>"
            + (f"<p>{html.escape(line)}</p>" if line else ""))


def reliability_svg(before: Sequence[dict], after: Sequence[dict]) -> str:
    """Accuracy against confidence per bin, before (red) and after (blue) temperature scaling, the diagonal
    being perfect calibration; a dot per non-empty bin."""
    size, left, top = 240, 40, 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 60}" height="{size + 60}" role="img" '
             'aria-label="reliability diagram">',
             f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/>',
             f'<line x1="{left}" y1="{top + size}" x2="{left + size}" y2="{top}" stroke="#bbb" stroke-dasharray="4"/>',
             f'<text x="{left + size / 2}" y="{top + size + 30}" font-size="11" text-anchor="middle">confidence</text>',
             f'<text x="12" y="{top + size / 2}" font-size="11" transform="rotate(-90 12 {top + size / 2})" '
             'text-anchor="middle">accuracy</text>']
    for bins, color, name, y in ((before, "#d62728", "before", 14), (after, "#1f77b4", "after", 28)):
        points = [(left + b["confidence"] * size, top + size - b["accuracy"] * size) for b in bins if b["count"]]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y_:.1f}" for x, y_ in points) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y_:.1f}" r="3" fill="{color}"/>' for x, y_ in points]
        parts.append(f'<text x="{left + 8}" y="{top + y}" font-size="11" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


def calibration_section(metrics: dict) -> str:
    calibration = metrics.get("calibration")
    if not calibration:
        return ""
    return (f"<h2>Calibration</h2><p>Temperature {calibration['temperature']:.3f}, fitted on the validation split "
            "and applied to every prediction's scores. Expected calibration error "
            f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after (measured on the texts "
            "it was fitted on, so a little optimistic).</p>"
            + reliability_svg(calibration.get("bins_before") or [], calibration.get("bins_after") or []))


def selection_note(selection: dict | None) -> str:
    """How the kept epoch was chosen (worker/ml/selection.py), for the report's summary line."""
    if not selection or selection.get("rule") in (None, "best") and not selection.get("warning"):
        return ""
    note = f" (best by {selection.get('metric')}: epoch {selection.get('best_epoch')}"
    if selection.get("rule") == "tie->later":
        note += f"; a later epoch within ±{selection.get('half_width', 0):.3f} of it was kept"
    return note + (f"; {selection['warning']}" if selection.get("warning") else "") + ")"

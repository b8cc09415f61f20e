"""What the command prints for people: job lines and tables, predictions, evaluations, model versions.

The ``--json`` documents are worker/present.py's; the progress bar is worker/progress.py's. Everything here
writes plain text to stdout and reads only the rows or dicts it is given.
"""
from __future__ import annotations

import json


def fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(start, end) -> str:
    if not start:
        return "-"
    from db.models import utcnow

    end = end or utcnow()
    if start.tzinfo is None and end.tzinfo is not None:
        end = end.replace(tzinfo=None)
    return f"{(end - start).total_seconds():.1f}s"


def progress(job) -> str:
    if job.progress_total:
        return f"{job.progress_done}/{job.progress_total} ({100 * job.progress_done / job.progress_total:.0f}%)"
    return str(job.progress_done or 0)


def one_line(text: str, width: int) -> str:
    """The text's words on one line, cut at ``width`` characters."""
    return " ".join(text.split())[:width]


# ---------------------------------------------------------------- jobs


def print_job(job) -> None:
    print(f"job {job.id}: {job.kind} {job.status}")
    print(f"  attempt    {job.attempt}/{job.max_attempts}")
    print(f"  progress   {progress(job)}")
    print(f"  created    {fmt_time(job.created_at)}")
    print(f"  started    {fmt_time(job.started_at)}")
    print(f"  finished   {fmt_time(job.finished_at)}   (ran {duration(job.started_at, job.finished_at)})")
    print(f"  params     {json.dumps(job.params, sort_keys=True)}")
    if job.error:
        print(f"  error      {job.error}")
    if job.result:
        print(f"  result     {json.dumps(job.result, sort_keys=True)}")


def print_job_table(jobs) -> None:
    print(f"{'id':>6}  {'kind':8}  {'status':9}  {'try':>3}  {'progress':>20}  {'created':19}  {'ran':>9}  error")
    for job in jobs:
        print(f"{job.id:>6}  {job.kind:8}  {job.status:9}  {job.attempt:>3}  {progress(job):>20}  "
              f"{fmt_time(job.created_at):19}  {duration(job.started_at, job.finished_at):>9}  "
              f"{(job.error or '')[:80]}")


# ---------------------------------------------------------------- predictions


def print_predictions(texts: list[str], rows: list[dict]) -> None:
    """`bertjobs predict`: label(s), score and the text, one line per text."""
    for t, r in zip(texts, rows):
        if r["error"]:
            print(f"error\t-\t{r['error']}")
        elif r["labels"] is not None:
            print(f"{','.join(r['labels']) or '(none)'}\t{r['score']:.4f}\t{one_line(t, 80)}")
        else:
            print(f"{r['label']}\t{r['score']:.4f}\t{one_line(t, 80)}")


def print_results(rows) -> None:
    """`bertjobs results`: stored predictions as (document, prediction, model version) rows."""
    print(f"{'doc':>7}  {'external_id':20}  {'model':16}  {'label':12}  {'score':>6}  text")
    for doc, pred, mv in rows:
        label = pred.label if pred.error is None else f"(failed: {pred.error})"
        score = f"{pred.score:.3f}" if pred.score is not None else "-"
        print(f"{doc.id:>7}  {doc.external_id[:20]:20}  {mv.ref:16}  {label:12}  {score:>6}  "
              f"{one_line(doc.text, 60)}")


# ---------------------------------------------------------------- evaluations


def print_evaluation(ev: dict) -> None:
    """One stored evaluation (worker/jobs/evaluation.py's ``as_dict``)."""
    base = ev["baseline"]
    print(f"evaluation {ev['id']}: {ev['model']} on {ev['collection']!r} ({ev['documents']} documents, "
          f"{ev['created_at']})")
    print(f"  accuracy   {ev['accuracy']:.4f}" + ("  (exact match of label sets)" if ev["multi_label"] else ""))
    print(f"  macro-F1   {ev['macro_f1']:.4f}")
    print(f"  baseline   accuracy {base['accuracy']:.4f}, macro-F1 {base['macro_f1']:.4f} (always "
          f"{base.get('label') or ', '.join(base.get('labels') or []) or 'no label'})")
    if ev["failed"] or ev["unlabelled"]:
        print(f"  skipped    {ev['failed']} failed, {ev['unlabelled']} unlabelled")
    _print_leakage(ev.get("leakage"))
    print(f"  data       sha256 {ev['content_sha256']}" + (f", filter {json.dumps(ev['filter'])}" if ev["filter"] else ""))
    print(f"  {'label':16}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}")
    for label, m in (ev["per_class"] or {}).items():
        print(f"  {label[:16]:16}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:>7}")
    if ev["confusion_matrix"]:
        print("  confusion (rows: gold, columns: predicted; " + ", ".join(ev["labels"]) + ")")
        for label, row in zip(ev["labels"], ev["confusion_matrix"]):
            print(f"    {label[:16]:16} " + " ".join(f"{n:>6}" for n in row))


def _print_leakage(leakage: dict | None) -> None:
    """How many evaluated texts the version saw in training, and the scores without them."""
    if not leakage or not leakage.get("in_training"):
        return
    print(f"  warning    {leakage['warning']}")
    without = leakage.get("without")
    if without:
        print(f"  unseen     accuracy {without['accuracy']:.4f}, macro-F1 {without['macro_f1']:.4f} "
              f"on the {without['documents']} documents not in training")


def _answer(value) -> str:
    return "(failed)" if value is None else ",".join(value) if isinstance(value, list) else str(value)


def print_comparison(collection: str, documents: int, evs: list[dict], diffs: list[dict], show: int) -> None:
    """`models compare`: two evaluations side by side, then the first ``show`` disagreements."""
    print(f"on {collection!r} ({documents} documents): {len(diffs)} disagreements")
    print(f"  {'':12}  {evs[0]['model']:>20}  {evs[1]['model']:>20}")
    for key in ("accuracy", "macro_f1"):
        print(f"  {key:12}  {evs[0][key]:20.4f}  {evs[1][key]:20.4f}")
    labels = list(dict.fromkeys([*(evs[0]["per_class"] or {}), *(evs[1]["per_class"] or {})]))
    for label in labels:
        f1 = [(ev["per_class"] or {}).get(label, {}).get("f1") for ev in evs]
        print(f"  {('f1 ' + label)[:12]:12}  " + "  ".join("-".rjust(20) if v is None else f"{v:20.4f}" for v in f1))
    if diffs:
        print(f"  {'doc':>7}  {'gold':12}  {evs[0]['model'][:16]:16}  {evs[1]['model'][:16]:16}  text")
    for d in diffs[:show]:
        print(f"  {d['document_id']:>7}  {_answer(d['gold'])[:12]:12}  {_answer(d['a'])[:16]:16}  "
              f"{_answer(d['b'])[:16]:16}  {one_line(d['text'], 60)}")
    if len(diffs) > show:
        print(f"  ... and {len(diffs) - show} more (--show N)")
    for ev in evs:
        leakage = ev.get("leakage") or {}
        if leakage.get("in_training"):
            print(f"  warning: {ev['model']}: {leakage['warning']}")


# ---------------------------------------------------------------- model versions


def print_model_table(versions, aliases: dict[int, list[str]], evaluated: dict[int, float]) -> None:
    """`models list`: ``val_acc``/``val_f1`` are the validation split's (training), ``eval_acc`` the accuracy
    of the version's latest stored evaluation (``evaluated``: version id -> accuracy), ``-`` when it has none.
    ``flags``: how many trust warnings the version carries (``models show`` lists them), ``-`` for none."""
    print(f"{'model':24}  {'aliases':20}  {'flags':>5}  {'val_acc':>8}  {'val_f1':>8}  {'eval_acc':>8}  {'rows':>7}  "
          f"{'created':19}  {'base model':24}  description")
    for mv in versions:
        latest = evaluated.get(mv.id)
        flags = len((mv.metrics or {}).get("trust_warnings") or [])
        print(f"{mv.ref:24}  {','.join(aliases.get(mv.id, [])) or '-':20}  {f'!{flags}' if flags else '-':>5}  "
              f"{mv.metrics.get('accuracy', 0):8.4f}  {mv.metrics.get('macro_f1', 0):8.4f}  "
              f"{'-' if latest is None else f'{latest:.4f}':>8}  {mv.lineage.get('row_count', 0):>7}  "
              f"{fmt_time(mv.created_at):19}  {mv.base_model[-24:]:24}  {_described(mv.lineage)}")
    flagged = [mv for mv in versions if (mv.metrics or {}).get("trust_warnings")]
    for mv in flagged:
        print(f"! {mv.ref}: " + "; ".join(mv.metrics["trust_warnings"]))


def _described(lineage: dict | None) -> str:
    """A version's description and tags on one short line."""
    lineage = lineage or {}
    tags = " ".join(f"{k}={v}" for k, v in sorted((lineage.get("tags") or {}).items()))
    return one_line(" ".join(x for x in (lineage.get("description") or "", f"[{tags}]" if tags else "") if x), 60)


def print_alias_history(moves, versions: dict[int, str]) -> None:
    """`models history`: ``versions`` maps version ids to ``name:version``."""
    print(f"{'when':19}  {'alias':12}  {'to':16}  {'from':16}  {'command':15}  by")
    for m in moves:
        print(f"{fmt_time(m.created_at):19}  {m.alias:12}  {versions.get(m.model_version_id, '?'):16}  "
              f"{versions.get(m.previous_version_id, '-'):16}  {m.command:15}  {m.actor or '-'}")


# ---------------------------------------------------------------- drift

DRIFT_LABEL_COLUMNS = 8  # more labels than this: the most frequent ones, the rest summed as "other"


def print_drift(collection: str, model: str, runs, threshold: float, window: int) -> None:
    """`bertjobs drift`: runs (worker.ops.drift.RunDrift) oldest first, a column of shares per label."""
    print(f"{model} over {collection!r}: label shares run by run, each run against the mean shares of up to {window} "
          f"runs before it (PSI; SHIFT at >= {threshold:g})")
    if not runs:
        print("no classification run of this model over this collection has finished yet")
        return
    columns = _label_columns([item.run.tally for item in runs])
    names = ["other" if label is _OTHER else "(none)" if label is None else label[:8] for label in columns]
    print(f"{'job':>6}  {'finished':19}  {'model':20}  {'scope':5}  {'classified':>10}  {'failed':>6}  {'score':>5}  "
          + "  ".join(f"{n:>8}" for n in names) + f"  {'PSI':>6}")
    previous = None
    for item in runs:
        run, drift = item.run, item.drift
        score = f"{run.tally.mean_score:.3f}" if run.tally.mean_score is not None else "-"
        psi = f"{drift.psi:.3f}" if drift.psi is not None else "-"
        print(f"{run.job_id:>6}  {fmt_time(run.finished_at):19}  {run.model_name + ':' + str(run.model_version):20}  "
              f"{run.scope:5}  {run.tally.classified:>10}  {run.tally.failed:>6}  {score:>5}  "
              f"{_share_cells(run.tally, columns)}  {psi:>6}  {_drift_notes(drift, run, previous)}".rstrip())
        previous = run


_OTHER = object()  # the column of the labels beyond DRIFT_LABEL_COLUMNS


def _label_columns(tallies) -> list:
    """The labels of the runs, most documents first; past DRIFT_LABEL_COLUMNS, the rest as one column."""
    totals: dict = {}
    for tally in tallies:
        for t in tally.labels:
            totals[t.label] = totals.get(t.label, 0) + t.documents
    ranked = sorted(totals, key=lambda label: (-totals[label], label is None, label or ""))
    return ranked if len(ranked) <= DRIFT_LABEL_COLUMNS else [*ranked[:DRIFT_LABEL_COLUMNS - 1], _OTHER]


def _share_cells(tally, columns: list) -> str:
    counts = {t.label: t.documents for t in tally.labels}
    named = sum(counts.get(label, 0) for label in columns if label is not _OTHER)
    cells = [tally.classified - named if label is _OTHER else counts.get(label, 0) for label in columns]
    return "  ".join(f"{100 * n / tally.classified:7.1f}%" if tally.classified else f"{'-':>8}" for n in cells)


def _drift_notes(drift, run, previous) -> str:
    """SHIFT, a new model version, other documents than the run before, and why there is no PSI."""
    notes = ["SHIFT"] if drift.shifted else []
    if drift.version_changed:
        was = f" (was {previous.model_name}:{previous.model_version})" if previous is not None else ""
        notes.append("new model version" + was)
    if drift.scope_changed:
        was = f" (was {previous.scope}{' with a filter' if previous.filter else ''})" if previous is not None else ""
        notes.append("other documents than the run before" + was)
    if drift.note:
        notes.append(drift.note)
    return "; ".join(notes)

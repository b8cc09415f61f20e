"""The ``bertjobs`` command: db, import, train, classify, jobs, results, models, worker, demo."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy.exc import DBAPIError

from worker.config import get_settings
from worker.errors import BertjobsError
from worker.ml.errors import MLError


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _sessions():
    from db.session import session_factory_for

    return session_factory_for(get_settings().resolved_database_url)


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(start, end) -> str:
    if not start:
        return "-"
    from db.models import utcnow

    end = end or utcnow()
    if start.tzinfo is None and end.tzinfo is not None:
        end = end.replace(tzinfo=None)
    return f"{(end - start).total_seconds():.1f}s"


def _progress(job) -> str:
    if job.progress_total:
        return f"{job.progress_done}/{job.progress_total} ({100 * job.progress_done / job.progress_total:.0f}%)"
    return str(job.progress_done or 0)


# ---------------------------------------------------------------- db


def cmd_db(args) -> int:
    from db import migrate

    url = get_settings().resolved_database_url
    if args.action == "upgrade":
        migrate.upgrade(url)
        print(f"database at {_safe_url(url)} is at the latest schema")
    elif args.action == "check":
        migrate.check(url)
        print("models and migrations agree")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------- import


def cmd_import(args) -> int:
    from worker.importer import import_file
    from db.names import check_name

    path = Path(args.file)
    check_name("collection", args.collection)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    try:
        report = import_file(_sessions(), path, args.collection, fmt=args.format,
                             max_chars=args.max_chars or get_settings().max_text_chars,
                             text_column=args.text_column, label_column=args.label_column,
                             labels_column=args.labels_column, id_column=args.id_column,
                             ignore_columns=tuple(args.ignore_column or ()))
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for bad in report.bad[: args.show_bad]:
        print(f"{path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if len(report.bad) > args.show_bad:
        print(f"... and {len(report.bad) - args.show_bad} more bad rows", file=sys.stderr)
    print(f"collection {args.collection!r}: {report.inserted} inserted, {report.updated} updated, "
          f"{report.unchanged} unchanged, {len(report.bad)} bad rows skipped")
    return 0


# ---------------------------------------------------------------- train / classify


from worker.progress import ProgressBar  # noqa: E402 - the bar lives with the demo's; kept importable from here


def _waiting_line(job_id: int, kind: str, inline: bool) -> None:
    """The job id, before any waiting: Ctrl-C stops the waiting, and `jobs wait` re-attaches."""
    where = "running here" if inline else "queued"
    print(f"job {job_id} {where} ({kind}); re-attach with: bertjobs jobs wait {job_id}", flush=True)


def _follow(handle, *, inline_kind: str | None = None):
    """Draw the bar on stderr until the job ends (running it here first when ``inline_kind``); its last
    snapshot, or None when Ctrl-C stopped the waiting (one line says what happens to the job)."""
    from worker.progress import run_inline_with_progress, wait_with_progress

    try:
        if inline_kind:
            return run_inline_with_progress(handle, inline_kind, sys.stderr)
        return wait_with_progress(handle, sys.stderr)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # below the bar
        if inline_kind:
            print(f"interrupted: job {handle.id} stops here; the reaper re-queues it once its lease expires",
                  file=sys.stderr)
        else:
            print(f"stopped waiting; job {handle.id} goes on: bertjobs jobs wait {handle.id}", file=sys.stderr)
        return None


def _wait_for(handle, *, inline_kind: str | None = None) -> int:
    """Follow the job (see _follow), then print it; exit 0 if it succeeded."""
    snap = _follow(handle, inline_kind=inline_kind)
    if snap is None:
        return 130
    _print_job(snap)
    return 0 if snap.status == "succeeded" else 1


def _broker_unreachable(handle) -> str:
    return (f"job {handle.id} is saved but the broker at {_safe_url(get_settings().broker_url)} could not be "
            "reached; the reaper publishes it when the broker is back (or run it now with --inline)")


def _run_or_wait(handle, kind: str, args) -> int:
    if not args.inline and not handle.published:
        print(_broker_unreachable(handle), file=sys.stderr)
        return 1
    if args.inline or args.wait:
        _waiting_line(handle.id, kind, args.inline)
        return _wait_for(handle, inline_kind=kind if args.inline else None)
    print(f"job {handle.id} queued ({kind}); follow it with: bertjobs jobs wait {handle.id}")
    return 0


def _json_or_word(value: str) -> Any:
    """A JSON value, or a bare word (``auto``) as a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# Training options as command-line flags: (option, type); every TrainConfig field but base_model.
TRAIN_FLAGS = [("epochs", int), ("batch_size", int), ("learning_rate", float), ("max_length", int),
               ("val_fraction", float), ("seed", int), ("warmup_ratio", float), ("weight_decay", float),
               ("device", str), ("precision", str), ("select_metric", str), ("gradient_accumulation", int),
               ("lr_schedule", str), ("early_stopping_patience", int), ("class_weights", _json_or_word),
               ("long_documents", str), ("window_overlap", int), ("max_windows", int), ("trials", int),
               ("search_space", _json_or_word), ("multi_label", bool)]


TRAIN_HELP = {
    "epochs": "passes over the training split", "batch_size": "documents per batch",
    "learning_rate": "AdamW peak learning rate", "max_length": "tokens per model input",
    "val_fraction": "share of the labelled documents held out for validation", "seed": "seed of split, shuffle and init",
    "warmup_ratio": "share of the steps spent warming up", "weight_decay": "AdamW weight decay",
    "device": "where to train", "precision": "auto: bf16 or fp16 on GPUs, fp32 on CPU",
    "select_metric": "which epoch (and search trial) wins", "gradient_accumulation": "optimizer step every N batches",
    "lr_schedule": "after the warm-up", "early_stopping_patience": "stop after N epochs without improvement; 0: never",
    "class_weights": 'null, "auto" or a JSON object of label -> weight', "long_documents": "windows: overlapping "
    "windows, logits averaged", "window_overlap": "tokens shared by consecutive windows",
    "max_windows": "windows per document at most", "trials": "hyperparameter search trials; 0: train once",
    "search_space": "JSON object of option -> list of values", "multi_label": "documents carry label sets",
}


def _train_flag_help(name: str) -> str:
    """The flag's help: what it does, TrainConfig's default, and the values validate() accepts."""
    from dataclasses import fields

    from worker.ml import config

    choices = {"precision": config.PRECISIONS, "lr_schedule": config.LR_SCHEDULES, "device": config.DEVICES,
               "long_documents": config.LONG_DOCUMENTS, "select_metric": config.SELECT_METRICS}
    default = next(f.default for f in fields(config.TrainConfig) if f.name == name)
    shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    text = f"{TRAIN_HELP[name]} (default: {shown}" + (f"; choices: {', '.join(choices[name])})" if name in choices
                                                      else ")")
    return text.replace("%", "%%")


def _train_options(args) -> dict[str, Any]:
    return {n: getattr(args, n) for n, _ in TRAIN_FLAGS if getattr(args, n) is not None}


def _filter(args) -> dict[str, Any] | None:
    where: dict[str, Any] = {}
    if args.where_label:
        where["labels"] = args.where_label
    if args.where_id_prefix:
        where["external_id_prefix"] = args.where_id_prefix
    if args.updated_after:
        where["updated_after"] = args.updated_after
    return where or None


def cmd_train(args) -> int:
    from worker.client import submit_training

    handle = submit_training(args.collection, args.base_model, model_name=args.name, options=_train_options(args),
                             skip_unlabelled=args.skip_unlabelled, filter=_filter(args),
                             idempotency_key=args.idempotency_key,
                             enqueue=not args.inline)
    return _run_or_wait(handle, "train", args)


def cmd_classify(args) -> int:
    from worker.client import submit_classification

    handle = submit_classification(args.collection, args.model, only_missing=not args.all, shards=args.shards,
                                   filter=_filter(args), idempotency_key=args.idempotency_key, enqueue=not args.inline)
    return _run_or_wait(handle, "classify", args)


# ---------------------------------------------------------------- predict / evaluate


def _texts(args) -> list[str]:
    texts = list(args.texts)
    if args.file:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            path = Path(args.file)
            if not path.is_file():
                raise CliError(f"no such file: {path}")
            data = path.read_bytes()
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(f"{'stdin' if args.file == '-' else args.file} is not UTF-8 text: {exc.reason} "
                           f"at byte {exc.start}") from exc
        texts += [line.rstrip("\r") for line in body.split("\n")]
        if texts and texts[-1] == "" and body.endswith("\n"):
            texts.pop()  # the newline that ends the last line starts no text
    if not texts:
        raise CliError("no texts to classify: give them as arguments or with --file (one per line, - for stdin)")
    return texts


def cmd_predict(args) -> int:
    from worker.client import predict

    texts = _texts(args)
    rows = predict(args.model, texts)
    if args.json:
        print(json.dumps({"model": rows[0]["model"],
                          "predictions": [{"text": t, **{k: v for k, v in r.items() if k != "model"}}
                                          for t, r in zip(texts, rows)]}, sort_keys=True))
    else:
        for t, r in zip(texts, rows):
            if r["error"]:
                print(f"error\t-\t{r['error']}")
            elif r["labels"] is not None:
                print(f"{','.join(r['labels']) or '(none)'}\t{r['score']:.4f}\t{' '.join(t.split())[:80]}")
            else:
                print(f"{r['label']}\t{r['score']:.4f}\t{' '.join(t.split())[:80]}")
    return 1 if any(r["error"] for r in rows) else 0


def _print_evaluation(ev: dict) -> None:
    base = ev["baseline"]
    print(f"evaluation {ev['id']}: {ev['model']} on {ev['collection']!r} ({ev['documents']} documents, "
          f"{ev['created_at']})")
    print(f"  accuracy   {ev['accuracy']:.4f}" + ("  (exact match of label sets)" if ev["multi_label"] else ""))
    print(f"  macro-F1   {ev['macro_f1']:.4f}")
    print(f"  baseline   accuracy {base['accuracy']:.4f}, macro-F1 {base['macro_f1']:.4f} (always "
          f"{base.get('label') or ', '.join(base.get('labels') or []) or 'no label'})")
    if ev["failed"] or ev["unlabelled"]:
        print(f"  skipped    {ev['failed']} failed, {ev['unlabelled']} unlabelled")
    print(f"  data       sha256 {ev['content_sha256']}" + (f", filter {json.dumps(ev['filter'])}" if ev["filter"] else ""))
    print(f"  {'label':16}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}")
    for label, m in (ev["per_class"] or {}).items():
        print(f"  {label[:16]:16}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:>7}")
    if ev["confusion_matrix"]:
        print("  confusion (rows: gold, columns: predicted; " + ", ".join(ev["labels"]) + ")")
        for label, row in zip(ev["labels"], ev["confusion_matrix"]):
            print(f"    {label[:16]:16} " + " ".join(f"{n:>6}" for n in row))


def _evaluation(evaluation_id: int) -> dict:
    from db.models import Evaluation, ModelVersion
    from worker.evaluate import as_dict

    with _sessions().begin() as s:
        row = s.get(Evaluation, evaluation_id)
        mv = s.get(ModelVersion, row.model_version_id)
        return as_dict(row, f"{mv.name}:{mv.version}")


def cmd_evaluate(args) -> int:
    from worker.client import submit_evaluation

    handle = submit_evaluation(args.collection, args.model, filter=_filter(args),
                               idempotency_key=args.idempotency_key, enqueue=not args.inline)
    if not args.inline and not handle.published:
        raise CliError(_broker_unreachable(handle))
    if not (args.inline or args.wait):
        print(json.dumps({"job_id": handle.id, "status": "queued"}) if args.json else
              f"job {handle.id} queued (evaluate); follow it with: bertjobs jobs wait {handle.id}")
        return 0
    if not args.json:
        _waiting_line(handle.id, "evaluate", args.inline)
    snap = _follow(handle, inline_kind="evaluate" if args.inline else None)
    if snap is None:
        return 130
    if snap.status != "succeeded":
        raise CliError(f"evaluation job {snap.id} {snap.status}: {snap.error}")
    ev = _evaluation(snap.result["evaluation_id"])
    if args.json:
        print(json.dumps(ev, sort_keys=True))
    else:
        _print_evaluation(ev)
    return 0


def _compare(args) -> int:
    from worker import evaluate as evaluation

    settings, sessions = get_settings(), _sessions()
    with sessions.begin() as s:
        a, b = evaluation.resolve(s, args.a), evaluation.resolve(s, args.b)
    where = _filter(args)
    ra = evaluation.evaluate(sessions, settings, a, args.collection, where)
    rb = evaluation.evaluate(sessions, settings, b, args.collection, where)
    diffs = evaluation.disagreements(ra, rb)
    evs = [_evaluation(evaluation.store(sessions, r)) for r in (ra, rb)]
    if args.json:
        print(json.dumps({"collection": args.collection, "a": evs[0], "b": evs[1], "documents": len(ra.ids),
                          "disagreements": len(diffs), "examples": diffs[: args.show]}, sort_keys=True))
        return 0
    print(f"on {args.collection!r} ({len(ra.ids)} documents): {len(diffs)} disagreements")
    print(f"  {'':12}  {evs[0]['model']:>20}  {evs[1]['model']:>20}")
    for key in ("accuracy", "macro_f1"):
        print(f"  {key:12}  {evs[0][key]:20.4f}  {evs[1][key]:20.4f}")
    labels = list(dict.fromkeys([*(evs[0]["per_class"] or {}), *(evs[1]["per_class"] or {})]))
    for label in labels:
        f1 = [(ev["per_class"] or {}).get(label, {}).get("f1") for ev in evs]
        print(f"  {('f1 ' + label)[:12]:12}  " + "  ".join("-".rjust(20) if v is None else f"{v:20.4f}" for v in f1))

    def show(value) -> str:
        return "(failed)" if value is None else ",".join(value) if isinstance(value, list) else str(value)

    if diffs:
        print(f"  {'doc':>7}  {'gold':12}  {evs[0]['model'][:16]:16}  {evs[1]['model'][:16]:16}  text")
    for d in diffs[: args.show]:
        print(f"  {d['document_id']:>7}  {show(d['gold'])[:12]:12}  {show(d['a'])[:16]:16}  {show(d['b'])[:16]:16}  "
              f"{' '.join(d['text'].split())[:60]}")
    if len(diffs) > args.show:
        print(f"  ... and {len(diffs) - args.show} more (--show N)")
    return 0


# ---------------------------------------------------------------- jobs


def _print_job(job) -> None:
    print(f"job {job.id}: {job.kind} {job.status}")
    print(f"  attempt    {job.attempt}/{job.max_attempts}")
    print(f"  progress   {_progress(job)}")
    print(f"  created    {_fmt_time(job.created_at)}")
    print(f"  started    {_fmt_time(job.started_at)}")
    print(f"  finished   {_fmt_time(job.finished_at)}   (ran {_duration(job.started_at, job.finished_at)})")
    print(f"  params     {json.dumps(job.params, sort_keys=True)}")
    if job.error:
        print(f"  error      {job.error}")
    if job.result:
        print(f"  result     {json.dumps(job.result, sort_keys=True)}")


def cmd_jobs(args) -> int:
    from db import repo
    from worker.present import job_json, print_json

    sessions = _sessions()
    if args.action == "show":
        with sessions.begin() as s:
            job = repo.get_job(s, args.id)
            if job is None:
                raise CliError(f"no job {args.id}")
            print_json(job_json(job)) if args.json else _print_job(job)
        return 0
    if args.action == "wait":
        from worker.client import JobHandle

        handle = JobHandle(args.id)
        handle.snapshot()  # LookupError: "no job N"
        return _wait_for(handle)
    if args.action == "cancel":
        from worker.client import cancel

        try:
            status = cancel(args.id)
        except LookupError as exc:
            raise CliError(str(exc)) from exc
        if args.json:
            print_json({"id": args.id, "status": status})
            return 0
        print(f"job {args.id}: {status}" + (" (stops at its next batch or step)" if status == "running" else ""))
        return 0
    from db.models import JobStatus

    if args.status and args.status not in {st.value for st in JobStatus}:
        raise CliError(f"unknown job status {args.status!r}; use one of {', '.join(st.value for st in JobStatus)}")
    with sessions.begin() as s:
        jobs = repo.list_jobs(s, limit=args.limit, status=args.status, kind=args.kind)
        if args.json:
            print_json([job_json(job) for job in jobs])
            return 0
        print(f"{'id':>6}  {'kind':8}  {'status':9}  {'try':>3}  {'progress':>20}  {'created':19}  {'ran':>9}  error")
        for job in jobs:
            print(f"{job.id:>6}  {job.kind:8}  {job.status:9}  {job.attempt:>3}  {_progress(job):>20}  "
                  f"{_fmt_time(job.created_at):19}  {_duration(job.started_at, job.finished_at):>9}  "
                  f"{(job.error or '')[:80]}")
    return 0


# ---------------------------------------------------------------- results / models


def cmd_results(args) -> int:
    from db import repo

    with _sessions().begin() as s:
        mv_id = None
        if args.collection and not repo.collection_exists(s, args.collection):
            raise CliError(f"unknown collection {args.collection!r}")
        if args.model:
            mv = repo.resolve_model_version(s, args.model)
            if mv is None:
                raise CliError(f"no ready model version matches {args.model!r}")
            mv_id = mv.id
        rows = repo.list_predictions(s, collection=args.collection, model_version_id=mv_id, limit=args.limit)
        if args.json:
            from worker.present import prediction_json, print_json

            print_json([prediction_json(doc, pred, mv) for doc, pred, mv in rows])
            return 0
        print(f"{'doc':>7}  {'external_id':20}  {'model':16}  {'label':12}  {'score':>6}  text")
        for doc, pred, mv in rows:
            label = pred.label if pred.error is None else f"(failed: {pred.error})"
            score = f"{pred.score:.3f}" if pred.score is not None else "-"
            text = " ".join(doc.text.split())[:60]
            print(f"{doc.id:>7}  {doc.external_id[:20]:20}  {mv.name + ':' + str(mv.version):16}  {label:12}  "
                  f"{score:>6}  {text}")
    return 0


def cmd_models(args) -> int:
    from db import repo

    if args.action == "rollback":
        from worker.registry import rollback

        print(rollback(args.name, args.alias))
        return 0
    if args.action == "compare":
        return _compare(args)
    if args.action == "promote":
        from worker.registry import promote

        promotion = promote(args.ref, args.alias, gate_collection=args.gate)
        print(promotion.describe())
        return 0 if promotion.promoted else 1
    from worker.present import model_version_json, print_json

    with _sessions().begin() as s:
        if args.action == "list":
            aliases = repo.aliases_by_version(s, args.name)
            if args.json:
                print_json([model_version_json(mv, aliases.get(mv.id)) for mv in repo.list_model_versions(s, args.name)])
                return 0
            print(f"{'model':24}  {'aliases':20}  {'accuracy':>8}  {'macro_f1':>8}  {'rows':>7}  {'created':19}  "
                  "base model")
            for mv in repo.list_model_versions(s, args.name):
                print(f"{mv.name + ':' + str(mv.version):24}  {','.join(aliases.get(mv.id, [])) or '-':20}  "
                      f"{mv.metrics.get('accuracy', 0):8.4f}  "
                      f"{mv.metrics.get('macro_f1', 0):8.4f}  {mv.lineage.get('row_count', 0):>7}  "
                      f"{_fmt_time(mv.created_at):19}  {mv.base_model}")
            return 0
        if args.action == "history":
            versions = {mv.id: f"{mv.name}:{mv.version}" for mv in repo.list_model_versions(s, args.name)}
            moves = repo.alias_history(s, args.name, args.alias, limit=args.limit)
            if not moves:
                raise CliError(f"no alias of {args.name!r} has moved yet")
            print(f"{'when':19}  {'alias':12}  {'to':16}  {'from':16}  {'command':15}  by")
            for m in moves:
                print(f"{_fmt_time(m.created_at):19}  {m.alias:12}  {versions.get(m.model_version_id, '?'):16}  "
                      f"{versions.get(m.previous_version_id, '-'):16}  {m.command:15}  {m.actor or '-'}")
            return 0
        mv = repo.resolve_model_version(s, args.ref)
        if mv is None:
            raise CliError(f"no ready model version matches {args.ref!r}")
        if args.action == "report":
            from worker.report import write_report

            path = write_report({"name": mv.name, "version": mv.version, "base_model": mv.base_model,
                                 "metrics": mv.metrics, "hyperparameters": mv.hyperparameters,
                                 "lineage": mv.lineage}, mv.artifact_path)
            print(f"{mv.name}:{mv.version}: accuracy {mv.metrics.get('accuracy', 0):.4f}, "
                  f"macro-F1 {mv.metrics.get('macro_f1', 0):.4f}; report: {path}")
            return 0
        from worker.evaluate import as_dict

        # `models show` prints the version as JSON with or without --json: one shape (worker/present.py),
        # plus the version's stored evaluations.
        print_json({**model_version_json(mv, repo.aliases_by_version(s, mv.name).get(mv.id)),
                    "evaluations": [as_dict(ev, f"{mv.name}:{mv.version}") for ev in repo.list_evaluations(s, mv.id)]})
    return 0


# ---------------------------------------------------------------- worker / demo


def cmd_worker(args) -> int:
    """Exec a Celery worker: prefork, concurrency 1, pinned to one GPU with --gpu."""
    env = dict(os.environ)
    if args.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    if get_settings().device.startswith("cuda"):
        from worker.config import check_device

        os.environ.update(env)  # this process is replaced by celery below; no CUDA context is created here
        check_device(get_settings())
    hostname = args.hostname or (f"gpu{args.gpu}@%h" if args.gpu is not None else "bertjobs@%h")
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "1", "--prefetch-multiplier", "1", "-Q", args.queues, "--hostname", hostname,
            "--loglevel", args.loglevel, *args.celery_args]
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover


def cmd_beat(args) -> int:
    """Exec celery beat: runs the reaper every BERTJOBS_REAPER_INTERVAL_SECONDS."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", args.loglevel,
            "--schedule", str(settings.data_dir / "celerybeat-schedule")]
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover


def cmd_reap(args) -> int:
    from worker.reaper import reap

    report = reap()
    print(f"requeued {report.requeued}, dead {report.dead}, cancelled {report.cancelled}, "
          f"republished {report.republished}")
    return 0


def cmd_data(args) -> int:
    from db import repo
    from worker.ml.datacheck import training_data_check

    with _sessions().begin() as s:
        if not repo.collection_exists(s, args.collection):
            raise CliError(f"unknown collection {args.collection!r}")
        data = repo.load_labelled(s, args.collection, multi_label=args.multi_label)
        unlabelled = data.unlabelled
    tokenizer = None
    if args.base_model:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    report = training_data_check(data.texts, data.labels, tokenizer=tokenizer, max_length=args.max_length,
                                 val_fraction=args.val_fraction, seed=args.seed)
    report["unlabelled_documents"] = unlabelled
    if args.json:
        from worker.present import print_json

        print_json(report)
    else:
        print(json.dumps(report, indent=2, default=str))
    return 1 if report["blocking"] else 0


def cmd_nightly(args) -> int:
    from worker.nightly import run_nightly

    handles = run_nightly()
    if not handles:
        print("nothing started (see BERTJOBS_NIGHTLY_MODEL and BERTJOBS_NIGHTLY_COLLECTIONS, or the log)")
    for h in handles:
        print(f"job {h.id}: {'queued' if h.created else 'already created today'}")
    return 0


def cmd_metrics(args) -> int:
    from worker.metrics import prometheus_text

    text = prometheus_text(get_settings())
    if args.textfile:
        target = Path(args.textfile)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    else:
        print(text, end="")
    return 0


def cmd_demo(args) -> int:
    from worker.demo import run_demo

    return run_demo(train_docs=args.train_docs, classify_docs=args.classify_docs, epochs=args.epochs)


def cmd_completion(args) -> int:
    from worker.completion import bash_script, zsh_script

    print((bash_script if args.shell == "bash" else zsh_script)(build_parser()), end="")
    return 0


# ---------------------------------------------------------------- parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bertjobs")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def json_flag() -> argparse.ArgumentParser:
    """A parent parser: ``--json`` after the subcommand too (``bertjobs --json jobs`` works as well)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (keys: README, Scripting)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertjobs", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log what the jobs do")
    p.add_argument("--json", action="store_true", help="print one JSON document (jobs, results, models, data check)")
    p.add_argument("--version", action="version", version=f"bertjobs {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=["upgrade", "check"])
    db.set_defaults(func=cmd_db)

    imp = sub.add_parser(
        "import", help="import documents from CSV, TSV or JSON Lines (optionally .gz, .bz2, .xz, .zip of one file)",
        description="Columns: text (required), label or labels (optional), an id (optional): 'external_id' or "
                    "'id', else the text's hash. Map other column names with the options below. A file with no "
                    "text column, or no label column but columns it does not know, is refused with the columns "
                    "found. Bad rows (and an id repeated in the file) are skipped with their line numbers.")
    imp.add_argument("file", help=".csv, .tsv (tabs), .jsonl; compressed .gz, .bz2, .xz or a .zip of one file")
    imp.add_argument("--collection", required=True, help="1-64 letters, digits, '_', '-', '.'")
    imp.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="default: from the file name")
    imp.add_argument("--text-column", default="text", help="the column holding the text (default: text)")
    imp.add_argument("--label-column", default="label", help="the gold label's column (default: label)")
    imp.add_argument("--labels-column", default="labels",
                     help="a multi-label document's labels (JSON Lines: a list; CSV: separated by '|')")
    imp.add_argument("--id-column", help="the id's column (default: 'external_id', else 'id', else the text's hash)")
    imp.add_argument("--ignore-column", action="append", metavar="COLUMN",
                     help="a column to skip, so a file without labels may have it (repeatable)")
    imp.add_argument("--max-chars", type=int, help="longest text accepted (default: BERTJOBS_MAX_TEXT_CHARS)")
    imp.add_argument("--show-bad", type=int, default=20, help="bad rows to print")
    imp.set_defaults(func=cmd_import)

    def add_run_flags(sp):
        sp.add_argument("--wait", action="store_true", help="wait for the job to finish")
        sp.add_argument("--inline", action="store_true", help="run the job in this process (no Redis needed)")
        sp.add_argument("--idempotency-key", help="the same key returns the existing job")
        sp.add_argument("--where-label", action="append", help="only documents with this gold label (repeatable)")
        sp.add_argument("--where-id-prefix", help="only documents whose external id starts with this")
        sp.add_argument("--updated-after", help="only documents imported or changed after this ISO 8601 time")

    tr = sub.add_parser("train", help="queue a fine-tuning job")
    tr.add_argument("--collection", required=True)
    tr.add_argument("--base-model", required=True, help="hub name (bert-base-uncased) or local folder")
    tr.add_argument("--name", help="model name (default: the collection)")
    tr.add_argument("--skip-unlabelled", action="store_true", help="train on the labelled part of the collection")
    for name, typ in TRAIN_FLAGS:
        flag = f"--{name.replace('_', '-')}"
        if typ is bool:
            tr.add_argument(flag, action="store_true", default=None, help=_train_flag_help(name))
        else:
            tr.add_argument(flag, type=typ, metavar="JSON" if typ is _json_or_word else None,
                            help=_train_flag_help(name))
    add_run_flags(tr)
    tr.set_defaults(func=cmd_train)

    cl = sub.add_parser("classify", help="queue a bulk classification job")
    cl.add_argument("--collection", required=True)
    cl.add_argument("--model", required=True, help="NAME, NAME:VERSION or NAME@ALIAS")
    cl.add_argument("--all", action="store_true", help="re-classify documents this model version already did")
    cl.add_argument("--shards", type=int, help="split into N jobs for N workers (default: by BERTJOBS_CLASSIFY_SHARD_SIZE)")
    add_run_flags(cl)
    cl.set_defaults(func=cmd_classify)

    pr = sub.add_parser("predict", help="classify texts now and print label and score per text",
                        parents=[json_flag()])
    pr.add_argument("model", help="NAME, NAME:VERSION or NAME@ALIAS")
    pr.add_argument("texts", nargs="*", help="texts to classify")
    pr.add_argument("--file", help="one text per line; - reads stdin")
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="evaluate a model version on a labelled collection (a job) and store it",
                        parents=[json_flag()])
    ev.add_argument("model", help="NAME, NAME:VERSION or NAME@ALIAS")
    ev.add_argument("--collection", required=True, help="a labelled collection")
    add_run_flags(ev)
    ev.set_defaults(func=cmd_evaluate)

    jb = sub.add_parser("jobs", help="list, show, wait for or cancel jobs", parents=[json_flag()])
    jb.set_defaults(func=cmd_jobs, action="list")
    jb.add_argument("--status")
    jb.add_argument("--kind", choices=["train", "classify", "evaluate"])
    jb.add_argument("--limit", type=int, default=30)
    jsub = jb.add_subparsers(dest="action")
    jl = jsub.add_parser("list", parents=[json_flag()])
    # The same filters after `list`; SUPPRESS keeps `jobs --status X list` from being reset to the default.
    jl.add_argument("--status", default=argparse.SUPPRESS)
    jl.add_argument("--kind", choices=["train", "classify"], default=argparse.SUPPRESS)
    jl.add_argument("--limit", type=int, default=argparse.SUPPRESS, help="(default: 30)")
    for action in ("show", "cancel"):
        a = jsub.add_parser(action, parents=[json_flag()])
        a.add_argument("id", type=int)
    jw = jsub.add_parser("wait", help="show the job's progress bar until it ends (exit 0 if it succeeded)")
    jw.add_argument("id", type=int)

    rs = sub.add_parser("results", help="print predictions", parents=[json_flag()])
    rs.add_argument("--collection")
    rs.add_argument("--model", help="NAME, NAME:VERSION or NAME@ALIAS")
    rs.add_argument("--limit", type=int, default=20)
    rs.set_defaults(func=cmd_results)

    md = sub.add_parser("models", help="registered model versions")
    md.set_defaults(func=cmd_models)
    msub = md.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list", parents=[json_flag()])
    ml.add_argument("name", nargs="?")
    ms = msub.add_parser("show", parents=[json_flag()])
    ms.add_argument("ref", help="NAME, NAME:VERSION or NAME@ALIAS")
    mp = msub.add_parser("promote", help="point an alias (production, staging...) at a version")
    mp.add_argument("ref")
    mp.add_argument("--alias", default="production")
    mp.add_argument("--gate", metavar="COLLECTION",
                    help="promote only if macro-F1 on this labelled collection beats the current holder's")
    mc = msub.add_parser("compare", help="evaluate two versions on a labelled collection, side by side",
                         parents=[json_flag()])
    mc.add_argument("a", help="NAME, NAME:VERSION or NAME@ALIAS")
    mc.add_argument("b")
    mc.add_argument("--collection", required=True)
    mc.add_argument("--where-label", action="append", help="only documents with this gold label (repeatable)")
    mc.add_argument("--where-id-prefix", help="only documents whose external id starts with this")
    mc.add_argument("--updated-after", help="only documents imported or changed after this ISO 8601 time")
    mc.add_argument("--show", type=int, default=20, help="disagreements to print")
    mr = msub.add_parser("rollback", help="point an alias back at the version it held before (again: one further)")
    mr.add_argument("name")
    mr.add_argument("--alias", default="production")
    mh = msub.add_parser("history", help="who moved the model's aliases where, when, with which command")
    mh.add_argument("name")
    mh.add_argument("--alias", help="only this alias")
    mh.add_argument("--limit", type=int, default=50)
    mrep = msub.add_parser("report", help="write the HTML training report and print where it is")
    mrep.add_argument("ref")

    wk = sub.add_parser("worker", help="start a Celery worker (one per GPU)")
    wk.add_argument("--gpu", type=int, help="pin this worker to GPU N (sets CUDA_VISIBLE_DEVICES)")
    wk.add_argument("--queues", default="train,classify",
                    help="queues to consume (default train,classify; the reaper's is `maintenance`)")
    wk.add_argument("--hostname")
    wk.add_argument("--loglevel", default="info")
    wk.add_argument("celery_args", nargs=argparse.REMAINDER, help="more celery worker options after --")
    wk.set_defaults(func=cmd_worker)

    bt = sub.add_parser("beat", help="start celery beat (runs the reaper periodically)")
    bt.add_argument("--loglevel", default="info")
    bt.set_defaults(func=cmd_beat)
    rp = sub.add_parser("reap", help="recover lost jobs once (what beat runs periodically)")
    rp.set_defaults(func=cmd_reap)

    dc = sub.add_parser("data", help="check a collection's labelled data before training", parents=[json_flag()])
    dc.add_argument("action", choices=["check"])
    dc.add_argument("--collection", required=True)
    dc.add_argument("--base-model", help="count lengths with this model's tokenizer (default: words)")
    dc.add_argument("--max-length", type=int, default=128)
    dc.add_argument("--val-fraction", type=float, default=0.2, help="the split to check for leaks, as training makes it")
    dc.add_argument("--seed", type=int, default=42)
    dc.add_argument("--multi-label", action="store_true", help="the collection's documents carry label sets")
    dc.set_defaults(func=cmd_data)

    ng = sub.add_parser("nightly", help="start today's nightly classification now (what beat runs at nightly_time)")
    ng.set_defaults(func=cmd_nightly)
    mt = sub.add_parser("metrics", help="Prometheus metrics: jobs by status, queue depth, documents per second")
    mt.add_argument("--textfile", help="write atomically to this file (node_exporter textfile collector)")
    mt.set_defaults(func=cmd_metrics)

    dm = sub.add_parser("demo", help="import Rotten Tomatoes, train on part of it, classify the rest")
    dm.add_argument("--train-docs", type=int, default=2400)
    dm.add_argument("--classify-docs", type=int, default=3000)
    dm.add_argument("--epochs", type=int, default=2)
    dm.set_defaults(func=cmd_demo)

    cp = sub.add_parser("completion", help="print a shell completion script: source <(bertjobs completion bash)")
    cp.add_argument("shell", choices=["bash", "zsh"])
    cp.set_defaults(func=cmd_completion)
    from worker.web.command import register as register_ui  # the web view (worker/web/)

    register_ui(sub)
    return p


def _stdout_gone() -> int:
    """The reader of our output went away (``| head``): stop quietly, as ``cat`` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help, --version, a usage error: their output may go into a closed pipe too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_gone()
        raise
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "celery_args", None) and args.celery_args[0] == "--":
        args.celery_args = args.celery_args[1:]
    try:
        get_settings()  # a wrong setting is one line for every command, before anything runs
        if getattr(args, "inline", False):
            from worker.config import check_device

            check_device(get_settings())  # before the job is saved: BERTJOBS_DEVICE=cuda on a host without it
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _stdout_gone()
    except (CliError, BertjobsError, MLError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad parameters, e.g. a malformed model reference
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(f"error: {_database_problem(exc)}", file=sys.stderr)
        return 2


def _database_problem(exc: Exception) -> str:
    url = _safe_url(get_settings().resolved_database_url)
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return f"the database at {url} has no bertjobs schema yet; run: bertjobs db upgrade"
    return f"database at {url}: {text}"


if __name__ == "__main__":
    sys.exit(main())

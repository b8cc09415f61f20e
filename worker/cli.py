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

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    try:
        report = import_file(_sessions(), path, args.collection, fmt=args.format,
                             max_chars=args.max_chars or get_settings().max_text_chars,
                             text_column=args.text_column, label_column=args.label_column,
                             labels_column=args.labels_column)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    for bad in report.bad[: args.show_bad]:
        print(f"{path}:{bad.line}: skipped: {bad.reason}", file=sys.stderr)
    if len(report.bad) > args.show_bad:
        print(f"... and {len(report.bad) - args.show_bad} more bad rows", file=sys.stderr)
    print(f"collection {args.collection!r}: {report.inserted} inserted, {report.updated} updated, "
          f"{report.unchanged} unchanged, {len(report.bad)} bad rows skipped")
    return 0


# ---------------------------------------------------------------- train / classify


class ProgressBar:
    """One line on stderr, redrawn in place: status, done/total, rate and ETA."""

    def __init__(self, stream, width: int = 30):
        import time

        self.stream, self.width, self.clock = stream, width, time.monotonic
        self.first: tuple[float, int] | None = None

    def __call__(self, snap) -> None:
        now, done, total = self.clock(), snap.progress_done, snap.progress_total
        if snap.status == "running" and (self.first is None or done < self.first[1]):
            self.first = (now, done)
        rate = (done - self.first[1]) / (now - self.first[0]) if self.first and now > self.first[0] else 0.0
        if total:
            filled = int(self.width * min(done / total, 1.0))
            bar = "#" * filled + "-" * (self.width - filled)
            eta = f" ETA {int((total - done) / rate) // 60}:{int((total - done) / rate) % 60:02d}" if rate > 0 else ""
            line = f"job {snap.id} {snap.status:9} [{bar}] {done}/{total} {rate:.1f}/s{eta}"
        else:
            line = f"job {snap.id} {snap.status:9} {done}"
        end = "\n" if snap.finished else ""
        if self.stream.isatty() or snap.finished:
            self.stream.write("\r" + line.ljust(100) + end)
            self.stream.flush()


def _run_or_wait(handle, kind: str, args) -> int:
    from worker import jobs

    if args.inline:
        jobs.run_inline(handle.id, kind)
    elif not handle.published:
        print(f"job {handle.id} is saved but the broker at {_safe_url(get_settings().broker_url)} could not be "
              "reached; the reaper publishes it when the broker is back (or run it now with --inline)",
              file=sys.stderr)
        return 1
    if args.inline or args.wait:
        snap = handle.wait(on_progress=None if args.inline else ProgressBar(sys.stderr))
        _print_job(snap)
        return 0 if snap.status == "succeeded" else 1
    print(f"job {handle.id} queued ({kind}); follow it with: bertjobs jobs show {handle.id}")
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

    sessions = _sessions()
    if args.action == "show":
        with sessions.begin() as s:
            job = repo.get_job(s, args.id)
            if job is None:
                raise CliError(f"no job {args.id}")
            _print_job(job)
        return 0
    if args.action == "cancel":
        from worker.client import cancel

        try:
            status = cancel(args.id)
        except LookupError as exc:
            raise CliError(str(exc)) from exc
        print(f"job {args.id}: {status}" + (" (stops at its next batch or step)" if status == "running" else ""))
        return 0
    with sessions.begin() as s:
        jobs = repo.list_jobs(s, limit=args.limit, status=args.status, kind=args.kind)
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
        if args.model:
            mv = repo.resolve_model_version(s, args.model)
            if mv is None:
                raise CliError(f"no ready model version matches {args.model!r}")
            mv_id = mv.id
        rows = repo.list_predictions(s, collection=args.collection, model_version_id=mv_id, limit=args.limit)
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
    if args.action == "promote":
        from worker.registry import promote

        promotion = promote(args.ref, args.alias, gate_collection=args.gate)
        print(promotion.describe())
        return 0 if promotion.promoted else 1
    with _sessions().begin() as s:
        if args.action == "list":
            print(f"{'model':24}  {'accuracy':>8}  {'macro_f1':>8}  {'rows':>7}  {'created':19}  base model")
            for mv in repo.list_model_versions(s, args.name):
                print(f"{mv.name + ':' + str(mv.version):24}  {mv.metrics.get('accuracy', 0):8.4f}  "
                      f"{mv.metrics.get('macro_f1', 0):8.4f}  {mv.lineage.get('row_count', 0):>7}  "
                      f"{_fmt_time(mv.created_at):19}  {mv.base_model}")
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
        metrics = {k: v for k, v in mv.metrics.items() if k != "history"}
        print(json.dumps({
            "model": f"{mv.name}:{mv.version}", "id": mv.id, "base_model": mv.base_model,
            "artifact": mv.artifact_path, "sha256": mv.artifact_sha256, "labels": mv.labels,
            "hyperparameters": mv.hyperparameters, "metrics": metrics, "history": mv.metrics.get("history"),
            "lineage": mv.lineage, "training_job_id": mv.training_job_id,
        }, indent=2, default=str))
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
        data = repo.load_labelled(s, args.collection, multi_label=args.multi_label)
        unlabelled = data.unlabelled
    tokenizer = None
    if args.base_model:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    report = training_data_check(data.texts, data.labels, tokenizer=tokenizer, max_length=args.max_length,
                                 val_fraction=args.val_fraction, seed=args.seed)
    report["unlabelled_documents"] = unlabelled
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


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertjobs", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log what the jobs do")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="schema migrations")
    db.add_argument("action", choices=["upgrade", "check"])
    db.set_defaults(func=cmd_db)

    imp = sub.add_parser("import", help="import documents from CSV or JSON Lines")
    imp.add_argument("file")
    imp.add_argument("--collection", required=True)
    imp.add_argument("--format", choices=["csv", "jsonl"])
    imp.add_argument("--text-column", default="text")
    imp.add_argument("--label-column", default="label")
    imp.add_argument("--labels-column", default="labels",
                     help="a multi-label document's labels (JSON Lines: a list; CSV: separated by '|')")
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
            tr.add_argument(flag, action="store_true", default=None)
        else:
            tr.add_argument(flag, type=typ, metavar="JSON" if typ is _json_or_word else None)
    add_run_flags(tr)
    tr.set_defaults(func=cmd_train)

    cl = sub.add_parser("classify", help="queue a bulk classification job")
    cl.add_argument("--collection", required=True)
    cl.add_argument("--model", required=True, help="NAME, NAME:VERSION or NAME@ALIAS")
    cl.add_argument("--all", action="store_true", help="re-classify documents this model version already did")
    cl.add_argument("--shards", type=int, help="split into N jobs for N workers (default: by BERTJOBS_CLASSIFY_SHARD_SIZE)")
    add_run_flags(cl)
    cl.set_defaults(func=cmd_classify)

    jb = sub.add_parser("jobs", help="list, show or cancel jobs")
    jb.set_defaults(func=cmd_jobs, action="list")
    jb.add_argument("--status")
    jb.add_argument("--kind", choices=["train", "classify"])
    jb.add_argument("--limit", type=int, default=30)
    jsub = jb.add_subparsers(dest="action")
    jsub.add_parser("list")
    for action in ("show", "cancel"):
        a = jsub.add_parser(action)
        a.add_argument("id", type=int)

    rs = sub.add_parser("results", help="print predictions")
    rs.add_argument("--collection")
    rs.add_argument("--model", help="NAME, NAME:VERSION or NAME@ALIAS")
    rs.add_argument("--limit", type=int, default=20)
    rs.set_defaults(func=cmd_results)

    md = sub.add_parser("models", help="registered model versions")
    md.set_defaults(func=cmd_models)
    msub = md.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("name", nargs="?")
    ms = msub.add_parser("show")
    ms.add_argument("ref", help="NAME, NAME:VERSION or NAME@ALIAS")
    mp = msub.add_parser("promote", help="point an alias (production, staging...) at a version")
    mp.add_argument("ref")
    mp.add_argument("--alias", default="production")
    mp.add_argument("--gate", metavar="COLLECTION",
                    help="promote only if macro-F1 on this labelled collection beats the current holder's")
    mr = msub.add_parser("rollback", help="point an alias back at the version it held before")
    mr.add_argument("name")
    mr.add_argument("--alias", default="production")
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

    dc = sub.add_parser("data", help="check a collection's labelled data before training")
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "celery_args", None) and args.celery_args[0] == "--":
        args.celery_args = args.celery_args[1:]
    try:
        get_settings()  # a wrong setting is one line for every command, before anything runs
        if getattr(args, "inline", False):
            from worker.config import check_device

            check_device(get_settings())  # before the job is saved: BERTJOBS_DEVICE=cuda on a host without it
        return args.func(args)
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

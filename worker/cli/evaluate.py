"""`bertjobs predict` (texts now), `bertjobs evaluate` (a stored evaluation, as a job) and `models compare`
(two versions on one labelled collection). The scoring is worker/jobs/evaluation.py's; this module reads the command
line and prints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from worker.cli.common import (MODEL_REF, CliError, add_filter_flags, add_run_flags, document_filter, json_flag,
                               sessions)
from worker.cli.follow import broker_unreachable, follow, waiting_line
from worker.cli.output import print_comparison, print_evaluation, print_predictions
from worker.config import get_settings


def _read_lines(name: str) -> list[str]:
    """The lines of a UTF-8 file (``-``: stdin), without their line ends."""
    if name == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(name)
        if not path.is_file():
            raise CliError(f"no such file: {path}")
        data = path.read_bytes()
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{'stdin' if name == '-' else name} is not UTF-8 text: {exc.reason} "
                       f"at byte {exc.start}") from exc
    lines = [line.rstrip("\r") for line in body.split("\n")]
    if lines and lines[-1] == "" and body.endswith("\n"):
        lines.pop()  # the newline that ends the last line starts no text
    return lines


def cmd_predict(args) -> int:
    from worker.client import predict

    texts = list(args.texts) + (_read_lines(args.file) if args.file else [])
    if not texts:
        raise CliError("no texts to classify: give them as arguments or with --file (one per line, - for stdin)")
    rows = predict(args.model, texts)
    if args.json:
        print(json.dumps({"model": rows[0]["model"],
                          "predictions": [{"text": t, **{k: v for k, v in r.items() if k != "model"}}
                                          for t, r in zip(texts, rows)]}, sort_keys=True))
    else:
        print_predictions(texts, rows)
    return 1 if any(r["error"] for r in rows) else 0


def _evaluation(evaluation_id: int) -> dict:
    """A stored evaluation as worker/jobs/evaluation.py's ``as_dict`` shapes it."""
    from db.models import Evaluation, ModelVersion
    from worker.jobs.evaluation import as_dict

    with sessions().begin() as s:
        row = s.get(Evaluation, evaluation_id)
        return as_dict(row, s.get(ModelVersion, row.model_version_id).ref)


def cmd_evaluate(args) -> int:
    from worker.client import submit_evaluation

    handle = submit_evaluation(args.collection, args.model, filter=document_filter(args),
                               idempotency_key=args.idempotency_key, enqueue=not args.inline)
    if not args.inline and not handle.published:
        raise CliError(broker_unreachable(handle))
    if not (args.inline or args.wait):
        print(json.dumps({"job_id": handle.id, "status": "queued"}) if args.json else
              f"job {handle.id} queued (evaluate); follow it with: bertjobs jobs wait {handle.id}")
        return 0
    if not args.json:
        waiting_line(handle.id, "evaluate", args.inline)
    snap = follow(handle, inline_kind="evaluate" if args.inline else None)
    if snap is None:
        return 130
    if snap.status != "succeeded":
        raise CliError(f"evaluation job {snap.id} {snap.status}: {snap.error}")
    ev = _evaluation(snap.result["evaluation_id"])
    print(json.dumps(ev, sort_keys=True)) if args.json else print_evaluation(ev)
    return 0


def cmd_compare(args) -> int:
    from worker.jobs import evaluation
    from worker.jobs.params import check_filter
    from worker.jobs.target import resolve

    settings, factory = get_settings(), sessions()
    where = check_filter(document_filter(args))
    with factory.begin() as s:
        a, b = resolve(s, args.a), resolve(s, args.b)
    ra = evaluation.evaluate(factory, settings, a, args.collection, where)
    rb = evaluation.evaluate(factory, settings, b, args.collection, where)
    diffs = evaluation.disagreements(ra, rb)
    evs = [_evaluation(evaluation.store(factory, r)) for r in (ra, rb)]
    if args.json:
        print(json.dumps({"collection": args.collection, "a": evs[0], "b": evs[1], "documents": len(ra.ids),
                          "disagreements": len(diffs), "examples": diffs[: args.show]}, sort_keys=True))
    else:
        print_comparison(args.collection, len(ra.ids), evs, diffs, args.show)
    return 0


def register(sub) -> None:
    pr = sub.add_parser("predict", help="classify texts now and print label and score per text",
                        parents=[json_flag()])
    pr.add_argument("model", help=MODEL_REF)
    pr.add_argument("texts", nargs="*", help="texts to classify")
    pr.add_argument("--file", help="one text per line; - reads stdin")
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="evaluate a model version on a labelled collection (a job) and store it",
                        parents=[json_flag()])
    ev.add_argument("model", help=MODEL_REF)
    ev.add_argument("--collection", required=True, help="a labelled collection")
    add_run_flags(ev)
    ev.set_defaults(func=cmd_evaluate)


def register_compare(models_sub) -> None:
    """`models compare A B --collection C` (registered by worker/cli/models.py)."""
    mc = models_sub.add_parser("compare", help="evaluate two versions on a labelled collection, side by side",
                               parents=[json_flag()])
    mc.add_argument("a", help=MODEL_REF)
    mc.add_argument("b")
    mc.add_argument("--collection", required=True)
    add_filter_flags(mc)
    mc.add_argument("--show", type=int, default=20, help="disagreements to print")
    mc.set_defaults(func=cmd_compare)

"""`bertjobs results`: the stored predictions, newest first, of a collection and/or a model version."""
from __future__ import annotations

from worker.cli.common import MODEL_REF, CliError, json_flag, sessions
from worker.cli.output import print_results


def cmd_results(args) -> int:
    from db import repo
    from worker.present import prediction_json, print_json

    with sessions().begin() as s:
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
            print_json([prediction_json(doc, pred, mv) for doc, pred, mv in rows])
        else:
            print_results(rows)
    return 0


def register(sub) -> None:
    rs = sub.add_parser("results", help="print predictions", parents=[json_flag()])
    rs.add_argument("--collection")
    rs.add_argument("--model", help=MODEL_REF)
    rs.add_argument("--limit", type=int, default=20)
    rs.set_defaults(func=cmd_results)

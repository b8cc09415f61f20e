"""`bertjobs models list|show|promote|describe|compare|rollback|history|report`: the registered model versions and the
aliases pointing at them (worker/ops/registry.py moves aliases; `compare` is worker/cli/evaluate.py's)."""
from __future__ import annotations

from worker.cli.common import MODEL_REF, CliError, json_flag, sessions
from worker.cli.evaluate import register_compare
from worker.cli.output import print_alias_history, print_model_table
from worker.cli.quantize import add_command as add_quantize_command


def _ready_version(s, ref: str):
    from db import repo

    mv = repo.resolve_model_version(s, ref)
    if mv is None:
        raise CliError(f"no ready model version matches {ref!r}")
    return mv


def cmd_list(args) -> int:
    from db import repo
    from worker.present import model_version_json, print_json

    with sessions().begin() as s:
        versions = repo.list_model_versions(s, args.name)
        aliases = repo.aliases_by_version(s, args.name)
        if args.json:
            print_json([model_version_json(mv, aliases.get(mv.id)) for mv in versions])
            return 0
        latest = {mv.id: repo.list_evaluations(s, mv.id, limit=1) for mv in versions}
        print_model_table(versions, aliases, {i: evs[0].accuracy for i, evs in latest.items() if evs})
    return 0


def cmd_show(args) -> int:
    """The version as JSON with or without --json: one shape (worker/present.py), plus its stored evaluations."""
    from db import repo
    from worker.jobs.evaluation import as_dict
    from worker.present import model_version_json, print_json

    with sessions().begin() as s:
        mv = _ready_version(s, args.ref)
        print_json({**model_version_json(mv, repo.aliases_by_version(s, mv.name).get(mv.id)),
                    "evaluations": [as_dict(ev, mv.ref) for ev in repo.list_evaluations(s, mv.id)]})
    return 0


def cmd_promote(args) -> int:
    from worker.ops.registry import promote

    promotion = promote(args.ref, args.alias, gate_collection=args.gate, force=args.force)
    print(promotion.describe())
    return 0 if promotion.promoted else 1


def cmd_describe(args) -> int:
    from worker.ops.registry import describe

    print(f"{describe(args.ref, args.description)}: {args.description}")
    return 0


def cmd_rollback(args) -> int:
    from worker.ops.registry import rollback

    print(rollback(args.name, args.alias))
    return 0


def cmd_history(args) -> int:
    from db import repo

    with sessions().begin() as s:
        versions = {mv.id: mv.ref for mv in repo.list_model_versions(s, args.name)}
        moves = repo.alias_history(s, args.name, args.alias, limit=args.limit)
        if not moves:
            raise CliError(f"no alias of {args.name!r} has moved yet")
        print_alias_history(moves, versions)
    return 0


def cmd_report(args) -> int:
    from worker.ops.report import write_report

    with sessions().begin() as s:
        mv = _ready_version(s, args.ref)
        path = write_report({"name": mv.name, "version": mv.version, "base_model": mv.base_model,
                             "metrics": mv.metrics, "hyperparameters": mv.hyperparameters,
                             "lineage": mv.lineage}, mv.artifact_path)
        print(f"{mv.ref}: accuracy {mv.metrics.get('accuracy', 0):.4f}, "
              f"macro-F1 {mv.metrics.get('macro_f1', 0):.4f}; report: {path}")
    return 0


def register(sub) -> None:
    md = sub.add_parser("models", help="registered model versions")
    msub = md.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list", parents=[json_flag()],
                         help="versions with their aliases, validation scores (val_acc, val_f1) and the accuracy "
                              "of their latest evaluation (eval_acc)")
    ml.add_argument("name", nargs="?")
    ml.set_defaults(func=cmd_list)
    ms = msub.add_parser("show", parents=[json_flag()])
    ms.add_argument("ref", help=MODEL_REF)
    ms.set_defaults(func=cmd_show)
    mp = msub.add_parser("promote", help="point an alias (production, staging...) at a version")
    mp.add_argument("ref")
    mp.add_argument("--alias", default="production")
    mp.add_argument("--gate", metavar="COLLECTION",
                    help="promote only if macro-F1 on this labelled collection beats the current holder's")
    mp.add_argument("--force", action="store_true",
                    help="make a version with trust warnings (see models show) production all the same")
    mp.set_defaults(func=cmd_promote)
    mdesc = msub.add_parser("describe", help="say again what a version is for (models list/show, the report)")
    mdesc.add_argument("ref", help=MODEL_REF)
    mdesc.add_argument("description")
    mdesc.set_defaults(func=cmd_describe)
    register_compare(msub)
    mr = msub.add_parser("rollback", help="point an alias back at the version it held before (again: one further)")
    mr.add_argument("name")
    mr.add_argument("--alias", default="production")
    mr.set_defaults(func=cmd_rollback)
    mh = msub.add_parser("history", help="who moved the model's aliases where, when, with which command")
    mh.add_argument("name")
    mh.add_argument("--alias", help="only this alias")
    mh.add_argument("--limit", type=int, default=50)
    mh.set_defaults(func=cmd_history)
    mrep = msub.add_parser("report", help="write the HTML training report and print where it is")
    mrep.add_argument("ref")
    mrep.set_defaults(func=cmd_report)
    add_quantize_command(msub, json_flag())

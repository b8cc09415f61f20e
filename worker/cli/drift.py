"""`bertjobs drift --collection C --model M`: a model's label shares over a collection run by run, each run against
the runs before it (worker/ops/drift.py), a shift flagged at BERTJOBS_DRIFT_PSI_THRESHOLD."""
from __future__ import annotations

from worker.cli.common import CliError, json_flag, sessions
from worker.config import get_settings


def cmd_drift(args) -> int:
    from db import repo
    from worker.cli.output import print_drift
    from worker.ops.drift import drift_runs
    from worker.present import drift_json, print_json

    if args.runs < 1:
        raise CliError(f"--runs must be at least 1, got {args.runs}")
    name, which = repo.parse_model_ref(args.model)
    if which is not None:
        raise CliError(f"drift compares the runs of a model name, any version: give {name!r}, not {args.model!r}")
    settings = get_settings()
    with sessions().begin() as s:
        runs = drift_runs(s, args.collection, name, args.runs, settings)
        if not runs:
            _no_runs(s, args.collection, name)
    if args.json:
        print_json(drift_json(args.collection, name, runs, threshold=settings.drift_psi_threshold,
                              baseline_runs=settings.drift_baseline_runs))
    else:
        print_drift(args.collection, name, runs, settings.drift_psi_threshold, settings.drift_baseline_runs)
    return 0


def _no_runs(session, collection: str, name: str) -> None:
    """Why there is nothing to show: an unknown collection or model is an error; no run yet is not."""
    from db import repo

    if not repo.collection_exists(session, collection):
        raise CliError(f"unknown collection {collection!r}")
    if not repo.model_name_exists(session, name):
        raise CliError(f"unknown model {name!r}")


def register(sub) -> None:
    dr = sub.add_parser(
        "drift", parents=[json_flag()], help="label shares of a model over a collection, run by run, and their shifts",
        description="Each classification run that succeeded keeps its label shares and mean top score. A run is "
                    "compared with the mean shares of up to BERTJOBS_DRIFT_BASELINE_RUNS runs before it of the "
                    "same model name (population-stability index, PSI) and flagged SHIFT at "
                    "BERTJOBS_DRIFT_PSI_THRESHOLD or above. A new model version and a change of scope (all "
                    "documents, only new ones, a filter) are marked: their shares may move by design.")
    dr.add_argument("--collection", required=True)
    dr.add_argument("--model", required=True, help="a model name (its runs with any version)")
    dr.add_argument("--runs", type=int, default=14, help="show the latest N runs (default 14)")
    dr.set_defaults(func=cmd_drift)

"""Model registry operations beyond plain rows: gated promotion, rollback, evaluation on a labelled collection."""
from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass

from db import repo
from db.models import ModelVersion
from db.session import session_factory_for
from worker.config import Settings, get_settings
from worker.errors import InvalidJob
from worker.jobs.target import Target
from db.names import check_name, parse_model_ref


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    model: str
    alias: str
    previous: str | None
    candidate_macro_f1: float | None = None
    holder_macro_f1: float | None = None

    def describe(self) -> str:
        scores = ""
        if self.candidate_macro_f1 is not None:
            holder = "none" if self.holder_macro_f1 is None else f"{self.holder_macro_f1:.4f}"
            scores = f" (gate macro-F1: candidate {self.candidate_macro_f1:.4f}, current {holder})"
        if not self.promoted:
            return f"not promoted: {self.model} does not beat {self.previous}{scores}"
        name, _ = parse_model_ref(self.model)
        return f"{name}@{self.alias} -> {self.model}" + (f" (was {self.previous})" if self.previous else "") + scores


def evaluate(mv: ModelVersion, collection: str, settings: Settings) -> dict:
    """Metrics of a model version on the labelled documents of a collection (worker/jobs/evaluation.py; not stored)."""
    from worker.jobs import evaluation

    sessions = session_factory_for(settings.resolved_database_url)
    return evaluation.evaluate(sessions, settings, Target.of(mv), collection).metrics


def _gate_macro_f1(target, collection: str, settings: Settings) -> float:
    """Evaluate as `bertjobs evaluate` does and keep the record (the version's `models show` lists it)."""
    from worker.jobs import evaluation

    sessions = session_factory_for(settings.resolved_database_url)
    result = evaluation.evaluate(sessions, settings, target, collection)
    evaluation.store(sessions, result)
    return result.metrics["macro_f1"]


def trust_flags(mv: ModelVersion) -> list[str]:
    """The version's trust warnings (worker/ml/trust.py, recorded at training): not clearly above the
    majority-class baseline, a validation split too small to judge, classes never predicted."""
    return list((mv.metrics or {}).get("trust_warnings") or [])


def check_trusted(mv: ModelVersion, alias: str, force: bool) -> None:
    """Production takes no flagged version unless forced (InvalidJob: one line naming the first warning)."""
    flags = trust_flags(mv)
    if alias == "production" and flags and not force:
        more = f" (and {len(flags) - 1} more warning(s))" if len(flags) > 1 else ""
        raise InvalidJob(f"{mv.ref} is flagged: {flags[0]}{more}; promote it to production with --force if you must")


def promote(ref: str, alias: str = "production", *, gate_collection: str | None = None,
            settings: Settings | None = None, force: bool = False) -> Promotion:
    """Point ``name@alias`` at ``ref``; with a gate, only if its macro-F1 on the collection beats the holder's.
    A version with trust warnings becomes production only with ``force``."""
    check_name("alias", alias)
    if gate_collection is not None:
        check_name("collection", gate_collection)
    settings = settings or get_settings()
    sessions = session_factory_for(settings.resolved_database_url)
    with sessions.begin() as s:
        candidate = repo.resolve_model_version(s, ref)
        if candidate is None:
            raise InvalidJob(f"no ready model version matches {ref!r}")
        check_trusted(candidate, alias, force)
        holder = repo.resolve_model_version(s, f"{candidate.name}@{alias}")
        candidate_target, holder_target = Target.of(candidate), Target.of(holder) if holder else None
    model, previous = candidate.ref, holder.ref if holder else None
    candidate_f1 = holder_f1 = None
    if gate_collection:
        candidate_f1 = _gate_macro_f1(candidate_target, gate_collection, settings)
        if holder_target is not None and holder_target.id != candidate_target.id:
            holder_f1 = _gate_macro_f1(holder_target, gate_collection, settings)
            if candidate_f1 <= holder_f1:
                return Promotion(False, model, alias, previous, candidate_f1, holder_f1)
    with sessions.begin() as s:
        repo.set_alias(s, repo.resolve_model_version(s, model), alias,
                       command="promote --gate" if gate_collection else "promote", actor=actor())
    return Promotion(True, model, alias, previous, candidate_f1, holder_f1)


def describe(ref: str, description: str, settings: Settings | None = None) -> str:
    """Set what a model version is for (its lineage's ``description``); returns the version's reference."""
    from worker.jobs.params import check_description

    check_description(description, {})
    settings = settings or get_settings()
    with session_factory_for(settings.resolved_database_url).begin() as s:
        mv = repo.resolve_model_version(s, ref)
        if mv is None:
            raise InvalidJob(f"no ready model version matches {ref!r}")
        repo.set_lineage_fields(s, mv, description=description)
        return mv.ref


def actor() -> str:
    """Who moves an alias, for its history: user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container without one)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def rollback(name: str, alias: str = "production", settings: Settings | None = None) -> str:
    """Point ``name@alias`` back at its holder before the current one (stepping back through the history)."""
    check_name("model name", name)
    check_name("alias", alias)
    settings = settings or get_settings()
    with session_factory_for(settings.resolved_database_url).begin() as s:
        if not repo.model_name_exists(s, name):
            raise InvalidJob(f"unknown model {name!r}")
        if repo.alias_holder(s, name, alias) is None:
            raise InvalidJob(f"model {name!r} has no alias {alias!r}; nothing to roll back")
        mv = repo.rollback_alias(s, name, alias, actor=actor())
        if mv is None:
            raise InvalidJob(f"{name}@{alias} has no earlier version to roll back to")
        return f"{name}@{alias} -> {mv.ref}"

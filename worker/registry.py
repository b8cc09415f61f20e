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
from db.names import check_name


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
        name = self.model.split(":")[0]
        return f"{name}@{self.alias} -> {self.model}" + (f" (was {self.previous})" if self.previous else "") + scores


def evaluate(mv: ModelVersion, collection: str, settings: Settings) -> dict:
    """Metrics of a model version on the labelled documents of a collection (predicted here, not stored)."""
    from worker.ml.metrics import classification_metrics, multilabel_metrics
    from worker.ml.predict import load_classifier

    classifier = load_classifier(mv.artifact_path, sha256=mv.artifact_sha256, device=settings.device)
    multi = classifier.thresholds is not None
    with session_factory_for(settings.resolved_database_url).begin() as s:
        data = repo.load_labelled(s, collection, multi_label=multi)
    if not data.ids:
        raise InvalidJob(f"collection {collection!r} has no labelled documents to evaluate on")
    predictions = classifier.predict_or_fail(data.texts, settings.classify_batch_size, settings.max_text_chars)
    if multi:  # label sets against the model's labels, at the thresholds it was registered with
        scored = [(t, p) for t, p in zip(data.labels, predictions) if p.scores is not None]
        y = [[int(label in truth) for label in classifier.labels] for truth, _ in scored]
        probs = [[p.scores[label] for label in classifier.labels] for _, p in scored]
        return multilabel_metrics(y, probs, classifier.labels, classifier.thresholds)
    labels = sorted(set(data.labels) | set(mv.labels))
    index = {label: i for i, label in enumerate(labels)}
    pairs = [(index[t], index[p.label]) for t, p in zip(data.labels, predictions) if p.label is not None]
    return classification_metrics([t for t, _ in pairs], [p for _, p in pairs], labels)


def promote(ref: str, alias: str = "production", *, gate_collection: str | None = None,
            settings: Settings | None = None) -> Promotion:
    """Point ``name@alias`` at ``ref``; with a gate, only if its macro-F1 on the collection beats the holder's."""
    check_name("alias", alias)
    if gate_collection is not None:
        check_name("collection", gate_collection)
    settings = settings or get_settings()
    sessions = session_factory_for(settings.resolved_database_url)
    with sessions.begin() as s:
        candidate = repo.resolve_model_version(s, ref)
        if candidate is None:
            raise InvalidJob(f"no ready model version matches {ref!r}")
        holder = repo.resolve_model_version(s, f"{candidate.name}@{alias}")
    model = f"{candidate.name}:{candidate.version}"
    previous = f"{holder.name}:{holder.version}" if holder else None
    candidate_f1 = holder_f1 = None
    if gate_collection:
        candidate_f1 = evaluate(candidate, gate_collection, settings)["macro_f1"]
        if holder is not None and holder.id != candidate.id:
            holder_f1 = evaluate(holder, gate_collection, settings)["macro_f1"]
            if candidate_f1 <= holder_f1:
                return Promotion(False, model, alias, previous, candidate_f1, holder_f1)
    with sessions.begin() as s:
        repo.set_alias(s, repo.resolve_model_version(s, model), alias,
                       command="promote --gate" if gate_collection else "promote", actor=actor())
    return Promotion(True, model, alias, previous, candidate_f1, holder_f1)


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
        return f"{name}@{alias} -> {mv.name}:{mv.version}"

"""The model registry: versions, aliases (moves, history, rollback) and evaluations."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.models import Evaluation, ModelAlias, ModelAliasHistory, ModelVersion, utcnow
from db.names import check_name, parse_model_ref


def next_model_version(session: Session, name: str) -> int:
    return (session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0) + 1


def register_model_version(session: Session, **fields: Any) -> ModelVersion:
    """Insert a model version numbered one past the latest of its name."""
    mv = ModelVersion(version=next_model_version(session, fields["name"]), **fields)
    session.add(mv)
    session.flush()
    return mv


def set_lineage_fields(session: Session, mv: ModelVersion, **values: Any) -> None:
    """Update keys of a version's lineage JSON (a new dict, so the change is written)."""
    mv.lineage = {**(mv.lineage or {}), **values}
    session.flush()


def resolve_model_version(session: Session, ref: str) -> ModelVersion | None:
    """The ready version ``ref`` names (``name``, ``name:3``, ``name@alias``; see db.names), or None."""
    name, selector = parse_model_ref(ref)
    stmt: Select = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "ready")
    if isinstance(selector, int):
        stmt = stmt.where(ModelVersion.version == selector)
    elif isinstance(selector, str):
        stmt = stmt.join(ModelAlias, ModelAlias.model_version_id == ModelVersion.id).where(ModelAlias.alias == selector)
    return session.scalar(stmt.order_by(ModelVersion.version.desc()).limit(1))


def list_model_versions(session: Session, name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
    if name:
        check_name("model name", name)
        stmt = stmt.where(ModelVersion.name == name)
    return list(session.scalars(stmt))


def alias_holder(session: Session, name: str, alias: str, *, lock: bool = False) -> ModelAlias | None:
    """The alias row; ``lock`` holds it (PostgreSQL: FOR UPDATE) so two moves of one alias serialize."""
    stmt = select(ModelAlias).where(ModelAlias.name == name, ModelAlias.alias == alias)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def set_alias(session: Session, mv: ModelVersion, alias: str, *, command: str = "promote",
              actor: str | None = None) -> int | None:
    """Point ``name@alias`` at this version and record the move in the alias history (a no-op if it holds it
    already). Returns the version id it pointed at before (None: a new alias)."""
    current = alias_holder(session, mv.name, alias, lock=True)
    if current is None:
        session.add(ModelAlias(name=mv.name, alias=alias, model_version_id=mv.id, updated_at=utcnow()))
        _record_alias_move(session, mv.name, alias, mv.id, None, command, actor)
        session.flush()
        return None
    previous = current.model_version_id
    if previous != mv.id:
        current.previous_version_id, current.model_version_id, current.updated_at = previous, mv.id, utcnow()
        _record_alias_move(session, mv.name, alias, mv.id, previous, command, actor)
        session.flush()
    return previous


def _record_alias_move(session: Session, name: str, alias: str, to_id: int, from_id: int | None, command: str,
                       actor: str | None) -> None:
    session.add(ModelAliasHistory(name=name, alias=alias, model_version_id=to_id, previous_version_id=from_id,
                                  command=command, actor=actor, created_at=utcnow()))


def alias_history(session: Session, name: str, alias: str | None = None,
                  limit: int | None = None) -> list[ModelAliasHistory]:
    """Moves of the model's aliases (or of one alias), oldest first (the newest ``limit`` of them)."""
    stmt = select(ModelAliasHistory).where(ModelAliasHistory.name == name)
    if alias is not None:
        stmt = stmt.where(ModelAliasHistory.alias == alias)
    if limit is not None:
        return list(reversed(list(session.scalars(stmt.order_by(ModelAliasHistory.id.desc()).limit(limit)))))
    return list(session.scalars(stmt.order_by(ModelAliasHistory.id)))


def alias_stack(session: Session, name: str, alias: str) -> list[int]:
    """The holders a rollback steps back through, oldest first, the current holder last: the history replayed,
    each promotion pushing its version (unless it is on top already) and each rollback popping one."""
    stack: list[int] = []
    for move in alias_history(session, name, alias):
        if move.command == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != move.model_version_id:  # a history that disagrees: trust the move
                stack.append(move.model_version_id)
        elif not stack or stack[-1] != move.model_version_id:
            stack.append(move.model_version_id)
    return stack


def rollback_alias(session: Session, name: str, alias: str, *, actor: str | None = None) -> ModelVersion | None:
    """Point ``name@alias`` at the holder before the current one in its history; None when there is none.

    A -> B -> C, rollback: B; rollback again: A (not C). The rollback is recorded in the history too.
    """
    current = alias_holder(session, name, alias, lock=True)
    if current is None:
        return None
    stack = alias_stack(session, name, alias)
    if not stack or stack[-1] != current.model_version_id:  # moved outside the history (by hand): start there
        stack.append(current.model_version_id)
    if len(stack) < 2:
        return None
    target = stack[-2]
    moved_from = current.model_version_id
    current.model_version_id, current.previous_version_id, current.updated_at = target, moved_from, utcnow()
    _record_alias_move(session, name, alias, target, moved_from, "rollback", actor)
    session.flush()
    return session.get(ModelVersion, target)


def aliases_by_version(session: Session, name: str | None = None) -> dict[int, list[str]]:
    """Model version id -> the aliases pointing at it (sorted)."""
    stmt = select(ModelAlias.model_version_id, ModelAlias.alias).order_by(ModelAlias.alias)
    if name:
        stmt = stmt.where(ModelAlias.name == name)
    out: dict[int, list[str]] = {}
    for version_id, alias in session.execute(stmt):
        out.setdefault(version_id, []).append(alias)
    return out


def add_evaluation(session: Session, **fields: Any) -> Evaluation:
    """Record an evaluation of a model version on a labelled collection (see worker/jobs/evaluation.py)."""
    evaluation = Evaluation(**fields)
    session.add(evaluation)
    session.flush()
    return evaluation


def list_evaluations(session: Session, model_version_id: int, limit: int = 50) -> list[Evaluation]:
    """A model version's evaluations, newest first."""
    return list(session.scalars(select(Evaluation).where(Evaluation.model_version_id == model_version_id)
                                .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit)))


def model_name_exists(session: Session, name: str) -> bool:
    """Whether any version (ready or not) of a model name was ever registered (InvalidName for a bad name)."""
    check_name("model name", name)
    return session.scalar(select(ModelVersion.id).where(ModelVersion.name == name).limit(1)) is not None

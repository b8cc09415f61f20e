"""The layering, checked: imports point one way (tasks -> jobs -> {ml, db}); each rule names what breaks it.

Read from the source (every import statement, also those inside functions), so a rule holds whichever code
path runs: ``worker/ml`` imports nothing of ours outside itself, ``db`` imports only ``db``, Celery is imported
only by the queue modules, and no two of our modules import each other, directly or round a longer loop.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("worker", "db", "migrations")
QUEUE_MODULES = {"worker.celery_app", "worker.tasks", "worker.publish"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            if "versions" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module this file imports (absolute names; relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            # `from worker import jobs` imports the module worker.jobs
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return out


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _ours(imported: set[str]) -> set[str]:
    return {m for m in imported if m.split(".")[0] in OURS}


def _violations(prefix: str, allowed) -> list[str]:
    return sorted(f"{name} imports {m}" for name, imported in IMPORTS.items()
                  if name == prefix or name.startswith(prefix + ".")
                  for m in _ours(imported) if not allowed(m))


def test_the_ml_code_imports_nothing_of_ours_outside_worker_ml():
    assert _violations("worker.ml", lambda m: m == "worker.ml" or m.startswith("worker.ml.")) == []


def test_the_ml_code_imports_neither_celery_nor_the_database_libraries():
    bad = sorted(f"{name} imports {m}" for name, imported in IMPORTS.items() if name.startswith("worker.ml")
                 for m in imported if m.split(".")[0] in {"celery", "kombu", "sqlalchemy", "alembic", "redis"})
    assert bad == []


def test_db_imports_only_db_and_its_migrations():
    assert _violations("db", lambda m: m.split(".")[0] in {"db", "migrations"}) == []


def test_migrations_import_only_db_and_migrations():
    assert _violations("migrations", lambda m: m.split(".")[0] in {"db", "migrations"}) == []


def test_celery_is_imported_only_by_the_queue_modules():
    bad = sorted(name for name, imported in IMPORTS.items()
                 if any(m.split(".")[0] in {"celery", "kombu"} for m in imported) and name not in QUEUE_MODULES)
    assert bad == []


def test_no_module_of_ours_imports_tasks_except_the_celery_app():
    bad = sorted(name for name, imported in IMPORTS.items() if "worker.tasks" in imported
                 and name not in {"worker.celery_app", "worker.tasks"})
    assert bad == []


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def test_no_import_cycles_between_our_modules():
    # A package's __init__ re-exporting its modules is not a cycle with them.
    graph = {name: {m for m in _ours(imported) if m in MODULES and m != name
                    and not (MODULES[name].name == "__init__.py" and m.startswith(name + "."))
                    and not (MODULES.get(m) and MODULES[m].name == "__init__.py" and name.startswith(m + "."))}
             for name, imported in IMPORTS.items()}
    cycles = {tuple(c) for name in graph if (c := _cycle_from(name, graph))}
    assert not cycles, sorted(cycles)[:5]


@pytest.mark.parametrize("top", ["worker", "db"])
def test_modules_stay_small(top):
    big = sorted(f"{_module_name(p)}: {n} lines" for p in (ROOT / top).rglob("*.py")
                 if (n := len(p.read_text().splitlines())) > 320)
    assert big == []


@pytest.mark.parametrize("top", ["worker", "db"])
def test_functions_stay_short(top):
    long = []
    for path in (ROOT / top).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{_module_name(path)}.{node.name}: {length} lines")
    assert sorted(long) == []

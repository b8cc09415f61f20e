"""docker-compose.yml cannot run here (no Docker engine); check that it agrees with the code."""
from __future__ import annotations

from pathlib import Path

import yaml

from worker.cli import build_parser
from worker.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_app_service_runs_a_real_bertjobs_command():
    services = _compose()["services"]
    app_services = {name: s for name, s in services.items() if s.get("image") == "bertjobs:latest"}
    assert {"migrate", "worker-gpu0", "worker-maintenance", "beat"} <= set(app_services)
    for name, service in app_services.items():
        args = build_parser().parse_args(service["command"])  # raises SystemExit on an unknown command or flag
        assert args.command == service["command"][0], name


def test_workers_wait_for_the_migration_and_healthy_services():
    services = _compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (n for n in services if n.startswith("worker-") or n == "beat"):
        worker = services[name]
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    queues = set()
    for name in (n for n in services if n.startswith("worker-")):
        args = build_parser().parse_args(services[name]["command"])
        queues |= set(args.queues.split(","))
    from worker.celery_app import QUEUES

    assert queues == set(QUEUES.values())  # every queue the app routes to has a consumer
    for name in (n for n in services if n.startswith("worker-gpu")):
        worker = services[name]
        assert worker["command"][:2] == ["worker", "--gpu"]
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and len(devices[0]["device_ids"]) == 1
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name] and services[name]["volumes"]


def test_the_multi_gpu_training_worker_owns_the_gpus_it_reserves_and_waits_for_its_profile():
    service = _compose()["services"]["worker-train-multigpu"]
    args = build_parser().parse_args(service["command"])
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert (args.gpus, args.queues) == ("0,1,2,3", "train") and service["profiles"] == ["multigpu"]
    assert len(devices[0]["device_ids"]) == len(args.gpus.split(",")) and devices[0]["capabilities"] == ["gpu"]
    assert service["shm_size"]  # NCCL's shared memory


def test_the_environment_names_real_settings():
    fields = {f"BERTJOBS_{name.upper()}" for name in Settings.model_fields}
    for service in _compose()["services"].values():
        for key in (service.get("environment") or {}):
            if key.startswith("BERTJOBS_"):
                assert key in fields, key


def test_the_dockerfile_installs_the_package_the_way_the_makefile_does():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and 'ARG EXTRAS="ui"' in dockerfile  # the package, with the web view
    assert 'pip install ".[${EXTRAS}]"' in dockerfile
    for folder in ("worker", "db", "migrations"):
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_every_setting_is_in_the_readme_configuration_table():
    from pathlib import Path

    from worker.config import Settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert [name for name in Settings.model_fields if f"`BERTJOBS_{name.upper()}`" not in readme] == []


def test_the_web_view_service_needs_its_token_and_is_published_on_loopback_only():
    from worker.web.command import is_loopback

    ui = _compose()["services"]["ui"]
    args = build_parser().parse_args(ui["command"])
    assert args.command == "ui" and not is_loopback(args.host)  # in its container: all addresses, so a token
    assert ui["environment"]["BERTJOBS_UI_TOKEN"].startswith("${BERTJOBS_UI_TOKEN")
    assert all(port.startswith("127.0.0.1:") for port in ui["ports"])
    assert ui["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

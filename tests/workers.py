"""Start and stop real ``celery worker`` processes for the end-to-end and fault-injection tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
FAULT_WORKER = ROOT / "tests" / "fault_worker.py"


class WorkerPool:
    """Worker processes, each in its own process group so a signal reaches the parent and its child."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str = "w1", *, queues: str = "train,classify,maintenance", **env: str) -> subprocess.Popen:
        argv = [sys.executable, str(FAULT_WORKER), "--pool", "prefork", "--concurrency", "1",
                "--prefetch-multiplier", "1", "-Q", queues, "--hostname", f"{name}@%h", "--loglevel", "info",
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        log = open(self.log_dir / f"worker-{name}.log", "a")
        proc = subprocess.Popen(argv, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int) -> None:
        os.killpg(self.procs[name].pid, sig)

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"worker-{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout} s")

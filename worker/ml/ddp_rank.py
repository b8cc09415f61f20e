"""The ranks of a parallel training run (worker/ml/distributed.py): rank 0 is the process that calls
``fine_tune_parallel`` (a worker's prefork child, never the worker's parent); the others are started from it as
``python -m worker.ml.ddp_rank``, one per extra GPU (or CPU process in tests).

Plain subprocesses, not multiprocessing: a prefork child is daemonic under billiard, and daemonic processes may
not start multiprocessing children; a spawned child would also re-import Celery's ``__main__``. Each rank reads
its run (texts, labels, configuration, whether all of the data trains, checkpoint folder, rendezvous port) as one
JSON line on its stdin, then keeps reading: when rank 0 ends (a killed worker included) the pipe closes and the
rank ends itself, so no rank outlives its run. Ranks above 0 never touch the database or the checkpoint folder's
files, except to read the checkpoint they resume from.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Iterator, Sequence

import torch

from worker.ml.config import TrainConfig
from worker.ml.distributed import Parallel, rank_device, serve_store, threads_per_rank
from worker.ml.errors import Cancelled
from worker.ml.train import TrainResult, checkpoint_key, fine_tune, prepare_run

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 10.0  # how long rank 0 waits for the others to end (after the run, or after closing their pipes)


class RankFailed(RuntimeError):
    """Another rank of the run ended with an error (its traceback is in the worker's log)."""


def fine_tune_parallel(texts: Sequence[str], labels: Sequence, config: TrainConfig, callbacks=None,
                       checkpoint_dir: Path | None = None, processes: int = 1, *, all_data: bool = False) -> TrainResult:
    """``worker.ml.train.fine_tune`` over ``processes`` processes, this one rank 0 (its callbacks run, it returns
    the result); with one process, ``fine_tune`` itself. ``all_data``: as fine_tune's (a refit, every rank too)."""
    if processes <= 1:
        return fine_tune(texts, labels, config, callbacks, checkpoint_dir, all_data=all_data)
    world = processes
    config.validate()
    store = serve_store(world)
    run = {"texts": list(texts), "labels": [x if isinstance(x, str) else list(x) for x in labels],
           "config": config.to_dict(), "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir),
           "world": world, "port": store.port, "key": checkpoint_key(texts, labels, config, all_data=all_data),
           "all_data": all_data}
    device = rank_device(config.device, 0)
    with _cpu_threads(device, world), _group(run, device, store) as parallel:
        prepared, trainer = prepare_run(texts, labels, config, callbacks, checkpoint_dir, parallel, run["key"],
                                        all_data=all_data)
        trainer.run()
    return prepared.result(trainer)


class _Ranks:
    """Ranks 1 .. world-1, each a subprocess holding the read end of its stdin pipe."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, run: dict, device: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if device == "cpu":
            env["OMP_NUM_THREADS"] = str(threads_per_rank(run["world"]))
        line = (json.dumps(run) + "\n").encode()
        for rank in range(1, run["world"]):
            proc = subprocess.Popen([sys.executable, "-m", "worker.ml.ddp_rank", str(rank)], stdin=subprocess.PIPE,
                                    env=env, cwd=str(ROOT))
            self.procs.append(proc)
            proc.stdin.write(line)
            proc.stdin.flush()

    def finish(self) -> None:
        """After the run: every rank ends by itself, with success."""
        for rank, proc in enumerate(self.procs, 1):
            try:
                code = proc.wait(timeout=GRACE_SECONDS * 6)
            except subprocess.TimeoutExpired:
                raise RankFailed(f"training rank {rank} did not end after the run") from None
            if code != 0:
                raise RankFailed(f"training rank {rank} ended with {_how(code)} (see the worker's log)")

    def failed(self) -> list[str]:
        """The ranks that ended with an error, as words; a rank whose death broke rank 0's collective may not
        have been reaped yet, so each gets a moment."""
        deadline = time.monotonic() + 1.0
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        return [f"rank {r} ({_how(p.returncode)})" for r, p in enumerate(self.procs, 1) if p.poll() not in (None, 0)]

    def stop(self) -> None:
        """Close every rank's pipe (a rank still in the run ends itself), kill those still running after the
        grace time."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _how(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"exit code {code}"


@contextlib.contextmanager
def _group(run: dict, device: str, store) -> Iterator[Parallel]:
    """Start ranks 1 .. world-1, then join the group as rank 0. On any error in rank 0, the other ranks are
    stopped before the group closes (closing it first would break their collectives: a failure of their own)."""
    ranks, parallel = _Ranks(), None
    try:
        ranks.start(run, device)
        parallel = Parallel.start(store, 0, run["world"], device)
        yield parallel
        ranks.finish()
    except BaseException as exc:
        failed = ranks.failed()
        ranks.stop()
        if failed and not isinstance(exc, (Cancelled, RankFailed)):
            raise RankFailed(f"training {', '.join(failed)} failed (see the worker's log)") from exc
        raise
    finally:
        ranks.stop()
        if parallel is not None:
            parallel.close()


@contextlib.contextmanager
def _cpu_threads(device: str, world: int) -> Iterator[None]:
    """On the CPU, this process's share of the cores while the run lasts."""
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads_per_rank(world))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _end_when_orphaned() -> None:
    """Read stdin to its end: rank 0 closed it (stopping the run) or died; either way this rank ends now."""
    with contextlib.suppress(OSError):
        while os.read(0, 1 << 16):  # the file descriptor, not sys.stdin: no lock held at the interpreter's exit
            pass
    os._exit(3)


def main(rank: int) -> int:
    run = json.loads(sys.stdin.buffer.readline() or "null")
    if run is None:
        return 2
    threading.Thread(target=_end_when_orphaned, name="orphan-check", daemon=True).start()
    config = TrainConfig.from_dict(run["config"])
    device = rank_device(config.device, rank)
    if device == "cpu":
        torch.set_num_threads(threads_per_rank(run["world"]))
    parallel = Parallel.join(rank, run["world"], run["port"], device)
    directory = Path(run["checkpoint_dir"]) if run["checkpoint_dir"] else None
    try:
        _, trainer = prepare_run(run["texts"], run["labels"], config, None, directory, parallel, run["key"],
                                 all_data=run.get("all_data", False))
        trainer.run()
    except Cancelled:
        pass  # every rank stops at the same step; rank 0 reports it
    finally:
        parallel.close()
    return 0


def _run(rank: int) -> int:
    try:
        return main(rank)
    except Exception:  # noqa: BLE001 - the traceback goes to the worker's log; rank 0 reports the failure
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    code = _run(int(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # at once: the orphan check's thread is still reading stdin

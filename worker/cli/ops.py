"""Operating bertjobs: `worker` and `beat` (exec Celery), `reap` and `nightly` (once, now), `metrics`, `demo`
and `completion`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from worker.cli.common import CliError
from worker.config import get_settings


def gpu_list(value: str) -> list[str]:
    """``--gpus 0,1,2,3``: distinct GPU numbers, in the order given."""
    gpus = [g.strip() for g in value.split(",")]
    if not all(g.isdigit() for g in gpus) or len(set(map(int, gpus))) != len(gpus):
        raise CliError(f"--gpus takes distinct GPU numbers separated by commas (0,1,2,3), not {value!r}")
    return [str(int(g)) for g in gpus]


def cmd_worker(args) -> int:
    """Exec a Celery worker: prefork, concurrency 1, pinned to one GPU with --gpu, or owning several with --gpus
    (a training job then runs over all of them: BERTJOBS_TRAIN_PROCESSES, worker/ml/distributed.py)."""
    from worker.config import check_engine

    settings = get_settings()
    check_engine(settings)  # BERTJOBS_CLASSIFY_ENGINE=openvino without OpenVINO: refused before it starts
    gpus = [str(args.gpu)] if args.gpu is not None else gpu_list(args.gpus) if args.gpus is not None else None
    if gpus and settings.train_processes > len(gpus):
        raise CliError(f"BERTJOBS_TRAIN_PROCESSES={settings.train_processes}, but this worker owns {len(gpus)} GPU(s)")
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    if settings.device.startswith("cuda"):
        from worker.config import check_device

        os.environ.update(env)  # this process is replaced by celery below; no CUDA context is created here
        check_device(settings)
    hostname = args.hostname or (f"gpu{'-'.join(gpus)}@%h" if gpus else "bertjobs@%h")
    celery_args = args.celery_args[1:] if args.celery_args[:1] == ["--"] else args.celery_args
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "1", "--prefetch-multiplier", "1", "-Q", args.queues, "--hostname", hostname,
            "--loglevel", args.loglevel, *celery_args]
    os.execvpe(argv[0], argv, env)
    return 0  # pragma: no cover


def cmd_beat(args) -> int:
    """Exec celery beat: runs the reaper every BERTJOBS_REAPER_INTERVAL_SECONDS."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", args.loglevel,
            "--schedule", str(settings.data_dir / "celerybeat-schedule")]
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover


def cmd_reap(args) -> int:
    from worker.ops.reaper import reap

    report = reap()
    print(f"requeued {report.requeued}, dead {report.dead}, cancelled {report.cancelled}, "
          f"republished {report.republished}")
    return 0


def cmd_nightly(args) -> int:
    from worker.ops.nightly import run_nightly

    handles = run_nightly()
    if not handles:
        print("nothing started (see BERTJOBS_NIGHTLY_MODEL and BERTJOBS_NIGHTLY_COLLECTIONS, or the log)")
    for h in handles:
        print(f"job {h.id}: {'queued' if h.created else 'already created today'}")
    return 0


def cmd_metrics(args) -> int:
    from worker.ops.metrics import prometheus_text

    text = prometheus_text(get_settings())
    if args.textfile:
        target = Path(args.textfile)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    else:
        print(text, end="")
    return 0


def cmd_demo(args) -> int:
    from worker.demo import run_demo

    return run_demo(train_docs=args.train_docs, classify_docs=args.classify_docs, epochs=args.epochs)


def cmd_completion(args) -> int:
    from worker.cli import build_parser
    from worker.cli.completion import bash_script, zsh_script

    print((bash_script if args.shell == "bash" else zsh_script)(build_parser()), end="")
    return 0


def register_services(sub) -> None:
    """The long-running processes and the reaper's one run."""
    wk = sub.add_parser("worker", help="start a Celery worker (one per GPU, or one training worker for several)")
    pin = wk.add_mutually_exclusive_group()
    pin.add_argument("--gpu", type=int, help="pin this worker to GPU N (sets CUDA_VISIBLE_DEVICES)")
    pin.add_argument("--gpus", metavar="N,N,...",
                     help="give this worker these GPUs (CUDA_VISIBLE_DEVICES): a training job runs over all of them "
                          "with DistributedDataParallel, one process per GPU (use with --queues train)")
    wk.add_argument("--queues", default="train,classify",
                    help="queues to consume (default train,classify; the reaper's is `maintenance`)")
    wk.add_argument("--hostname")
    wk.add_argument("--loglevel", default="info")
    wk.add_argument("celery_args", nargs=argparse.REMAINDER, help="more celery worker options after --")
    wk.set_defaults(func=cmd_worker)
    bt = sub.add_parser("beat", help="start celery beat (runs the reaper periodically)")
    bt.add_argument("--loglevel", default="info")
    bt.set_defaults(func=cmd_beat)
    rp = sub.add_parser("reap", help="recover lost jobs once (what beat runs periodically)")
    rp.set_defaults(func=cmd_reap)


def register_tools(sub) -> None:
    """The nightly run now, metrics, the demo and shell completion."""
    ng = sub.add_parser("nightly", help="start today's nightly classification now (what beat runs at nightly_time)")
    ng.set_defaults(func=cmd_nightly)
    mt = sub.add_parser("metrics", help="Prometheus metrics: jobs by status, queue depth, documents per second, label drift")
    mt.add_argument("--textfile", help="write atomically to this file (node_exporter textfile collector)")
    mt.set_defaults(func=cmd_metrics)
    dm = sub.add_parser("demo", help="import Rotten Tomatoes, train on part of it, classify the rest")
    dm.add_argument("--train-docs", type=int, default=2400)
    dm.add_argument("--classify-docs", type=int, default=3000)
    dm.add_argument("--epochs", type=int, default=2)
    dm.set_defaults(func=cmd_demo)
    cp = sub.add_parser("completion", help="print a shell completion script: source <(bertjobs completion bash)")
    cp.add_argument("shell", choices=["bash", "zsh"])
    cp.set_defaults(func=cmd_completion)

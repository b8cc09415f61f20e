"""What people watching a job see: one progress line, redrawn in place on a terminal, a plain line every few
seconds when piped (so a log shows it). The same bar for ``--wait``, ``--inline``, ``jobs wait`` and the demo.

It reads only job snapshots (the job row): ``progress_done``/``progress_total`` and, while the job runs, the
display detail a job keeps in ``result["progress"]`` (training: epoch and loss; classification: the documents
of the page in flight, not yet committed).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, TextIO

UNITS = {"train": "steps", "classify": "documents"}


def detail(snap) -> dict[str, Any]:
    """The display detail of a running job (empty once it finished: its result is the outcome then)."""
    if snap.finished or not isinstance(snap.result, dict):
        return {}
    value = snap.result.get("progress")
    return value if isinstance(value, dict) else {}


class ProgressBar:
    """Called with each snapshot; draws ``job 7 running [####----] 120/400 steps 3.1 steps/s ETA 1:30 epoch 2/3 loss 0.41``.

    On a TTY the line is redrawn in place (``\\r``); otherwise a full line is written at most every
    ``plain_every`` seconds, and always for the final snapshot.
    """

    def __init__(self, stream: TextIO, width: int = 30, plain_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.width, self.plain_every, self.clock = stream, width, plain_every, clock
        self.first: tuple[float, int] | None = None
        self.last_plain: float | None = None
        self.drawn = 0  # the longest frame drawn on a terminal
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False

    def line(self, snap) -> str:
        now, extra = self.clock(), detail(snap)
        done = snap.progress_done + int(extra.get("inflight") or 0)
        total = snap.progress_total
        if total:
            done = min(done, total)
        unit = extra.get("unit") or UNITS.get(snap.kind, "")
        # The rate counts from the first work seen (not from a job still loading its model), anew after a retry.
        if snap.status == "running" and done > 0 and (self.first is None or done < self.first[1]):
            self.first = (now, done)
        rate = (done - self.first[1]) / (now - self.first[0]) if self.first and now > self.first[0] else 0.0
        parts = [f"job {snap.id} {snap.status:9}"]
        if total:
            filled = int(self.width * min(done / total, 1.0))
            parts.append(f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {unit}")
        else:
            parts.append(f"{done} {unit}")
        if rate > 0 and not snap.finished:
            parts.append(f"{rate:.1f} {unit}/s")
            if total and done < total:
                eta = int((total - done) / rate)
                parts.append(f"ETA {eta // 60}:{eta % 60:02d}")
        if extra.get("epoch") is not None:
            parts.append((f"{extra['phase']} " if extra.get("phase") else "") + f"epoch {extra['epoch']}"
                         + (f"/{extra['epochs']}" if extra.get("epochs") else ""))
        if extra.get("trial") is not None:
            parts.append(f"trial {extra['trial']}" + (f"/{extra['trials']}" if extra.get("trials") else ""))
        if extra.get("loss") is not None:
            parts.append(f"loss {float(extra['loss']):.4f}")
        return parts[0] + " " + " ".join(p.rstrip() for p in parts[1:])

    def __call__(self, snap) -> None:
        text = self.line(snap)
        if self.tty:  # padded to the longest frame so far, so no tail of a longer one is left behind
            self.drawn = max(self.drawn, len(text))
            self.stream.write("\r" + text.ljust(self.drawn) + ("\n" if snap.finished else ""))
        else:
            now = self.clock()
            if not snap.finished and self.last_plain is not None and now - self.last_plain < self.plain_every:
                return
            self.last_plain = now
            self.stream.write(text + "\n")
        self.stream.flush()


def run_inline_with_progress(handle, kind: str, stream: TextIO, poll: float = 1.0):
    """Run the job in this process (worker/jobs.run_inline) with the bar drawn from a thread polling its row.

    Returns the final snapshot, after the bar drew it.
    """
    from worker import jobs

    bar = ProgressBar(stream)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll):
            try:
                snap = handle.snapshot()
            except Exception:  # noqa: BLE001 - a busy database; the next poll tries again
                continue
            if not snap.finished:
                bar(snap)

    watcher = threading.Thread(target=watch, name=f"progress-{handle.id}", daemon=True)
    watcher.start()
    try:
        jobs.run_inline(handle.id, kind)
    finally:
        stop.set()
        watcher.join()
    snap = handle.snapshot()
    bar(snap)
    return snap


def wait_with_progress(handle, stream: TextIO, poll: float = 1.0):
    """Wait for a job run elsewhere (a worker) with the bar; the final snapshot."""
    return handle.wait(poll=poll, on_progress=ProgressBar(stream))

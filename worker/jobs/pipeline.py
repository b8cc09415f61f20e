"""Overlapped stages of a bulk job: while the job's thread runs the model on one page, a reader thread reads and
tokenizes the next pages and a writer thread commits finished ones, in page order.

Bounded queues a few pages deep sit between the stages, so memory stays flat however fast one stage is. The first
error in any stage (a lost fence, a cancel, a database or model error) stops every stage within one page and is
raised on the job's thread, so the runtime fails or retries the job exactly as it does for the serial loop.
"""
from __future__ import annotations

import contextlib
import gc
import queue
import threading
from typing import Callable, Iterable

END = object()  # the end of the pages, or of the stages once one of them stopped
POLL_SECONDS = 0.05  # how often a stage waiting on a queue looks whether another stage stopped


class Stages:
    """The queues between the stages and the shared stop: the first error wins, every stage sees the stop."""

    def __init__(self, depth: int):
        self.prepared: queue.Queue = queue.Queue(depth)  # reader -> forward
        self.finished: queue.Queue = queue.Queue(depth)  # forward -> writer
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stopped.set()

    def put(self, q: queue.Queue, item) -> bool:
        """Queue ``item`` unless the stages stop first (False)."""
        while not self.stopped.is_set():
            try:
                q.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue):
        """The next item, or END once the stages stop."""
        while not self.stopped.is_set():
            try:
                return q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return END


def read_stage(stages: Stages, pages: Iterable[tuple], prepare: Callable) -> None:
    """Read pages and prepare (tokenize) them; empty pages are skipped, as the serial loop does."""
    try:
        for item in pages:
            if stages.stopped.is_set():
                return
            if item[0] and not stages.put(stages.prepared, (item, prepare(item[0]))):
                return
        stages.put(stages.prepared, END)
    except BaseException as exc:  # noqa: BLE001 - raised on the job's thread
        stages.fail(exc)


def write_stage(stages: Stages, commit: Callable) -> None:
    """Commit pages in the order they were read (one queue, one writer: the order holds)."""
    try:
        while (got := stages.get(stages.finished)) is not END:
            if stages.stopped.is_set():
                return
            commit(*got)
    except BaseException as exc:  # noqa: BLE001 - raised on the job's thread
        stages.fail(exc)


@contextlib.contextmanager
def older_objects_frozen():
    """The objects alive before the block (the model, the tokenizer, every imported module: a few hundred
    thousand) are kept out of the garbage collector's full passes while it runs (``gc.freeze``), and given back
    after. The pages' objects live long enough in the queues to reach the oldest generation, so a job of 16k short
    documents made one or two full passes over all of them (0.4 s each on 2 loaded cores); frozen, its CPU fell by
    an eighth (bench/README.md). A process that froze its objects itself is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_pipeline(pages: Iterable[tuple], prepare: Callable, forward: Callable, commit: Callable,
                 depth: int = 2) -> None:
    """``prepare(page)`` on a reader thread, ``forward(item, prepared)`` on this thread, ``commit(item, result)``
    on a writer thread, for every ``item`` of ``pages`` (tuples whose first element is the page)."""
    stages = Stages(depth)
    threads = [threading.Thread(target=read_stage, args=(stages, pages, prepare), name="bulk-read", daemon=True),
               threading.Thread(target=write_stage, args=(stages, commit), name="bulk-write", daemon=True)]
    with older_objects_frozen():
        for thread in threads:
            thread.start()
        try:
            while (got := stages.get(stages.prepared)) is not END:
                item, prepared = got
                stages.put(stages.finished, (item, forward(item, prepared)))
            stages.put(stages.finished, END)
            threads[1].join()  # every finished page committed
        except BaseException as exc:  # noqa: BLE001 - raised below, after the other stages stopped
            stages.fail(exc)
        finally:
            stages.stopped.set()
            for thread in threads:
                thread.join()
    if stages.error is not None:
        raise stages.error

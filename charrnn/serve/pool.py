"""The worker threads that compute the API's answers, so that the event loop only moves bytes.

A fixed number of threads take jobs from a bounded queue. A job that finds the queue full is
refused at once (`Busy`: the server answers 503 with Retry-After), never left to wait without
end. Every job can be cancelled: a queued one is dropped unstarted, a running generation stops at
its next character (it calls `Job.check`), which is how a client that goes away, or a server that
stops, frees its worker within a character's time. Results cross back to the event loop with
`call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class Cancelled(Exception):
    """The job was cancelled: its client went away, or the server is stopping."""


class Job:
    """A unit of work's cancellation flag, which the work checks between its steps."""

    def __init__(self, pool: "Pool") -> None:
        self._pool = pool
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def check(self) -> None:
        """Raise Cancelled when the job or the whole pool has been stopped."""
        if self.cancelled or self._pool.stopping:
            raise Cancelled("the server is stopping" if self._pool.stopping else "cancelled")


class Pool:
    """`workers` threads and a queue of at most `queue_size` waiting jobs."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.stopping = False
        self.running = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        # daemon threads: a worker stuck in one long computation never keeps the process alive
        self._threads = [threading.Thread(target=self._work, name=f"charrnn-serve-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, fn: Callable[[Job], Any]) -> tuple[Job, asyncio.Future]:
        """Queue fn(job) and return (job, a future of its result on the running loop); Busy when
        the queue is full."""
        if self.stopping:
            raise Cancelled("the server is stopping")
        loop = asyncio.get_running_loop()
        job, future = Job(self), loop.create_future()
        future.add_done_callback(_retrieved)
        try:
            self._queue.put_nowait((fn, job, future, loop))
        except queue.Full:
            raise Busy() from None
        return job, future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, job, future, loop = item
            ok, value = False, None
            try:
                job.check()
                with self._lock:
                    self.running += 1
                try:
                    value, ok = fn(job), True
                finally:
                    with self._lock:
                        self.running -= 1
            except BaseException as e:  # handed to the request that waits for it
                value = e
            try:
                loop.call_soon_threadsafe(_settle, future, ok, value)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def stop(self, timeout: float = 1.0) -> None:
        """Cancel every job, queued or running, and let the threads end (waiting at most
        `timeout` seconds in all)."""
        self.stopping = True
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        deadline = timeout / max(1, len(self._threads))
        for t in self._threads:
            t.join(deadline)


def _retrieved(future: asyncio.Future) -> None:
    """Mark the outcome as seen: a job whose client went away leaves nobody to look at it, and
    asyncio would log its exception as never retrieved."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.done():  # cancelled by its request
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)

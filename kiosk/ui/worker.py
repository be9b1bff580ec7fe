"""Running blocking work (SQLite, printing, checks) off Kivy's main thread.

``Worker.submit(fn, done)`` runs ``fn()`` on the worker's one thread, in order, and
hands ``done(result, error)`` to ``post`` - in the app ``post`` is
``Clock.schedule_once``-based, so results reach widgets on the main thread. One
worker owns the ledger's SQLite connection, so its transactions never interleave.
"""

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
Done = Callable[[object, BaseException | None], None]


class Worker:
    def __init__(self, post: Callable[[Callable[[], None]], None], name: str = "kiosk-worker"):
        self.post = post
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], object], done: Done | None = None) -> None:
        self._jobs.put((fn, done))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done = job
            result, error = None, None
            try:
                result = fn()
            except Exception as exc:  # reported to the caller, never lost in the thread
                log.exception("background job failed")
                error = exc
            if done is not None:
                self.post(lambda d=done, r=result, e=error: d(r, e))

    def close(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


class InlineWorker:
    """Runs jobs at once on the calling thread (controller unit tests, screenshots)."""

    def submit(self, fn: Callable[[], object], done: Done | None = None) -> None:
        result, error = None, None
        try:
            result = fn()
        except Exception as exc:
            error = exc
        if done is not None:
            done(result, error)

    def close(self, timeout: float = 0) -> None:
        pass

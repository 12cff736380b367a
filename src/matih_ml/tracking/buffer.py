"""Buffered metric logging: the training loop appends, a background thread writes.

``add`` checks a point and appends it to a deque: about a microsecond, so logging
never slows training. A flusher thread takes up to ``batch`` points at a time and
writes them with :class:`~matih_ml.mlflow_adapter.bulk.BulkMetricWriter`. Nothing is dropped:

- when the buffer holds ``capacity`` points, ``add`` waits for the flusher
  (backpressure);
- a failed write keeps its points, in order, and is retried; ``flush`` raises the
  error if the points still cannot be written;
- ``flush`` returns once every point added before it is stored; ``close`` (run end)
  and interpreter exit flush too.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from matih_ml import validation
from matih_ml.mlflow_adapter.bulk import Point

log = logging.getLogger(__name__)

_MAX_STEP = validation.MAX_STEP
_clock = time.time


class MetricBuffer:
    """One run's pending metric points.

    Args:
        write: Stores a batch of points (in order); raises on failure.
        capacity: Points held before ``add`` waits.
        batch: Points per write.
        interval_s: How long a partial batch may wait before it is written.
    """

    def __init__(
        self,
        write: Callable[[list[Point]], object],
        *,
        capacity: int = 1_000_000,
        batch: int = 50_000,
        interval_s: float = 0.2,
    ) -> None:
        self._write = write
        self._capacity = capacity
        self._batch = batch
        self._interval_s = interval_s
        # Points as (key, value, time.time(), step) until the flusher takes them.
        self._points: deque[tuple[str, float, float, int]] = deque()
        self._keys: set[str] = set()
        self._retry: list[Point] = []
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="matih-metrics", daemon=True)
        self._thread.start()
        _open_buffers.add(self)

    # ----------------------------------------------------------- the hot path

    def add(self, key: str, value: float, step: int = 0) -> None:
        """Check one point and queue it (the value is logged at the current time).

        Raises:
            ValidationError: For a bad key, a non-finite or non-number value, a bad step.
        """
        if key not in self._keys:
            self._keys.add(validation.key(key, "metric key"))
        # value - value is 0.0 for every finite float and NaN for NaN and infinities.
        if type(value) is not float or value - value != 0.0:
            value = validation.metric_value(key, value)
        if type(step) is not int or not 0 <= step <= _MAX_STEP:
            step = validation.step(step)
        points = self._points
        # The time is kept as the clock gives it; the flusher turns it into ms.
        points.append((key, value, _clock(), step))
        if len(points) >= self._batch:
            self._wake.set()
            if len(points) >= self._capacity:
                self._wait_for_room()

    def add_many(self, metrics: dict[str, float], step: int) -> None:
        """Queue several points at one step; all are checked before any is queued."""
        clean = validation.metrics(metrics)
        at = validation.step(step)
        for k in clean:
            self._keys.add(k)
        now = _clock()
        self._points.extend((k, v, now, at) for k, v in clean.items())
        if len(self._points) >= self._batch:
            self._wake.set()

    # -------------------------------------------------------------- control

    def flush(self) -> None:
        """Return once every point added so far is stored.

        Raises:
            Exception: The write's error, if the points cannot be stored now (they are
                kept, and retried).
        """
        with self._cond:
            self._error = None  # only a failure of a write from now on counts
        self._wake.set()
        with self._cond:
            while (self._points or self._retry or self._busy) and self._error is None:
                self._wake.set()
                self._cond.wait(0.05)
            if self._error is not None:
                error, self._error = self._error, None
                raise error

    def close(self) -> None:
        """Flush and stop the flusher thread.

        If the points cannot be stored, the error is raised and the thread goes on
        retrying them (and exit flushes them once more): they are not dropped.
        """
        self._closed = True
        self.flush()
        self._wake.set()
        self._thread.join(timeout=10)
        _open_buffers.discard(self)

    @property
    def pending(self) -> int:
        """Points not yet stored."""
        return len(self._points) + len(self._retry)

    # --------------------------------------------------------------- inside

    def _wait_for_room(self) -> None:
        # Even while writes fail: waiting is how a full buffer says so, dropping is not.
        with self._cond:
            while len(self._points) >= self._capacity:
                self._wake.set()
                self._cond.wait(0.05)

    def _take(self) -> list[Point]:
        if self._retry:
            batch, self._retry = self._retry, []
            return batch
        pop = self._points.popleft
        return [
            (k, v, int(t * 1000), s)
            for k, v, t, s in (pop() for _ in range(min(len(self._points), self._batch)))
        ]

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            while True:
                with self._cond:
                    batch = self._take()
                    self._busy = bool(batch)
                if not batch:
                    break
                try:
                    self._write(batch)
                except Exception as exc:  # noqa: BLE001 - kept, retried, raised by flush()
                    log.warning("writing %d metric points failed: %s", len(batch), exc)
                    with self._cond:
                        self._retry = batch
                        self._error = exc
                        self._busy = False
                        self._cond.notify_all()
                    time.sleep(min(self._interval_s * 5, 1.0))
                    break
                with self._cond:
                    self._busy = False
                    self._error = None
                    self._cond.notify_all()
            if self._closed and not self._points and not self._retry:
                return


_open_buffers: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # A normal exit loses no point: whatever is still queued is written now.
    for buffer in list(_open_buffers):
        try:
            buffer.flush()
        except Exception as exc:  # noqa: BLE001 - at exit, report and go on
            log.error("metric points could not be written at exit: %s", exc)

"""A bounded sample of live traffic per served version, kept in this process.

Each replica monitors the traffic it serves; Prometheus adds the replicas up. The
window keeps the last ``size`` requests' latencies and outcomes and the last ``size``
input rows and predictions, so memory stays flat however long a version serves.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str, str]  # tenant, model, version


@dataclass
class Window:
    """One version's recent traffic."""

    size: int
    latencies_ms: deque[float] = field(init=False)
    errors: deque[bool] = field(init=False)
    rows: deque[dict[str, Any]] = field(init=False)
    predictions: deque[Any] = field(init=False)
    requests: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        self.latencies_ms = deque(maxlen=self.size)
        self.errors = deque(maxlen=self.size)
        self.rows = deque(maxlen=self.size)
        self.predictions = deque(maxlen=self.size)


class LiveTraffic:
    """Windows of every version this process has served."""

    def __init__(self, size: int, rows_per_request: int = 50) -> None:
        self._size = size
        self._rows_per_request = rows_per_request
        self._lock = threading.Lock()
        self._windows: dict[Key, Window] = {}
        self._rng = random.Random(0)

    def record(
        self,
        key: Key,
        latency_ms: float,
        error: bool,
        records: list[dict[str, Any]] | None = None,
        predictions: list[Any] | None = None,
    ) -> None:
        """Add one request; a large batch adds a random subset of its rows."""
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = Window(self._size)
            w.requests += 1
            w.failures += int(error)
            w.latencies_ms.append(latency_ms)
            w.errors.append(error)
            if records and predictions and len(records) == len(predictions):
                picks = range(len(records))
                if len(records) > self._rows_per_request:
                    picks = sorted(self._rng.sample(picks, self._rows_per_request))
                for i in picks:
                    w.rows.append(records[i])
                    w.predictions.append(predictions[i])

    def add_rows(self, key: Key, rows: list[dict[str, Any]], predictions: list[Any]) -> None:
        """Add input rows and their predictions scored outside a request (a batch job's
        sample): the drift checks see them; the request, latency and error figures do
        not, as no request was served."""
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = Window(self._size)
            w.rows.extend(rows)
            w.predictions.extend(predictions)

    def snapshot(self, key: Key) -> Window | None:
        """A copy of one version's window (None if it has served nothing here)."""
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                return None
            copy = Window(self._size)
            copy.latencies_ms.extend(w.latencies_ms)
            copy.errors.extend(w.errors)
            copy.rows.extend(w.rows)
            copy.predictions.extend(w.predictions)
            copy.requests, copy.failures = w.requests, w.failures
            return copy

    def served(self) -> list[Key]:
        """Every version with a window."""
        with self._lock:
            return list(self._windows)

    def reset(self, key: Key) -> None:
        """Forget a version's window (an operator's reset after a fix)."""
        with self._lock:
            self._windows.pop(key, None)

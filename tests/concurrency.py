"""Running one piece of work on many threads at once, for the tests that try to race."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_threads(n: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` for i in 0..n-1 on n threads released together; re-raise failures.

    The barrier makes the threads start at the same moment, which is when races happen.
    """
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

"""What a running job can tell its executor, and ask it: log a line, am I cancelled?"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("matih_ml.training")


class JobCancelled(Exception):
    """Raised inside a job when its cancel was requested; the executor records it."""


def _never() -> bool:
    return False


def _nothing(_: str) -> None:
    return None


@dataclass
class JobContext:
    """The executor's side of a running job.

    Attributes:
        job_id: The job (the ``matih.job_id`` tag of its runs).
        emit: Where log lines go (the job's log in the service database).
        cancelled: True once a cancel was requested.
        on_parent_run: Called with the job's run id as soon as the run exists.
    """

    job_id: str = ""
    emit: Callable[[str], None] = _nothing
    cancelled: Callable[[], bool] = _never
    on_parent_run: Callable[[str], None] = field(default=_nothing)

    def log(self, line: str) -> None:
        """Add a line to the job's log."""
        log.info("job %s: %s", self.job_id or "-", line)
        self.emit(line)

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was asked to stop."""
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

"""What the doors for the two kinds of job share: a page of jobs, a page of log lines.

Training and batch-scoring jobs are one queue and one executor (``JobService``); each
door names its kind on every call, so one kind's id is not found through the other's
door. The doors keep their own typed methods (their contracts' signatures); the bodies
that would be the same twice live here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from matih_ml.contracts.names import JobStatusName
from matih_ml.contracts.schemas import LogLineRead, LogPage, Page
from matih_ml.errors import ValidationError
from matih_ml.local._base import within
from matih_ml.training.jobs import Job, LogLine

if TYPE_CHECKING:
    from matih_ml.services import Services

R = TypeVar("R", bound=BaseModel)

# A page token is the offset of the page's first job (the route's query pattern).
_TOKEN = re.compile(r"[0-9]{1,9}")


def job_page(
    services: Services,
    tenant: str,
    kind: str,
    read: Callable[[Job], R],
    *,
    status: JobStatusName | None,
    limit: int,
    page_token: str | None,
) -> Page[R]:
    """One page of a tenant's jobs of one kind, newest first, as the route pages them.

    Raises:
        ValidationError: ``limit`` out of bounds, or a token this service did not give.
    """
    within(limit, "limit", 1, 500)
    if page_token is not None and not _TOKEN.fullmatch(page_token):
        raise ValidationError(
            "page_token is not one this service gave.", details={"field": "page_token"}
        )
    offset = int(page_token or 0)
    # One more than asked: whether it comes back says whether a next page exists.
    jobs = services.jobs.list(tenant, status=status, limit=limit + 1, offset=offset, kind=kind)
    token = str(offset + limit) if len(jobs) > limit else None
    return Page(items=[read(j) for j in jobs[:limit]], next_page_token=token)


def log_page(
    services: Services, tenant: str, kind: str, job_id: str, *, after: int, limit: int
) -> LogPage:
    """A job's log lines after sequence ``after``, as the route pages them.

    Raises:
        ValidationError: ``after`` or ``limit`` out of bounds.
        NotFoundError: No such job of this kind for this tenant.
    """
    within(after, "after", 0, 2**62)
    within(limit, "limit", 1, 5000)
    lines = services.jobs.logs(tenant, job_id, after=after, limit=limit, kind=kind)
    return _log_page(lines, after)


def _log_page(lines: Iterable[LogLine], after: int) -> LogPage:
    # A function of its own: mypy misreads the ``list[...]`` that JobService.logs returns
    # (the class has a ``list`` method); a parameter typed here reads it right.
    items = [LogLineRead(**line.__dict__) for line in lines]
    return LogPage(items=items, next_after=items[-1].seq if items else after)

"""Named cut points on the paths that write two systems: a test hook, inert unless set.

The crash tests start ``matih-ml serve`` with ``MATIH_CRASH_AT`` naming one or more
points (comma-separated), or ``MATIH_CRASH_AT_FILE`` naming a file that holds them.
When a request reaches an armed point the process either kills itself
(``MATIH_CRASH_MODE=kill``, the default: a SIGKILL, as a node dies) or cuts every
database connection of the service (``cut-db``: PostgreSQL's ``pg_terminate_backend``
on the database named by ``MATIH_CRASH_DB_URL``, as a failover or a network cut does)
and goes on. Without the variables, a cut point is one set lookup.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

_AT = frozenset(p.strip() for p in os.environ.get("MATIH_CRASH_AT", "").split(",") if p.strip())
# A file whose text names the armed points, read at each point: one long-running process
# can be cut at a different point each time (connection cuts need no restart).
_AT_FILE = os.environ.get("MATIH_CRASH_AT_FILE", "")
_MODE = os.environ.get("MATIH_CRASH_MODE", "kill")

# The points, so that a test can name them all and a typo fails loudly.
POINTS = (
    "promote.before_commit",
    "promote.after_commit",
    "projection.mid",
    "register.after_intent",
    "register.after_version",
    "register.after_visible",
    "register.after_commit",
)


def crash_point(name: str) -> None:
    """Die here, or cut the database connections here, if the environment says so."""
    if name not in _AT and not (_AT_FILE and name in _armed()):
        return
    if _MODE == "cut-db":
        _cut_database()
        return
    log.warning("crash point %s: killing the process", name)
    os.kill(os.getpid(), signal.SIGKILL)


def _armed() -> set[str]:
    try:
        with open(_AT_FILE) as f:
            return {p.strip() for p in f.read().split(",") if p.strip()}
    except OSError:
        return set()


def _cut_database() -> None:
    import psycopg

    url = os.environ["MATIH_CRASH_DB_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )

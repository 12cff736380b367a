"""This process's connection to Ray: made once for the training jobs, and left again.

Its own module, light to import (Ray and psutil are imported when called): the data
readers, the trainers and the executor all use it, and none of them imports another for it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

# The thread whose ensure_ray() started this process's Ray, if one did. Ray ties its local
# node to that thread (the node dies when the thread ends), so that thread stops it.
_STARTED_BY: int | None = None


def ensure_ray(address: str | None) -> None:
    """Connect to Ray (``address``'s cluster, or a local one) unless already connected."""
    import ray

    global _STARTED_BY
    if ray.is_initialized():
        return
    target = address or "local"
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if target == "local":
        options["num_cpus"] = 2  # the service's host is shared: do not take every core
    ray.init(address=target, **options)
    _STARTED_BY = threading.get_ident()


def started_ray_here() -> bool:
    """Whether this thread's :func:`ensure_ray` started the process's Ray."""
    return threading.get_ident() == _STARTED_BY


def shutdown_ray() -> None:
    """Disconnect from Ray if :func:`ensure_ray` connected; a local Ray stops with it.

    Call it from the thread that started Ray, before that thread ends: Ray's local node
    is bound to that thread, and once the thread is gone the node's agents are orphans.
    """
    global _STARTED_BY
    if _STARTED_BY is None:
        return
    import psutil
    import ray

    # Whatever of the node is still ours (its agents are grandchildren) is waited for,
    # and killed if it outlives the shutdown.
    family = [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]
    ray.shutdown()
    _, alive = psutil.wait_procs(family, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _STARTED_BY = None


def _is_ray(proc: Any) -> bool:
    import psutil

    try:
        return "ray" in " ".join(proc.cmdline())
    except psutil.Error:
        return False

"""How many bytes a tenant stores: everything under its artifact prefix, listed."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def bytes_under(root: str, s3_client: Callable[[], object] | None = None) -> int | None:
    """The bytes of every object under ``root`` (an ``s3://`` prefix or a local folder).

    Args:
        root: A tenant's artifact prefix (runs' artifacts and the registry's copies).
        s3_client: Builds the boto3 S3 client (default: MLflow's endpoint from
            ``MLFLOW_S3_ENDPOINT_URL``, as the artifact repository uses).

    Returns:
        The total, or None for a store that cannot be listed here (another scheme): the
        storage limit is then not enforced for it.
    """
    if root.startswith("s3://"):
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        client = (s3_client or _s3_client)()
        total = 0
        pages = client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=bucket, Prefix=prefix.rstrip("/") + "/"
        )
        for page in pages:
            total += sum(int(o["Size"]) for o in page.get("Contents", ()))
        return total
    if "://" not in root or root.startswith("file://"):
        folder = Path(root.removeprefix("file://"))
        total = 0
        for dirpath, _, files in os.walk(folder):
            for name in files:
                try:
                    total += (Path(dirpath) / name).lstat().st_size
                except OSError:  # removed while we walked
                    continue
        return total
    log.info("storage limit not enforced: %s cannot be listed", root.split("://")[0])
    return None


def _s3_client() -> object:
    return _client_for(os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


@functools.lru_cache(maxsize=4)
def _client_for(endpoint: str | None) -> object:
    # Building a client costs tens of milliseconds; boto3's clients are thread-safe.
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)

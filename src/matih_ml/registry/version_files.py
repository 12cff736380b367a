"""Reading one file, or one folder's listing, of a version's own copy of its files.

The version's folder is the root: a path is relative to it (checked by
:func:`matih_ml.validation.artifact_path`), and on a local disk it must still be inside
the folder once symlinks are followed, so that a link a tenant managed to store there
cannot hand out another tenant's bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated


def _local_root(uri: str) -> Path | None:
    """The folder of a local artifact URI (a path or ``file:``), None for object stores."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)
    return None


def _require_inside(uri: str, rel: str | None, label: str) -> None:
    root = _local_root(uri)
    if root is None or not rel:
        return
    real_root = root.resolve()
    if not (real_root / rel).resolve().is_relative_to(real_root):
        # Said as "not found": the file is not one of this version's.
        raise NotFoundError(f"{label}: {rel!r} not found.", details={"path": rel})


def list_files(uri: str, rel: str | None, label: str) -> list[Any]:
    """The files and folders at ``rel`` (None: the top) of the folder ``uri``."""
    _require_inside(uri, rel, label)
    with translated(label):
        return list(get_artifact_repository(uri).list_artifacts(rel))


def download_file(uri: str, rel: str, dest: Path, label: str) -> Path:
    """Copy the file ``rel`` of the folder ``uri`` into the folder ``dest``.

    Raises:
        NotFoundError: No such file in the folder.
        ValidationError: ``rel`` is a folder.
    """
    _require_inside(uri, rel, label)
    try:
        with translated(label):
            local = Path(get_artifact_repository(uri).download_artifacts(rel, str(dest)))
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"{label}: {rel!r} not found.", details={"path": rel}) from exc
    if local.is_dir():
        raise ValidationError(f"{rel!r} is a folder; list it instead.", details={"field": "path"})
    return local

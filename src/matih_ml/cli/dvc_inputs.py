"""The data a DVC pipeline produced, read from its ``dvc.lock``, as a run's inputs.

The registration stage (``matih-ml models register --run-id-file ...``, docs/dvc.md)
records them on the run before it registers: every output DVC locked with an md5 (the
prepared data, features, anything a stage wrote), by path and hash, except the run id
file itself. DVC runs a stage's command with ``DVC_ROOT`` set and after it wrote the
lock entries of the stages before it, so inside ``dvc repro`` this needs no option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from matih_ml.errors import ValidationError

LOCK = "dvc.lock"


def lock_in_pipeline() -> Path | None:
    """The ``dvc.lock`` of the pipeline running this command, if DVC runs it.

    DVC runs a stage's command in the stage's folder (where its ``dvc.yaml`` and lock
    are) with ``DVC_ROOT`` set; outside ``dvc repro`` there is none.
    """
    root = os.environ.get("DVC_ROOT")
    if not root:
        return None
    for folder in (Path.cwd(), Path(root)):
        if (folder / LOCK).is_file():
            return folder / LOCK
    return None


def locked_outputs(lock: Path, *, leave_out: Path | None = None) -> list[dict[str, str]]:
    """The outputs ``lock`` holds with an md5, as dataset inputs (``DatasetIn`` fields).

    Args:
        lock: A ``dvc.lock`` file.
        leave_out: A file not to record (the run id file the registration reads).

    Returns:
        ``{"name", "digest", "uri", "source_type": "dvc"}`` per output, by path; an
        output locked without an md5 (a cloud-versioned one, say) is left out.

    Raises:
        ValidationError: The file cannot be read or is not a DVC lock file.
    """
    try:
        # Every scalar as written: an md5 of digits only must not become a number.
        found: Any = yaml.load(lock.read_text(), Loader=yaml.BaseLoader)
    except OSError as exc:
        raise ValidationError(f"{str(lock)!r}: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{str(lock)!r} is not YAML: {exc}.") from None
    stages = found.get("stages") if isinstance(found, dict) else None
    if not isinstance(stages, dict):
        raise ValidationError(f"{str(lock)!r} is not a dvc.lock file (no stages).")
    base = lock.parent.resolve()
    skip = leave_out.resolve() if leave_out is not None else None
    by_path: dict[str, dict[str, str]] = {}
    for stage in stages.values():
        for out in (stage or {}).get("outs") or []:
            path, md5 = out.get("path"), out.get("md5")
            if not isinstance(path, str) or not isinstance(md5, str):
                continue
            if skip is not None and (base / path).resolve() == skip:
                continue
            # A directory's hash is the md5 of its listing, written "<hex>.dir".
            hexes = md5.removesuffix(".dir")
            by_path[path] = {
                "name": path,
                "digest": f"md5:{hexes}",
                "uri": path,
                "source_type": "dvc",
            }
    return [by_path[p] for p in sorted(by_path)]

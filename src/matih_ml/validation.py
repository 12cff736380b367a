"""Input checks, done before anything is written.

Every public operation validates all of its input first, so that bad input
fails with a :class:`~matih_ml.errors.ValidationError` and nothing half-written
is left behind.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from matih_ml.errors import ValidationError

MODEL_NAME_MAX = 128
EXPERIMENT_NAME_MAX = 256
KEY_MAX = 250
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 5000
MAX_STEP = 2**63 - 1

# \Z, not $: Python's $ also matches before a final newline, so "churn\n" would pass.
# Model names end up in URIs (models:/NAME/1) and artifact paths, so they are kept
# to characters that need no escaping in either.
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# MLflow's own rule for metric, param and tag keys.
_KEY_RE = re.compile(r"^[\w\-. /:]+\Z")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# In tag and param values a tab or a line break is text (MLflow's own mlflow.note.content
# tag holds Markdown); NUL and the other control characters are not.
_VALUE_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PAGE_TOKEN_RE = re.compile(r"^[A-Za-z0-9+/=_-]{1,4096}\Z")
RUN_NAME_MAX = 250

# The same rules as JSON-schema patterns, for the API's published document.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
VERSION_PATTERN = r"^[1-9][0-9]{0,17}$"


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(
            f"{what} must be a string, got {type(value).__name__}.", details={"field": what}
        )
    return value


def model_name(name: Any) -> str:
    """Check a registered model name.

    Args:
        name: The candidate name.

    Returns:
        The name, unchanged.

    Raises:
        ValidationError: If it is empty, too long, or has characters outside
            letters, digits, ``.``, ``_`` and ``-`` (``/`` in particular).
    """
    name = _require_str(name, "name")
    if not name:
        raise ValidationError("Model name must not be empty.", details={"field": "name"})
    if len(name) > MODEL_NAME_MAX:
        raise ValidationError(
            f"Model name is {len(name)} characters; the limit is {MODEL_NAME_MAX}.",
            details={"field": "name", "limit": MODEL_NAME_MAX},
        )
    if not _MODEL_NAME_RE.match(name):
        raise ValidationError(
            f"Model name {name!r} may only contain letters, digits, '.', '_' and '-', "
            "and must start with a letter or digit.",
            details={"field": "name"},
        )
    return name


def experiment_name(name: Any) -> str:
    """Check an experiment name: 1 to 256 printable characters."""
    name = _require_str(name, "experiment_name")
    if not name.strip():
        raise ValidationError(
            "Experiment name must not be empty.", details={"field": "experiment_name"}
        )
    if len(name) > EXPERIMENT_NAME_MAX:
        raise ValidationError(
            f"Experiment name is {len(name)} characters; the limit is {EXPERIMENT_NAME_MAX}.",
            details={"field": "experiment_name", "limit": EXPERIMENT_NAME_MAX},
        )
    if _CONTROL_RE.search(name):
        raise ValidationError(
            "Experiment name must not contain control characters.",
            details={"field": "experiment_name"},
        )
    return name


def run_name(value: Any) -> str | None:
    """Check an optional run name: at most 250 characters, no control characters."""
    if value is None:
        return None
    value = _require_str(value, "run_name")
    if len(value) > RUN_NAME_MAX:
        raise ValidationError(
            f"run_name is over {RUN_NAME_MAX} characters.",
            details={"field": "run_name", "limit": RUN_NAME_MAX},
        )
    if _CONTROL_RE.search(value):
        raise ValidationError(
            "run_name must not contain control characters.", details={"field": "run_name"}
        )
    return value


def _value_text(value: Any, what: str, k: str, limit: int) -> str:
    text = str(value)
    if len(text) > limit:
        raise ValidationError(
            f"{what.capitalize()} {k!r} is {len(text)} characters; the limit is {limit}.",
            details={"field": f"{what}s", "key": k},
        )
    if _VALUE_CONTROL_RE.search(text):
        raise ValidationError(
            f"{what.capitalize()} {k!r} has a control character (only tab and line breaks "
            "are allowed in values).",
            details={"field": f"{what}s", "key": k},
        )
    return text


def key(value: Any, what: str = "key") -> str:
    """Check a metric, param or tag key against MLflow's rules (and ours: no ``..``)."""
    value = _require_str(value, what)
    if not value or len(value) > KEY_MAX:
        raise ValidationError(
            f"{what} must be 1 to {KEY_MAX} characters, got {len(value)}.",
            details={"field": what, "key": value[:KEY_MAX]},
        )
    if not _KEY_RE.match(value) or ".." in value.split("/") or value.startswith("/"):
        raise ValidationError(
            f"{what} {value!r} may only contain letters, digits, '_', '-', '.', ' ', '/' "
            "and ':', and must not be a path out of the run.",
            details={"field": what, "key": value},
        )
    return value


def metric_value(name: str, value: Any) -> float:
    """Check a metric value: a real, finite number (``bool`` is not a metric).

    Non-finite values are refused: JSON cannot carry them, and a consumer that
    averages or thresholds metrics is silently poisoned by one NaN.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(
            f"Metric {name!r} must be a number, got {type(value).__name__}.",
            details={"field": "metrics", "key": name},
        )
    try:
        result = float(value)
    except OverflowError:  # an integer too large for a float
        result = math.inf
    if not math.isfinite(result):
        raise ValidationError(
            f"Metric {name!r} must be finite, got {result}.",
            details={"field": "metrics", "key": name},
        )
    return result


def metrics(values: Any) -> dict[str, float]:
    """Check a mapping of metric names to numbers; return it with float values."""
    if not isinstance(values, Mapping):
        raise ValidationError(
            f"metrics must be a mapping, got {type(values).__name__}.",
            details={"field": "metrics"},
        )
    return {key(k, "metric key"): metric_value(k, v) for k, v in values.items()}


def step(value: Any) -> int:
    """Check a step: a whole number from 0 to 2**63-1."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(
            f"step must be a whole number, got {type(value).__name__}.", details={"field": "step"}
        )
    if not 0 <= int(value) <= MAX_STEP:
        raise ValidationError(
            f"step must be between 0 and {MAX_STEP}, got {value}.", details={"field": "step"}
        )
    return int(value)


def params(values: Any) -> dict[str, str]:
    """Check params; values are converted to strings (as MLflow stores them)."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValidationError(
            f"parameters must be a mapping, got {type(values).__name__}.",
            details={"field": "parameters"},
        )
    out: dict[str, str] = {}
    for k, v in values.items():
        k = key(k, "param key")
        out[k] = _value_text(v, "parameter", k, PARAM_VALUE_MAX)
    return out


def tags(values: Any) -> dict[str, str]:
    """Check user tags. The ``matih.`` namespace is reserved for the service."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValidationError(
            f"tags must be a mapping, got {type(values).__name__}.", details={"field": "tags"}
        )
    out: dict[str, str] = {}
    for k, v in values.items():
        k = key(k, "tag key")
        if k.startswith("matih."):
            raise ValidationError(
                f"Tag {k!r} is in the reserved 'matih.' namespace.",
                details={"field": "tags", "key": k},
            )
        out[k] = _value_text(v, "tag", k, TAG_VALUE_MAX)
    return out


def utc_time(value: datetime, what: str) -> datetime:
    """Return a time in UTC; a time without a zone is taken as UTC.

    Raises:
        ValidationError: If it is out of range once in UTC (``0001-01-01T00:00+01:00``
            is in year 0, which ``datetime`` cannot hold).
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{what} is out of range once converted to UTC: {value.isoformat()}.",
            details={"field": what},
        ) from None


def run_id(value: Any) -> str:
    """Check an MLflow run id (32 lowercase hex digits)."""
    value = _require_str(value, "run_id")
    if not _RUN_ID_RE.match(value):
        raise ValidationError(
            f"run_id {value[:64]!r} is not a run id (32 hex digits).", details={"field": "run_id"}
        )
    return value


def version(value: Any) -> str:
    """Check a model version number (a positive whole number, as int or string)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isdigit() or int(text) < 1 or len(text) > 18:
        raise ValidationError(
            f"version must be a positive whole number, got {value!r}.",
            details={"field": "version"},
        )
    return str(int(text))


ARTIFACT_NAME_MAX_BYTES = 255
ARTIFACT_PATH_MAX_BYTES = 768  # leaves room for the tenant/experiment/run prefix


def artifact_path(value: str | None) -> str | None:
    """Check a relative artifact path: no absolute paths, no ``..``, no backslashes."""
    if value is None or value == "":
        return None
    value = _require_str(value, "artifact_path")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in ("..", ".") for p in parts):
        raise ValidationError(
            f"artifact_path {value!r} must be a relative path inside the run.",
            details={"field": "artifact_path"},
        )
    if _CONTROL_RE.search(value):
        raise ValidationError(
            "artifact_path must not contain control characters.",
            details={"field": "artifact_path"},
        )
    # Filesystems cap a name at 255 bytes, S3 a key at 1024: refused here, not
    # half-way through a write.
    if len(value.encode()) > ARTIFACT_PATH_MAX_BYTES or any(
        len(p.encode()) > ARTIFACT_NAME_MAX_BYTES for p in parts
    ):
        raise ValidationError(
            f"artifact_path is too long (at most {ARTIFACT_NAME_MAX_BYTES} bytes per name "
            f"and {ARTIFACT_PATH_MAX_BYTES} in all).",
            details={"field": "artifact_path"},
        )
    return value.strip("/")


def page_token(value: str | None) -> str | None:
    """Check an opaque page token's alphabet (tokens are base64 text)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _PAGE_TOKEN_RE.match(value):
        raise ValidationError(
            "page_token is not a token this service issued.", details={"field": "page_token"}
        )
    return value


def metric_columns(
    keys: Any, values: Any, steps: Any, timestamps: Any, *, limit: int
) -> list[tuple[str, float, int, int]]:
    """Check columnar metric points; return them as (key, value, timestamp, step) rows.

    Raises:
        ValidationError: Naming the first bad column or point.
    """
    if not isinstance(keys, list | tuple) or not isinstance(values, list | tuple):
        raise ValidationError("keys and values must be arrays.", details={"field": "values"})
    n = len(values)
    if n > limit:
        raise ValidationError(
            f"At most {limit} points per request; got {n}.",
            details={"field": "values", "limit": limit},
        )
    steps = [0] * n if steps is None else steps
    now = int(time.time() * 1000)
    timestamps = [now] * n if timestamps is None else timestamps
    for name, column in (("keys", keys), ("steps", steps), ("timestamps", timestamps)):
        if not isinstance(column, list | tuple) or len(column) != n:
            raise ValidationError(
                f"{name} must be an array as long as values ({n}).", details={"field": name}
            )
    for k in set(keys) if all(isinstance(k, str) for k in keys) else keys:
        key(k, "metric key")
    rows = []
    for i in range(n):
        v, s, t = values[i], steps[i], timestamps[i]
        if type(v) is not float or v - v != 0.0:
            v = metric_value(keys[i], v)
        if type(s) is not int or not 0 <= s <= MAX_STEP:
            s = step(s)
        if type(t) is not int or not 0 <= t <= MAX_STEP:
            raise ValidationError(
                f"timestamps[{i}] must be milliseconds since the epoch, a whole number.",
                details={"field": "timestamps", "index": i},
            )
        rows.append((keys[i], v, t, s))
    return rows


# A dataset's digest: an algorithm, then the hex of its length ("md5:3f2a..."). A bare
# hex string of one of these lengths is read as that algorithm's (DVC writes bare md5s).
DIGEST_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"^[0-9a-f]+\Z")
_URI_MAX = 1000


def digest(value: Any, what: str = "digest") -> str:
    """Check a dataset's digest and answer it as ``algorithm:hex``, lowercase.

    Raises:
        ValidationError: Not ``md5|sha1|sha256|sha512:<hex of its length>`` nor bare hex
            of one of those lengths; names ``what``.
    """
    text = _require_str(value, what).strip().lower()
    algo, _, hexes = text.rpartition(":")
    if not algo:
        by_length = {n: a for a, n in DIGEST_HEX_LENGTHS.items()}
        algo = by_length.get(len(hexes), "")
    if DIGEST_HEX_LENGTHS.get(algo) != len(hexes) or not _HEX_RE.match(hexes):
        raise ValidationError(
            f"{what} {str(value)[:80]!r} is not a digest: give md5:, sha1:, sha256: or "
            "sha512: and the hex digits of its length (32, 40, 64 or 128).",
            details={"field": what},
        )
    return f"{algo}:{hexes}"


def dataset_uri(value: Any, what: str = "uri") -> str:
    """Check a dataset's URI or path: 1 to 1000 characters, no control characters."""
    text = _require_str(value, what).strip()
    if not text or len(text) > _URI_MAX or _CONTROL_RE.search(text):
        raise ValidationError(
            f"{what} must be 1 to {_URI_MAX} characters without control characters.",
            details={"field": what},
        )
    return text


def dataset_ref(value: Any, what: str = "dataset") -> tuple[str, str]:
    """Read a lineage query's ``dataset``: ``("digest", "algo:hex")`` or ``("uri", uri)``.

    A value with ``://``, or with no ``:`` and not bare hex of a digest's length, is a URI
    or a path; anything else must be a well-formed digest.

    Raises:
        ValidationError: A malformed digest, or an empty or over-long URI.
    """
    text = _require_str(value, what).strip()
    bare_hex = len(text) in DIGEST_HEX_LENGTHS.values() and bool(_HEX_RE.match(text.lower()))
    if "://" in text or (":" not in text and not bare_hex):
        return "uri", dataset_uri(text, what)
    return "digest", digest(text, what)

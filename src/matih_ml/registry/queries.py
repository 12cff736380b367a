"""MLflow search filters, built only from constants and checked identifiers.

The specification's ``f"name LIKE '{tenant_id}/%'"`` can be injected. Here a
value enters a filter only if it matches :data:`_SAFE` (no quotes, no
backslashes); anything else is looked up without a filter string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from matih_ml.registry.metadata import TAG_FRAMEWORK, Framework

_SAFE = re.compile(r"^[A-Za-z0-9._:-]+$")

FRAMEWORK_FILTER = {fw: f"tags.`{TAG_FRAMEWORK}` = '{fw.value}'" for fw in Framework}


def is_safe(value: str) -> bool:
    """Whether ``value`` can stand quoted in a filter with no way to break out."""
    return bool(_SAFE.match(value))


def quoted(value: str) -> str:
    """Quote a checked identifier for a filter string.

    Raises:
        ValueError: If ``value`` is not safe (a programming error: callers check first).
    """
    if not is_safe(value):
        raise ValueError(f"unsafe filter value: {value!r}")
    return f"'{value}'"


def in_list(field: str, values: Iterable[str]) -> str:
    """Return ``field IN ('a', 'b')`` for checked identifiers."""
    return f"{field} IN ({', '.join(quoted(v) for v in values)})"

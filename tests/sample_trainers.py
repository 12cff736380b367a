"""Entry-point trainers for the tests, as an operator would install beside the service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.ensemble import RandomForestClassifier


def forest(x: Any, y: Any, *, params: dict[str, Any], log: Callable[[str], None]) -> Any:
    """A forest with the job's ``trees``."""
    trees = int(params.get("trees", 20))
    log(f"fitting {trees} trees")
    return RandomForestClassifier(n_estimators=trees, random_state=0).fit(x, y)


def not_a_model(x: Any, y: Any, *, params: dict[str, Any]) -> Any:
    """Returns something that is not a fitted estimator."""
    return "nope"

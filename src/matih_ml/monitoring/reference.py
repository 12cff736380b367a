"""The reference profile written with each version at registration.

It is built from the input example stored with the model (the training sample, when
the caller passes one as the example) and the model's predictions on it, and saved as
``matih_reference_profile.json`` among the version's files, so that it is versioned,
tenant-scoped and deleted with the version. Serving reads it back to judge drift.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matih_ml.monitoring import stats
from matih_ml.runtime.loader import ModelHandle, example_predictions

log = logging.getLogger(__name__)


def _columns(example: Any) -> dict[str, list[Any]] | None:
    if isinstance(example, pd.DataFrame):
        return {str(c): example[c].tolist() for c in example.columns}
    if isinstance(example, dict):
        return {str(k): list(np.asarray(v).ravel()) for k, v in example.items()}
    array = np.asarray(example)
    if array.ndim == 2:
        return {str(i): array[:, i].tolist() for i in range(array.shape[1])}
    return None


def write_reference_profile(local: Path, model: ModelHandle) -> bool:
    """Profile the model in ``local`` on its input example; False when it has none.

    Args:
        local: The model's files; the profile is written among them.
        model: The same model, loaded (in process, or in the sandbox).

    Never raises: a version whose profile cannot be built is served without drift
    checks, and the reason is logged.
    """
    try:
        scored = example_predictions(model, local)
        if scored is None:
            return False
        example, predictions = scored
        features = _columns(example)
        if not features:
            return False
        profile = stats.build_profile(features, predictions)
        (local / stats.PROFILE_FILE).write_text(json.dumps(profile))
        return True
    except Exception:
        log.warning("no reference profile for the model in %s", local, exc_info=True)
        return False

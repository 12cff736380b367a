"""A training job's table: read it under the tenant's data root, and split it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from matih_ml.errors import ValidationError
from matih_ml.training.spec import JobSpec


def read_table(spec: JobSpec, data_root: Path) -> tuple[pd.DataFrame, pd.Series]:
    data = spec.data
    if data.kind != "table":
        raise ValidationError("data.kind: not supported yet", details={"field": "data.kind"})
    if data.path.startswith("s3://"):
        raise ValidationError(
            "data.path: s3:// tables are not supported yet; use a file under the data root",
            details={"field": "data.path"},
        )
    root = data_root.resolve()
    path = (root / data.path).resolve()
    # The spec refuses '..' and absolute paths; a symlink could still lead out.
    if not path.is_relative_to(root):
        raise ValidationError("data.path: leaves the data root", details={"field": "data.path"})
    if not path.is_file():
        raise ValidationError(f"data.path: {data.path!r} not found", details={"field": "data.path"})
    frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    features = data.features or [c for c in frame.columns if c != data.target]
    missing = [c for c in [data.target, *features] if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"data: column {missing[0]!r} is not in the table", details={"field": "data.features"}
        )
    x = frame[features]
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
    if bad:
        raise ValidationError(
            f"data.features: column {bad[0]!r} is not numeric", details={"field": "data.features"}
        )
    if x.isna().any().any() or frame[data.target].isna().any():
        raise ValidationError("data: the table has missing values", details={"field": "data.path"})
    if len(frame) < 10:
        raise ValidationError("data: the table has fewer than 10 rows", details={"field": "data"})
    return x.astype(np.float64), frame[data.target]


def split(
    x: pd.DataFrame, y: pd.Series | np.ndarray, fraction: float, seed: int, classifier: bool
) -> list[Any]:
    try:
        return train_test_split(
            x, y, test_size=fraction, random_state=seed, stratify=y if classifier else None
        )
    except ValueError as exc:  # e.g. a class with one row cannot be stratified
        raise ValidationError(
            f"data: cannot split the table: {exc}", details={"field": "data"}
        ) from None

"""A Feast training job's table: the point-in-time join of an entity file and Feast features.

The entity file (csv or parquet, under the tenant's data root) holds the entity keys, an
``event_timestamp`` and the target. Feast joins to each entity row, per feature view, the
feature row of that entity with the greatest timestamp at or before the row's
``event_timestamp`` and no older than the view's TTL. Rows left without a feature value
are dropped (and counted): a model is never trained on a made-up value.

Feast is imported only when features are read (importing it takes seconds), and through
:func:`import_feast`, which undoes what ``import feast`` does to the process's Prometheus
metrics.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from matih_ml.errors import ValidationError
from matih_ml.job_spec import JobSpec

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.base_feature_view import BaseFeatureView
    from google.protobuf.message import Message

__all__ = [
    "EVENT_TIMESTAMP",
    "MIN_ROWS",
    "FeatureLineage",
    "column_name",
    "definition_version",
    "import_feast",
    "read_features",
]

EVENT_TIMESTAMP = "event_timestamp"
MIN_ROWS = 10
_FEATURE_STORE_YAML = "feature_store.yaml"
# Fields of a view's definition that describe it without changing the data it serves;
# the timestamps and a source's ``meta`` (its first and last event) change on every apply.
_NOT_DEFINITION = frozenset(
    {"description", "tags", "owner", "meta", "created_timestamp", "last_updated_timestamp"}
)
# Top-level spec fields outside the content: the project is recorded on its own, and
# ``version`` is the pin a definition was applied with ("latest", "v2"), not the definition.
_NOT_DEFINITION_TOP = _NOT_DEFINITION | {"project", "version"}
_TAG_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- /]")
_TAG_VALUE_MAX = 5000
_VERSION_LEN = 12
_GROUP = "__matih_entity_group__"
# feast.metrics (imported by ``import feast``) sets these for its feature server's
# Gunicorn workers: prometheus_client then keeps every metric of the process in shared
# files, where two registries (two apps in one process) add up each other's counts.
_FEAST_PROMETHEUS_ENV = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")
_IMPORT_LOCK = threading.Lock()


def import_feast() -> ModuleType:
    """Import and return ``feast``, leaving the process's Prometheus metrics as they were.

    ``prometheus_client`` is imported first, so that it picks its in-process value store
    before Feast points it at a temporary multiprocess folder, and the environment
    variables Feast sets for that are put back (children would inherit them).
    """
    with _IMPORT_LOCK:
        if "feast" in sys.modules:
            return sys.modules["feast"]
        import prometheus_client.values  # noqa: F401

        saved = {k: os.environ.get(k) for k in _FEAST_PROMETHEUS_ENV}
        try:
            import feast
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return feast


def column_name(ref: str) -> str:
    """Return the column a ``view:feature`` reference becomes: ``view__feature``.

    Feast's own "full feature names": two views may both have a feature ``amount``.
    """
    view, feature = ref.split(":", 1)
    return f"{view}__{feature}"


@dataclass(frozen=True)
class FeatureLineage:
    """Where a job's features came from, to record on its MLflow run.

    Attributes:
        repo: The Feast project name.
        views: One entry per feature view used, in the order first requested:
            ``name``; ``version``, the first 12 hex digits of the sha256 of the view's
            definition (see :func:`definition_version`); ``features``, the features used
            from it, comma-separated; and ``feast_version`` (``v0``, ``v1``...), the
            version number Feast's registry gave the definition, when it keeps one.
        entity_rows: The rows of the entity file.
        dropped_rows: The entity rows dropped for want of a feature value.
    """

    repo: str
    views: list[dict[str, str]]
    entity_rows: int = 0
    dropped_rows: int = 0

    def as_tags(self) -> dict[str, str]:
        """Return flat MLflow run tags (keys of ``[A-Za-z0-9_.\\- /]``, values <= 5000).

        ``feast.project``; ``feast.view.<name>`` (the definition's hash) and
        ``feast.view.<name>.feast_version``; ``feast.features``, the references in
        request order, comma-separated and continued in ``feast.features.1``,
        ``feast.features.2``... past 5000 characters; ``feast.entity_rows`` and
        ``feast.dropped_rows``.
        """
        tags = {"feast.project": self.repo}
        refs: list[str] = []
        for view in self.views:
            name = _TAG_KEY_UNSAFE.sub("_", view["name"])
            tags[f"feast.view.{name}"] = view["version"]
            if view.get("feast_version"):
                tags[f"feast.view.{name}.feast_version"] = view["feast_version"]
            refs += [f"{view['name']}:{f}" for f in view["features"].split(",") if f]
        for i, chunk in enumerate(_chunks(refs, _TAG_VALUE_MAX)):
            tags["feast.features" if i == 0 else f"feast.features.{i}"] = chunk
        tags["feast.entity_rows"] = str(self.entity_rows)
        tags["feast.dropped_rows"] = str(self.dropped_rows)
        return {k: v[:_TAG_VALUE_MAX] for k, v in tags.items()}


def _chunks(items: Iterable[str], limit: int) -> Iterable[str]:
    """Join ``items`` with commas into strings of at most ``limit`` characters."""
    chunk = ""
    for item in items:
        if chunk and len(chunk) + 1 + len(item) > limit:
            yield chunk
            chunk = ""
        chunk = f"{chunk},{item}" if chunk else item
    if chunk:
        yield chunk


def read_features(
    spec: JobSpec, repo_path: Path, data_root: Path | str
) -> tuple[pd.DataFrame, pd.Series, FeatureLineage]:
    """Join a Feast job's features to its entity file, point in time.

    Args:
        spec: A job whose ``data`` is :class:`~matih_ml.job_spec.FeastData`.
        repo_path: The tenant's Feast repository (the folder of ``feature_store.yaml``).
        data_root: The tenant's data folder; ``spec.data.entity_path`` is relative to it
            (an ``s3://`` data root is not supported yet).

    Returns:
        ``x``, the features as float64 columns named ``view__feature`` (see
        :func:`column_name`) in the order requested; ``y``, the target; and the lineage.
        ``x`` and ``y`` keep the entity file's row order, indexed by the rows' positions
        in the file (the dropped rows' positions are missing).

    Raises:
        ValidationError: The entity file is missing, outside the data root, on s3:// or
            lacks a column; the repository has no ``feature_store.yaml``; a feature view
            or feature does not exist (``details["field"]`` is ``data.features`` and
            ``details["feature"]`` the reference); a feature is not numeric; or fewer than
            10 rows have every feature.
    """
    data = spec.data
    if data.kind != "feast":
        raise ValidationError("data.kind: not a Feast job", details={"field": "data.kind"})
    refs = list(data.features)
    if len(set(refs)) != len(refs):
        repeated = next(r for r in refs if refs.count(r) > 1)
        raise ValidationError(
            f"data.features: {repeated!r} is repeated",
            details={"field": "data.features", "feature": repeated},
        )
    frame = _read_entities(data.entity_path, data_root)
    store = _open_store(repo_path)
    views = _resolve(store, refs)

    join_keys = list(dict.fromkeys(k for view in views.values() for k in _join_keys(view)))
    entities = _check_entities(frame, join_keys, data.target)
    if len(frame) < MIN_ROWS:
        raise ValidationError(
            f"data: the entity file has fewer than {MIN_ROWS} rows",
            details={"field": "data.entity_path", "rows": len(frame), "dropped_rows": 0},
        )
    columns = [column_name(r) for r in refs]
    clash = [c for c in columns if c in join_keys or c == EVENT_TIMESTAMP]
    if clash:
        raise ValidationError(
            f"data.features: column {clash[0]!r} would clash with an entity column",
            details={"field": "data.features"},
        )

    # Feast keeps one output row per distinct (keys, timestamp) and reorders its rows: it is
    # sent each distinct pair once, tagged, and the answer is mapped back to every row.
    group = entities.groupby([*join_keys, EVENT_TIMESTAMP], sort=False).ngroup()
    distinct = entities.assign(**{_GROUP: group.to_numpy()}).drop_duplicates(_GROUP)
    joined = store.get_historical_features(
        entity_df=distinct.reset_index(drop=True), features=refs, full_feature_names=True
    ).to_df()
    answer = joined.drop_duplicates(_GROUP).set_index(_GROUP)[columns]
    per_row = answer.reindex(group.to_numpy())
    per_row.index = frame.index
    complete = per_row.notna().all(axis=1).to_numpy()

    x = per_row[complete]
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(x[c])]
    if bad:
        raise ValidationError(
            f"data.features: feature {refs[columns.index(bad[0])]!r} is not numeric",
            details={"field": "data.features", "feature": refs[columns.index(bad[0])]},
        )
    kept = int(complete.sum())
    dropped = len(frame) - kept
    if kept < MIN_ROWS:
        raise ValidationError(
            f"data: only {kept} of {len(frame)} entity rows have every feature (at or "
            f"before their event_timestamp, within the view's TTL); {MIN_ROWS} are needed",
            details={"field": "data.entity_path", "rows": kept, "dropped_rows": dropped},
        )
    lineage = FeatureLineage(
        repo=store.project,
        views=[_describe(store, view, refs) for view in views.values()],
        entity_rows=len(frame),
        dropped_rows=dropped,
    )
    return x.astype(np.float64), frame.loc[complete, data.target], lineage


def _read_entities(entity_path: str, data_root: Path | str) -> pd.DataFrame:
    """Read the entity file under ``data_root`` (the rules of ``read_table``)."""
    field = {"field": "data.entity_path"}
    # Path("s3://b/p") is "s3:/b/p".
    if entity_path.startswith("s3://") or str(data_root).startswith("s3:/"):
        raise ValidationError(
            "data.entity_path: s3:// entity files are not supported yet; "
            "use a file under a local data root",
            details=field,
        )
    root = Path(data_root).resolve()
    path = (root / entity_path).resolve()
    # The spec refuses '..' and absolute paths; a symlink could still lead out.
    if not path.is_relative_to(root):
        raise ValidationError("data.entity_path: leaves the data root", details=field)
    if not path.is_file():
        raise ValidationError(f"data.entity_path: {entity_path!r} not found", details=field)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path).reset_index(drop=True)
    return pd.read_csv(path)


def _check_entities(frame: pd.DataFrame, join_keys: list[str], target: str) -> pd.DataFrame:
    """Return the entity keys and UTC timestamps Feast needs, after checking the file."""
    field = {"field": "data.entity_path"}
    for column in [*join_keys, EVENT_TIMESTAMP]:
        if column not in frame.columns:
            raise ValidationError(
                f"data.entity_path: the entity file has no column {column!r}", details=field
            )
    if target not in frame.columns:
        raise ValidationError(
            f"data.target: column {target!r} is not in the entity file",
            details={"field": "data.target"},
        )
    entities = frame[[*join_keys, EVENT_TIMESTAMP]].copy()
    if entities.isna().any().any() or frame[target].isna().any():
        raise ValidationError("data: the entity file has missing values", details=field)
    try:
        # Naive timestamps are taken as UTC, as Feast takes them.
        entities[EVENT_TIMESTAMP] = pd.to_datetime(entities[EVENT_TIMESTAMP], utc=True)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"data.entity_path: event_timestamp is not a timestamp: {exc}", details=field
        ) from None
    return entities


def _open_store(repo_path: Path) -> FeatureStore:
    """Open the Feast repository, with Feast's own MLflow and OpenLineage reporting off."""
    yaml_path = repo_path / _FEATURE_STORE_YAML
    if not yaml_path.is_file():
        # The path is the operator's: the tenant is not told where it is.
        raise ValidationError(
            "data: the tenant has no Feast feature repository (no feature_store.yaml)",
            details={"field": "data"},
        )
    import_feast()
    import yaml
    from feast import FeatureStore
    from feast.errors import FeastError
    from feast.repo_config import FeastConfigError, load_repo_config

    try:
        config = load_repo_config(repo_path, yaml_path)
    except (FeastConfigError, FeastError, yaml.YAMLError, TypeError, ValueError) as exc:
        # FeastConfigError's str() ends with the file's path; its first line is the reason.
        reason = str(exc).split("\n", 1)[0]
        raise ValidationError(
            f"data: the Feast feature repository's feature_store.yaml is invalid: {reason}",
            details={"field": "data"},
        ) from None
    # Feast 0.67 can log to MLflow (its tracking URI or MLFLOW_TRACKING_URI: another
    # tenant's store) and emit OpenLineage events: the service records lineage itself.
    config.mlflow_config = None
    config.openlineage_config = None
    return FeatureStore(repo_path=str(repo_path), config=config)


def _resolve(store: FeatureStore, refs: list[str]) -> dict[str, BaseFeatureView]:
    """Return the views ``refs`` name, in order, after checking every view and feature."""
    available = {view.name: view for view in store.list_all_feature_views()}
    views: dict[str, BaseFeatureView] = {}
    for ref in refs:
        name, feature = ref.split(":", 1)
        view = available.get(name)
        if view is None:
            raise ValidationError(
                f"data.features: {ref!r}: no feature view {name!r} in the Feast repository",
                details={"field": "data.features", "feature": ref},
            )
        if feature not in {f.name for f in view.features}:
            raise ValidationError(
                f"data.features: {ref!r}: feature view {name!r} has no feature {feature!r}",
                details={"field": "data.features", "feature": ref},
            )
        views.setdefault(name, view)
    return views


def _join_keys(view: BaseFeatureView) -> list[str]:
    return [column.name for column in getattr(view, "entity_columns", None) or []]


def _describe(store: FeatureStore, view: BaseFeatureView, refs: list[str]) -> dict[str, str]:
    used = [r.split(":", 1)[1] for r in refs if r.split(":", 1)[0] == view.name]
    described = {
        "name": view.name,
        "version": definition_version(view),
        "features": ",".join(used),
    }
    feast_version = _feast_version(store, view)
    if feast_version:
        described["feast_version"] = feast_version
    return described


def definition_version(view: BaseFeatureView) -> str:
    """Return a stable hash of a feature view's definition: 12 hex digits of a sha256.

    It hashes the deterministic serialisation of the view's spec proto without what does
    not change the data it serves: description, tags, owner, timestamps, the source's
    ``meta``, the project and the version pin. The schema, entities, TTL, source (its
    path, timestamp fields, field mapping) and transformation all count: a TTL change
    moves it, where Feast's own version number moves only with the schema.
    """
    spec: Message = view.to_proto().spec
    _strip(spec, _NOT_DEFINITION_TOP)
    digest = hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()
    return digest[:_VERSION_LEN]


def _strip(message: Message, names: frozenset[str]) -> None:
    """Clear the fields named in ``names`` in ``message``, and the ``_NOT_DEFINITION``
    fields of every message nested in it."""
    for field, value in message.ListFields():
        if field.name in names:
            message.ClearField(field.name)
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for item in value.values():
                    _strip(item, _NOT_DEFINITION)
        elif _repeated(field):
            for item in value:
                _strip(item, _NOT_DEFINITION)
        else:
            _strip(value, _NOT_DEFINITION)


def _repeated(field: Any) -> bool:
    # protobuf 7 dropped FieldDescriptor.label for is_repeated (added in 5.x).
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _feast_version(store: FeatureStore, view: BaseFeatureView) -> str | None:
    """Return Feast's own version of the active definition (``v0``, ``v1``...), if any.

    Feast 0.67's registry numbers a view's definitions as their schema changes; a view
    read back reports None for version 0 (its proto's default), so the history confirms it.
    """
    number: Any = getattr(view, "current_version_number", None)
    if number is not None:
        return f"v{number}"
    try:
        history = store.list_feature_view_versions(view.name)
    except (NotImplementedError, AttributeError):  # a registry without version history
        return None
    return "v0" if any(r.get("version_number") == 0 for r in history) else None

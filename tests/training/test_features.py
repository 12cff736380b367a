"""Feast features for training jobs: a real local Feast repo (file offline store), no mocks.

The point-in-time join is checked row by row against a plain-Python computation of what
it must be: per entity row and feature view, the entity's feature row with the greatest
timestamp at or before the row's event_timestamp and within the view's TTL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matih_ml.errors import ValidationError
from matih_ml.job_spec import JobSpec, validate_job
from matih_ml.training.features import (
    FeatureLineage,
    _open_store,
    column_name,
    import_feast,
    read_features,
)

# Through import_feast: a bare `import feast` would put this test worker's Prometheus
# metrics (and its children's) in multiprocess mode.
feast = import_feast()
from feast import Entity, FeatureStore, FeatureView, Field, FileSource  # noqa: E402
from feast.types import Float64, Int64  # noqa: E402
from feast.value_type import ValueType  # noqa: E402

BASE = datetime(2024, 1, 1, tzinfo=UTC)
STATS_TTL = timedelta(days=7)
N_ENTITIES = 20
UNKNOWN_ENTITY = 99  # in the entity file, never in the feature source
FEATURES = ["customer_stats:visits", "customer_profile:age", "customer_stats:spend"]
TAG_KEY = re.compile(r"^[A-Za-z0-9_.\- /]+$")


def _stats_rows() -> list[dict]:
    """Four rows per entity at distinct, irregular times (so the join has to choose)."""
    rng = np.random.default_rng(7)
    rows = []
    for e in range(N_ENTITIES):
        days = np.sort(rng.choice(np.arange(0, 60), size=4, replace=False))
        for k, d in enumerate(days):
            ts = BASE + timedelta(days=int(d), hours=int(rng.integers(0, 24)))
            rows.append(
                {
                    "customer_id": e,
                    "event_timestamp": ts,
                    "spend": round(float(rng.normal(100, 30)), 3),
                    "visits": int(e * 10 + k),
                }
            )
    return rows


def _profile_rows() -> list[dict]:
    """Two rows per entity; the view has no TTL, so any earlier row will do."""
    return [
        {
            "customer_id": e,
            "event_timestamp": BASE + timedelta(days=5 + e + 30 * k),
            "age": 20 + e + k,
        }
        for e in range(N_ENTITIES)
        for k in range(2)
    ]


STATS = _stats_rows()
PROFILE = _profile_rows()


def _objects(
    repo: Path, *, ttl: timedelta = STATS_TTL, extra: bool = False, description: str = ""
) -> list:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    schema = [Field(name="spend", dtype=Float64), Field(name="visits", dtype=Int64)]
    if extra:
        schema.append(Field(name="score", dtype=Float64))
    stats = FeatureView(
        name="customer_stats",
        entities=[customer],
        ttl=ttl,
        schema=schema,
        description=description,
        source=FileSource(
            name="stats_source",
            path=str(repo / "stats.parquet"),
            timestamp_field="event_timestamp",
        ),
    )
    profile = FeatureView(
        name="customer_profile",
        entities=[customer],
        ttl=timedelta(0),  # Feast's "no TTL"
        schema=[Field(name="age", dtype=Int64)],
        source=FileSource(
            name="profile_source",
            path=str(repo / "profile.parquet"),
            timestamp_field="event_timestamp",
        ),
    )
    return [customer, stats, profile]


def _make_repo(repo: Path) -> Path:
    (repo / "data").mkdir(parents=True)
    yaml = (
        "project: shop\n"
        "provider: local\n"
        "registry: data/registry.db\n"
        "offline_store:\n  type: file\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\n"
        "entity_key_serialization_version: 3\n"
    )
    (repo / "feature_store.yaml").write_text(yaml)
    stats = pd.DataFrame(STATS)
    stats["score"] = stats["spend"] / 10
    stats.to_parquet(repo / "stats.parquet")
    pd.DataFrame(PROFILE).to_parquet(repo / "profile.parquet")
    FeatureStore(repo_path=str(repo)).apply(_objects(repo))
    return repo


def _entity_rows() -> pd.DataFrame:
    """Events before, between, on, at the TTL's edge of and long after the feature rows."""
    rng = np.random.default_rng(11)
    events = []
    for e in range(N_ENTITIES):
        times = [r["event_timestamp"] for r in STATS if r["customer_id"] == e]
        events += [
            (e, times[0] - timedelta(hours=1)),  # before any stats row
            (e, times[1]),  # exactly on a row
            (e, times[1] + timedelta(hours=5)),  # between rows
            (e, times[2] + STATS_TTL),  # on the TTL's edge: still in
            (e, times[3] + STATS_TTL + timedelta(seconds=1)),  # just past the TTL
            (
                e,
                BASE + timedelta(days=int(rng.integers(0, 70)), minutes=int(rng.integers(0, 1440))),
            ),
        ]
    events.append(events[8])  # a repeated (entity, timestamp) pair, with another label
    events.append((UNKNOWN_ENTITY, BASE + timedelta(days=30)))
    frame = pd.DataFrame(events, columns=["customer_id", "event_timestamp"])
    frame["label"] = np.arange(len(frame)) % 2
    frame.loc[len(frame) - 2, "label"] = 1 - frame.loc[8, "label"]  # the repeat's
    frame["unused"] = "x"
    return frame.sample(frac=1.0, random_state=5).reset_index(drop=True)  # unsorted


def _as_of(rows: list[dict], entity: int, at: datetime, ttl: timedelta | None) -> dict | None:
    """The independent point-in-time lookup, in plain Python."""
    best = None
    for row in rows:
        if row["customer_id"] != entity or row["event_timestamp"] > at:
            continue
        if ttl is not None and row["event_timestamp"] < at - ttl:
            continue
        if best is None or row["event_timestamp"] > best["event_timestamp"]:
            best = row
    return best


def _spec(entity_path: str, features: list[str] = FEATURES, target: str = "label") -> JobSpec:
    return validate_job(
        {
            "name": "churn",
            "model_name": "churn",
            "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
            "data": {
                "kind": "feast",
                "features": features,
                "entity_path": entity_path,
                "target": target,
            },
            "evaluation": {"primary_metric": "accuracy"},
        }
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_repo(tmp_path_factory.mktemp("feast") / "repo")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tenant-data")
    frame = _entity_rows()
    frame.to_parquet(root / "entities.parquet")
    csv = frame.assign(event_timestamp=frame["event_timestamp"].map(lambda t: t.isoformat()))
    csv.to_csv(root / "entities.csv", index=False)
    return root


@pytest.mark.parametrize("entity_file", ["entities.csv", "entities.parquet"])
def test_point_in_time_join_row_by_row(repo: Path, data_root: Path, entity_file: str) -> None:
    x, y, lineage = read_features(_spec(entity_file), repo, data_root)

    entities = _entity_rows()
    expected_rows, expected_index, reasons = [], [], set()
    for i, row in entities.iterrows():
        e, at = int(row["customer_id"]), row["event_timestamp"].to_pydatetime()
        stats = _as_of(STATS, e, at, STATS_TTL)
        profile = _as_of(PROFILE, e, at, None)
        if stats is None or profile is None:
            if e == UNKNOWN_ENTITY:
                reasons.add("unknown entity")
            elif _as_of(STATS, e, at, None) is not None:
                reasons.add("past TTL")
            else:
                reasons.add("before any row")
            continue
        expected_rows.append([float(stats["visits"]), float(profile["age"]), stats["spend"]])
        expected_index.append(i)
    # The data holds every case the join must drop.
    assert reasons == {"unknown entity", "past TTL", "before any row"}

    assert list(x.columns) == [column_name(f) for f in FEATURES]
    assert list(x.columns) == [
        "customer_stats__visits",
        "customer_profile__age",
        "customer_stats__spend",
    ]
    assert all(dtype == np.float64 for dtype in x.dtypes)
    assert list(x.index) == expected_index  # the entity file's order, not Feast's
    assert x.to_numpy().tolist() == expected_rows
    assert list(y.index) == expected_index
    assert y.tolist() == entities.loc[expected_index, "label"].tolist()
    assert lineage.entity_rows == len(entities)
    assert lineage.dropped_rows == len(entities) - len(expected_index)
    assert 10 <= len(x) < len(entities)
    # The repeated (entity, timestamp) pair: both rows kept, each with its own label.
    twins = entities.index[entities.duplicated(["customer_id", "event_timestamp"], keep=False)]
    assert len(twins) == 2 and set(twins) <= set(x.index)
    assert x.loc[twins].nunique().max() == 1 and y.loc[twins].nunique() == 2


def test_lineage_and_tags(repo: Path, data_root: Path) -> None:
    spec = _spec("entities.parquet")
    _, _, first = read_features(spec, repo, data_root)
    _, _, second = read_features(spec, repo, data_root)
    assert first == second  # stable across calls (and FeatureStore instances)

    assert first.repo == "shop"
    assert [v["name"] for v in first.views] == ["customer_stats", "customer_profile"]
    stats, profile = first.views
    assert stats["features"] == "visits,spend" and profile["features"] == "age"
    assert re.fullmatch(r"[0-9a-f]{12}", stats["version"])
    assert stats["version"] != profile["version"]
    assert stats["feast_version"] == profile["feast_version"] == "v0"

    tags = first.as_tags()
    assert tags == {
        "feast.project": "shop",
        "feast.view.customer_stats": stats["version"],
        "feast.view.customer_stats.feast_version": "v0",
        "feast.view.customer_profile": profile["version"],
        "feast.view.customer_profile.feast_version": "v0",
        "feast.features": "customer_stats:visits,customer_stats:spend,customer_profile:age",
        "feast.entity_rows": str(first.entity_rows),
        "feast.dropped_rows": str(first.dropped_rows),
    }
    assert all(TAG_KEY.match(k) and len(v) <= 5000 for k, v in tags.items())


def test_long_feature_lists_continue_in_numbered_tags() -> None:
    features = [f"feature_number_{i:04d}_with_a_long_name" for i in range(500)]
    lineage = FeatureLineage(
        repo="shop", views=[{"name": "wide", "version": "0" * 12, "features": ",".join(features)}]
    )
    tags = lineage.as_tags()
    chunks = [tags["feast.features"]] + [
        tags[f"feast.features.{i}"] for i in range(1, 10) if f"feast.features.{i}" in tags
    ]
    assert len(chunks) > 1 and all(len(c) <= 5000 for c in chunks)
    assert ",".join(chunks).split(",") == [f"wide:{f}" for f in features]
    assert all(TAG_KEY.match(k) for k in tags)


def test_version_follows_the_view_definition(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo")
    root = tmp_path / "data"
    root.mkdir()
    _entity_rows().to_parquet(root / "entities.parquet")
    spec = _spec("entities.parquet", ["customer_stats:spend"])

    def version() -> tuple[str, str]:
        view = read_features(spec, repo, root)[2].views[0]
        return view["version"], view["feast_version"]

    original = version()
    store = FeatureStore(repo_path=str(repo))
    store.apply(_objects(repo, description="spend per visit"))  # not the definition
    assert version() == original
    store.apply(_objects(repo, ttl=timedelta(days=8)))  # the TTL changes the training data
    longer_ttl = version()
    assert longer_ttl[0] != original[0]
    assert longer_ttl[1] == "v0"  # ...but not Feast's own version (the schema's)
    store.apply(_objects(repo, ttl=timedelta(days=8), extra=True))  # a new feature
    wider = version()
    assert wider[0] not in (original[0], longer_ttl[0]) and wider[1] == "v1"
    store.apply(_objects(repo))  # back to the first definition: the first hash again
    assert version()[0] == original[0]


@pytest.mark.parametrize(
    ("features", "ref", "says"),
    [
        (["customer_stats:spend", "nope:spend"], "nope:spend", "no feature view 'nope'"),
        (["customer_stats:nope"], "customer_stats:nope", "has no feature 'nope'"),
        (["customer_stats:spend", "customer_stats:spend"], "customer_stats:spend", "repeated"),
    ],
)
def test_unknown_features_are_refused(
    repo: Path, data_root: Path, features: list[str], ref: str, says: str
) -> None:
    with pytest.raises(ValidationError) as err:
        read_features(_spec("entities.parquet", features), repo, data_root)
    assert err.value.details["field"] == "data.features"
    assert err.value.details["feature"] == ref
    assert says in err.value.message and ref in err.value.message


def test_a_repo_without_feature_store_yaml_is_refused(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(ValidationError, match=r"no feature_store\.yaml") as err:
        read_features(_spec("entities.parquet"), tmp_path, data_root)
    assert str(tmp_path) not in err.value.message  # the operator's path stays private
    (tmp_path / "feature_store.yaml").write_text("project: [not, a, name\n")
    with pytest.raises(ValidationError, match=r"feature_store\.yaml is invalid") as err:
        read_features(_spec("entities.parquet"), tmp_path, data_root)
    assert err.value.details["field"] == "data"


def test_entity_files_outside_the_data_root_are_refused(
    repo: Path, data_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "tenant"
    root.mkdir()
    (root / "escape.parquet").symlink_to(data_root / "entities.parquet")
    with pytest.raises(ValidationError, match="leaves the data root") as err:
        read_features(_spec("escape.parquet"), repo, root)
    assert err.value.details["field"] == "data.entity_path"
    with pytest.raises(ValidationError, match="not found"):
        read_features(_spec("missing.csv"), repo, root)
    with pytest.raises(ValidationError, match="s3:// entity files are not supported yet"):
        read_features(_spec("s3://bucket/entities.parquet"), repo, root)
    with pytest.raises(ValidationError, match="s3:// entity files are not supported yet"):
        read_features(_spec("entities.parquet"), repo, Path("s3://bucket/tenant"))


def test_entity_file_problems(repo: Path, data_root: Path, tmp_path: Path) -> None:
    entities = _entity_rows()
    entities.drop(columns="customer_id").to_csv(tmp_path / "no_key.csv", index=False)
    with pytest.raises(ValidationError, match="no column 'customer_id'"):
        read_features(_spec("no_key.csv"), repo, tmp_path)
    with pytest.raises(ValidationError, match="column 'churned' is not in the entity file") as err:
        read_features(_spec("entities.parquet", target="churned"), repo, data_root)
    assert err.value.details["field"] == "data.target"
    # Events before any feature row: every row is dropped.
    early = entities.head(15).assign(event_timestamp=BASE - timedelta(days=1))
    early.to_parquet(tmp_path / "early.parquet")
    with pytest.raises(ValidationError, match="rows have every feature") as err:
        read_features(_spec("early.parquet"), repo, tmp_path)
    assert err.value.details == {"field": "data.entity_path", "rows": 0, "dropped_rows": 15}
    entities.head(9).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValidationError, match="fewer than 10 rows"):
        read_features(_spec("short.csv"), repo, tmp_path)


def test_feasts_own_mlflow_logging_is_off(tmp_path: Path, data_root: Path) -> None:
    # Feast 0.67 would open an MLflow store at this URI and tag the active run with it.
    repo = _make_repo(tmp_path / "repo")
    with (repo / "feature_store.yaml").open("a") as f:
        f.write(
            f"mlflow:\n  enabled: true\n  auto_log: true\n  tracking_uri: sqlite:///{repo}/x.db\n"
        )
    assert FeatureStore(repo_path=str(repo)).config.mlflow.enabled
    read_features(_spec("entities.parquet"), repo, data_root)
    assert not (repo / "x.db").exists()
    assert _open_store(repo).mlflow is None


@pytest.mark.slow  # a fresh interpreter imports Feast: ~4 s
def test_importing_feast_leaves_prometheus_in_process(tmp_path: Path) -> None:
    # A fresh interpreter: this one has imported Feast already.
    script = (
        "import os, sys\n"
        "from matih_ml.training.features import import_feast\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "import_feast()\n"
        "import prometheus_client.values as v\n"
        "assert v.ValueClass is v.MutexValue, v.ValueClass\n"
        "assert not {'PROMETHEUS_MULTIPROC_DIR', 'PROMETHEUS_MULTIPROCESS_DIR'} & set(os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not {"PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"} & set(os.environ)


def test_a_job_fed_by_feast_registers_with_its_feature_lineage(services, tenant) -> None:
    from matih_ml.training.runner import run_job

    settings = services.settings
    _make_repo(Path(settings.feast_repo(tenant)))
    root = Path(settings.tenant_data_root(tenant))
    root.mkdir(parents=True)
    frame = _entity_rows()
    # A label the features can learn: whether the spend known at that time is high.
    spends = [
        _as_of(STATS, c, t, STATS_TTL)
        for c, t in zip(frame.customer_id, frame.event_timestamp, strict=True)
    ]
    frame["label"] = [int(r is not None and r["spend"] > 100) for r in spends]
    frame.to_parquet(root / "entities.parquet")
    spec = validate_job(
        {
            "name": "feast-job",
            "model_name": "spenders",
            "trainer": {"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
            "data": {
                "kind": "feast",
                "features": ["customer_stats:spend", "customer_profile:age"],
                "entity_path": "entities.parquet",
                "target": "label",
                "holdout_fraction": 0.3,
            },
            "evaluation": {"primary_metric": "accuracy"},
            "target_stage": "development",
        }
    )

    result = run_job(services, tenant, spec, data_root=root, actor="fe")

    assert result.status == "registered", result.reason
    assert result.value is not None and result.value > 0.8
    ages = [
        _as_of(PROFILE, c, t, None)
        for c, t in zip(frame.customer_id, frame.event_timestamp, strict=True)
    ]
    assert result.rows == sum(
        s is not None and a is not None for s, a in zip(spends, ages, strict=True)
    )
    version = services.registry.get_version(tenant, "spenders", result.registered_version)
    tags = version.tags
    assert tags["feast.project"] == "shop"
    assert tags["feast.features"] == "customer_stats:spend,customer_profile:age"
    assert set(tags) >= {"feast.view.customer_stats", "feast.view.customer_profile"}
    run = services.runs.get_run(tenant, result.parent_run_id)
    assert run.data.tags["feast.view.customer_stats"] == tags["feast.view.customer_stats"]

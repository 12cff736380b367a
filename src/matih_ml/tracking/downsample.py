"""A metric's history for a chart: min, max and mean per step bucket, in the database.

A long run's full history is megabytes of JSON and seconds of work (a million points:
22 s and 900 MB through MLflow). A chart needs about as many buckets as it has pixels:
here the database groups the points into at most ``max_points`` equal step ranges and
returns one row per bucket, plus the first and last points exactly. No point is pulled
into Python on the SQL stores; a remote MLflow server's history is bucketed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from sqlalchemy import Engine, text

from matih_ml.mlflow_errors import translated


@dataclass(frozen=True)
class Bucket:
    """The points whose steps fall in ``[step_min, step_max]``."""

    step_min: int
    step_max: int
    count: int
    min: float
    max: float
    mean: float


@dataclass(frozen=True)
class Downsampled:
    """A downsampled history: its buckets in step order, and the exact ends."""

    key: str
    total: int
    buckets: list[Bucket]
    first: tuple[int, float, int] | None  # (step, value, timestamp)
    last: tuple[int, float, int] | None


_RANGE = text("SELECT MIN(step), MAX(step), COUNT(*) FROM metrics WHERE run_uuid = :r AND key = :k")
# The bucket index is computed in floating point: (step - lo) * n could overflow 64 bits.
_BUCKET_OF = {
    "sqlite": "CAST((step - :lo) * 1.0 / :span * :n AS INTEGER)",
    "postgresql": "CAST(FLOOR((step - :lo) * 1.0 / :span * :n) AS BIGINT)",
}
_BUCKETS = (
    "SELECT {0} AS b, MIN(step), MAX(step), COUNT(*), MIN(value), "
    "MAX(value), AVG(value) FROM metrics WHERE run_uuid = :r AND key = :k "
    "GROUP BY b ORDER BY b"
)
_END = (
    "SELECT step, value, timestamp FROM metrics WHERE run_uuid = :r AND key = :k "
    "ORDER BY step {0}, timestamp {0} LIMIT 1"
)


def downsample(client: MlflowClient, run_id: str, key: str, max_points: int) -> Downsampled:
    """Bucket a run's metric ``key`` into at most ``max_points`` step ranges.

    The caller has checked the run is in the bound tenant.
    """
    engine = getattr(client._tracking_client.store, "engine", None)
    if isinstance(engine, Engine):
        return _in_sql(engine, run_id, key, max_points)
    with translated(f"run {run_id!r}"):
        history = client.get_metric_history(run_id, key)
    return _in_python(key, [(m.step, m.value, m.timestamp) for m in history], max_points)


def _in_sql(engine: Engine, run_id: str, key: str, n: int) -> Downsampled:
    args = {"r": run_id, "k": key}
    with translated(f"run {run_id!r}"), engine.connect() as conn:
        lo, hi, total = conn.execute(_RANGE, args).one()
        if not total:
            return Downsampled(key, 0, [], None, None)
        span = hi - lo + 1
        bucket_of = _BUCKET_OF.get(engine.dialect.name, _BUCKET_OF["postgresql"])
        buckets_sql = text(_BUCKETS.format(bucket_of))
        rows = conn.execute(buckets_sql, {**args, "lo": lo, "n": n, "span": span}).all()
        first = conn.execute(text(_END.format("ASC")), args).one()
        last = conn.execute(text(_END.format("DESC")), args).one()
    buckets = [Bucket(int(r[1]), int(r[2]), int(r[3]), r[4], r[5], float(r[6])) for r in rows]
    return Downsampled(key, int(total), buckets, tuple(first), tuple(last))  # type: ignore[arg-type]


def _in_python(key: str, points: list[tuple[int, float, int]], n: int) -> Downsampled:
    if not points:
        return Downsampled(key, 0, [], None, None)
    points.sort()
    lo, hi = points[0][0], points[-1][0]
    span = hi - lo + 1
    groups: dict[int, list[tuple[int, float, int]]] = {}
    for p in points:
        groups.setdefault(int((p[0] - lo) / span * n), []).append(p)
    buckets = [
        Bucket(
            g[0][0],
            g[-1][0],
            len(g),
            min(v for _, v, _ in g),
            max(v for _, v, _ in g),
            sum(v for _, v, _ in g) / len(g),
        )
        for _, g in sorted(groups.items())
    ]
    return Downsampled(key, len(points), buckets, points[0], points[-1])

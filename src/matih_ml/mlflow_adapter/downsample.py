"""A metric's history for a chart: min, max and mean per step bucket, in the database.

A long run's full history is megabytes of JSON and seconds of work (a million points:
22 s and 900 MB through MLflow). A chart needs about as many buckets as it has pixels:
here the database groups the points into at most ``max_points`` equal step ranges and
returns one row per bucket, plus the first and last points exactly. No point is pulled
into Python on the SQL stores; a remote MLflow server's history is bucketed here.

When a bucket is at least 64 steps wide, the buckets are built from the write-time
summary (:mod:`matih_ml.mlflow_adapter.rollup`) instead of the points: each bucket is then a
run of whole 64- or 4,096-step blocks, so bucket widths vary by up to one block, and
its ``step_min``/``step_max`` are still the steps of its first and last points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from sqlalchemy import Connection, Engine, TextClause, text

from matih_ml.mlflow_adapter import rollup
from matih_ml.mlflow_adapter.stores import sql_engine
from matih_ml.mlflow_errors import translated

# Below this many points a series is bucketed from its points, which is fast enough,
# rather than having its summary rebuilt first.
REBUILD_MIN_POINTS = 20_000


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


_RANGE = "SELECT MIN(step), MAX(step), COUNT(*) FROM {m} WHERE run_uuid = :r AND key = :k"
# The bucket index is computed in floating point: (step - lo) * n could overflow 64 bits.
_BUCKET_OF = {
    "sqlite": "CAST((step - :lo) * 1.0 / :span * :n AS INTEGER)",
    "postgresql": "CAST(FLOOR((step - :lo) * 1.0 / :span * :n) AS BIGINT)",
}
_BUCKETS = (
    "SELECT {0} AS b, MIN(step), MAX(step), COUNT(*), MIN(value), "
    "MAX(value), AVG(value) FROM {m} WHERE run_uuid = :r AND key = :k "
    "GROUP BY b ORDER BY b"
)
_SUMMARY_RANGE = text(
    f"SELECT MIN(min_step), MAX(max_step), SUM(points) FROM {rollup.ROLLUPS} "
    "WHERE run_uuid = :r AND key = :k AND level = 2"
)
_SUMMARY_BUCKETS = (
    "SELECT {0} AS b, MIN(min_step), MAX(max_step), SUM(points), MIN(min_value), "
    f"MAX(max_value), SUM(value_sum) FROM {rollup.ROLLUPS} "
    "WHERE run_uuid = :r AND key = :k AND level = :lvl GROUP BY b ORDER BY b"
)
# With the step known, the (run_uuid, key, step) index finds the end's few rows; ordering
# the whole series by (step, timestamp) instead made SQLite sort a million rows.
_END = (
    "SELECT step, value, timestamp FROM {m} WHERE run_uuid = :r AND key = :k "
    "AND step = :s ORDER BY timestamp {0}, value {0} LIMIT 1"
)


def downsample(client: MlflowClient, run_id: str, key: str, max_points: int) -> Downsampled:
    """Bucket a run's metric ``key`` into at most ``max_points`` step ranges.

    The caller has checked the run is in the bound tenant.
    """
    engine = sql_engine(client)
    if engine is not None:
        return _in_sql(engine, run_id, key, max_points)
    with translated(f"run {run_id!r}"):
        history = client.get_metric_history(run_id, key)
    return _in_python(key, [(m.step, m.value, m.timestamp) for m in history], max_points)


def _in_sql(engine: Engine, run_id: str, key: str, n: int) -> Downsampled:
    args = {"r": run_id, "k": key}
    with translated(f"run {run_id!r}"):
        summarised = rollup.tables_ready(engine)
        with engine.connect() as conn:
            current = summarised and rollup.is_current(conn, run_id, key)
            if not current:
                lo, hi, total = conn.execute(_sql(conn, _RANGE), args).one()
                if not total:
                    return Downsampled(key, 0, [], None, None)
                if not summarised or total < REBUILD_MIN_POINTS:
                    return _from_points(conn, args, lo, hi, total, n)
        if not current:
            rollup.rebuild(engine, run_id, key)
        with engine.connect() as conn:
            return _from_summary(conn, args, n)


def _sql(conn: Connection, template: str, arg: str = "") -> TextClause:
    return text(template.format(arg, m=rollup.metrics_by_series(conn.dialect.name)))


def _ends(conn: Connection, args: dict[str, Any], lo: int, hi: int) -> tuple[Any, Any]:
    first = conn.execute(_sql(conn, _END, "ASC"), {**args, "s": lo}).one()
    last = conn.execute(_sql(conn, _END, "DESC"), {**args, "s": hi}).one()
    return tuple(first), tuple(last)


def _from_points(
    conn: Connection, args: dict[str, Any], lo: int, hi: int, total: int, n: int
) -> Downsampled:
    span = hi - lo + 1
    bucket_of = _BUCKET_OF.get(conn.dialect.name, _BUCKET_OF["postgresql"])
    rows = conn.execute(
        _sql(conn, _BUCKETS, bucket_of), {**args, "lo": lo, "n": n, "span": span}
    ).all()
    first, last = _ends(conn, args, lo, hi)
    buckets = [Bucket(int(r[1]), int(r[2]), int(r[3]), r[4], r[5], float(r[6])) for r in rows]
    return Downsampled(args["k"], int(total), buckets, first, last)


def _from_summary(conn: Connection, args: dict[str, Any], n: int) -> Downsampled:
    lo, hi, total = conn.execute(_SUMMARY_RANGE, args).one()
    if not total:
        return Downsampled(args["k"], 0, [], None, None)
    width = (hi - lo + 1) / n
    # The coarsest level whose blocks fit in a bucket; none fits: use the points.
    fitting = [lvl for lvl, shift in rollup.LEVELS.items() if (1 << shift) <= width]
    if not fitting:
        return _from_points(conn, args, lo, hi, total, n)
    level = max(fitting)
    shift = rollup.LEVELS[level]
    b0, b1 = lo >> shift, hi >> shift
    bucket_of = _BUCKET_OF.get(conn.dialect.name, _BUCKET_OF["postgresql"]).replace("step", "block")
    rows = conn.execute(
        text(_SUMMARY_BUCKETS.format(bucket_of)),
        {**args, "lvl": level, "lo": b0, "span": b1 - b0 + 1, "n": n},
    ).all()
    first, last = _ends(conn, args, lo, hi)
    buckets = [
        Bucket(int(r[1]), int(r[2]), int(r[3]), r[4], r[5], float(r[6]) / int(r[3])) for r in rows
    ]
    return Downsampled(args["k"], int(total), buckets, first, last)


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

"""A metric's history summarised at write time, so a chart never reads a million rows.

For each run and key the bulk writer keeps, in the same transaction as the points,
the count, sum, min and max of the values and the first and last step of every block
of 64 steps (level 1) and of 4,096 steps (level 2). A chart of 1,000 buckets over a
million steps then reads about 16,000 level-1 rows instead of a million points.

The tables live beside MLflow's, in the tracking database, so that the summary and the
points commit together; a migration chain of their own creates them
(``matih_ml.store.tracking_migrations``). Stock MLflow writers (``log_batch``, another
client on the same database) do not know of them; a per-series row records the latest
point the summary has seen, and a reader that finds ``latest_metrics`` ahead of it (or
no row at all) rebuilds the series' summary from the points before using it. A stock
write of a point *older* than the latest one is not detected; the docs say so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text

from matih_ml.mlflow_adapter.stores import copies

log = logging.getLogger(__name__)

# Level -> log2 of its block size in steps.
LEVELS = {1: 6, 2: 12}
ROLLUPS = "matih_metric_rollups"
SERIES = "matih_metric_series"

_ready: set[str] = set()


def metrics_by_series(dialect: str) -> str:
    """MLflow's ``metrics`` table, read through its ``(run_uuid, key, step)`` index.

    Without statistics SQLite prefers the covering primary key, which starts with the
    key alone: one series' read then walks that key's rows in every run (227 ms rather
    than 1 ms for the ends of a million-point series). The index name is MLflow's, and
    the tests run these queries against MLflow's own schema.
    """
    if dialect == "sqlite":
        return "metrics INDEXED BY index_metrics_run_uuid_key_step"
    return "metrics"


# A point is (key, value, timestamp ms, step); an aggregate is
# [points, sum, min, max, min_step, max_step].
Aggregate = list[Any]


def tables_ready(engine: Engine) -> bool:
    """Whether the summary tables exist (``matih-ml db upgrade`` creates them, with the
    tracking database's migration chain in ``matih_ml.store.tracking_migrations``).

    False on a database nobody migrated: writers then skip the summary and readers scan
    the points, so the answers are the same, only slower.
    """
    url = engine.url.render_as_string(hide_password=True)
    if url in _ready:
        return True
    if not {ROLLUPS, SERIES} <= set(inspect(engine).get_table_names()):
        log.warning("metric summary tables missing in %s: run `matih-ml db upgrade`", url)
        return False
    _ready.add(url)
    return True


def aggregate(points: Iterable[Sequence[Any]]) -> dict[tuple[str, int], Aggregate]:
    """Level-1 aggregates of points ``(key, value, timestamp, step)``."""
    shift = LEVELS[1]
    blocks: dict[tuple[str, int], Aggregate] = {}
    get = blocks.get
    for k, v, _, s in points:
        slot = (k, s >> shift)
        a = get(slot)
        if a is None:
            blocks[slot] = [1, v, v, v, s, s]
            continue
        a[0] += 1
        a[1] += v
        if v < a[2]:
            a[2] = v
        elif v > a[3]:
            a[3] = v
        if s > a[5]:
            a[5] = s
        elif s < a[4]:
            a[4] = s
    return blocks


def coarsen(blocks: dict[tuple[str, int], Aggregate]) -> dict[tuple[str, int], Aggregate]:
    """Level-2 aggregates from level-1 ones."""
    shift = LEVELS[2] - LEVELS[1]
    out: dict[tuple[str, int], Aggregate] = {}
    for (k, b), a in blocks.items():
        slot = (k, b >> shift)
        c = out.get(slot)
        if c is None:
            out[slot] = list(a)
            continue
        c[0] += a[0]
        c[1] += a[1]
        c[2] = min(c[2], a[2])
        c[3] = max(c[3], a[3])
        c[4] = min(c[4], a[4])
        c[5] = max(c[5], a[5])
    return out


def _p(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def lock_series(conn: Connection, cursor: Any, run_id: str, keys: Sequence[str]) -> None:
    """Create the series rows a write is about to extend, and lock them (PostgreSQL).

    A series whose points were stored before this summary knew it starts incomplete, so
    that the next reader rebuilds it. This is the transaction's first statement and a
    write: SQLite then takes its write lock at once, rather than upgrading a read
    snapshot later (which fails at once if another writer got in between). Keys go in
    order, so two writers of one run cannot deadlock.
    """
    p = _p(conn)
    ordered = sorted(set(keys))
    table = metrics_by_series(conn.dialect.name)
    # "WHERE 1 = 1" keeps SQLite from reading ON CONFLICT as part of the SELECT.
    cursor.executemany(
        f"INSERT INTO {SERIES} (run_uuid, key, complete) SELECT {p}, {p}, CASE WHEN EXISTS "
        f"(SELECT 1 FROM {table} WHERE run_uuid = {p} AND key = {p}) THEN 0 ELSE 1 END "
        "WHERE 1 = 1 ON CONFLICT (run_uuid, key) DO NOTHING",
        [(run_id, k, run_id, k) for k in ordered],
    )
    if conn.dialect.name == "postgresql":
        cursor.execute(
            f"SELECT key FROM {SERIES} WHERE run_uuid = %s AND key = ANY(%s) "
            "ORDER BY key FOR UPDATE",
            (run_id, ordered),
        )


_COLUMNS = (
    "(run_uuid, key, level, block, points, value_sum, min_value, max_value, min_step, max_step)"
)
# Folds a new block's figures into the stored one (SQLite spells LEAST/GREATEST MIN/MAX).
_ADD = (
    " ON CONFLICT (run_uuid, key, level, block) DO UPDATE SET "
    f"points = {ROLLUPS}.points + excluded.points, "
    f"value_sum = {ROLLUPS}.value_sum + excluded.value_sum, "
    f"min_value = LEAST({ROLLUPS}.min_value, excluded.min_value), "
    f"max_value = GREATEST({ROLLUPS}.max_value, excluded.max_value), "
    f"min_step = LEAST({ROLLUPS}.min_step, excluded.min_step), "
    f"max_step = GREATEST({ROLLUPS}.max_step, excluded.max_step)"
)
# A session's staging table for the blocks of one write: emptied at each commit, created
# in the transaction that uses it (so that a rolled-back creation cannot be missed).
_STAGING = "matih_rollup_staging"


def _copy_upsert(cursor: Any, rows: Sequence[Sequence[Any]]) -> None:
    """Upsert blocks on PostgreSQL: ``COPY`` into a temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT``.

    For the 3,200 blocks of a 200,000-point batch this took 39 ms, against 60 ms for one
    multi-row ``INSERT`` (``unnest`` of arrays) and 99 ms for ``executemany``
    (docs/performance.md). Each block is in ``rows`` once, so no row is updated twice by
    the one statement.
    """
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (LIKE {ROLLUPS}) ON COMMIT DELETE ROWS"
    )
    # Empty already, unless an earlier upsert in this transaction left its rows.
    cursor.execute(f"DELETE FROM {_STAGING}")
    with cursor.copy(f"COPY {_STAGING} {_COLUMNS} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    columns = _COLUMNS[1:-1]
    cursor.execute(f"INSERT INTO {ROLLUPS} {_COLUMNS} SELECT {columns} FROM {_STAGING}{_ADD}")


def add(
    conn: Connection,
    cursor: Any,
    run_id: str,
    points: Sequence[Sequence[Any]],
    latest: Iterable[Sequence[Any]],
    all_new: bool,
) -> None:
    """Fold a batch that was just inserted into the summary.

    Args:
        all_new: Every point was a new row. When some were already stored, adding the
            batch would count them twice, so the blocks it touched are recomputed from
            the points instead.
        latest: Per key, the batch's latest point ``(key, value, timestamp, step)``.
    """
    p = _p(conn)
    level1 = aggregate(points)
    if all_new:
        rows = [
            (run_id, k, level, b, *a)
            for level, blocks in ((1, level1), (2, coarsen(level1)))
            for (k, b), a in sorted(blocks.items())
        ]
        if copies(conn.dialect):
            _copy_upsert(cursor, rows)
        else:
            upsert = f"INSERT INTO {ROLLUPS} {_COLUMNS} VALUES ({', '.join([p] * 10)}){_ADD}"
            if conn.dialect.name == "sqlite":
                upsert = upsert.replace("LEAST(", "MIN(").replace("GREATEST(", "MAX(")
            cursor.executemany(upsert, rows)
    else:
        spans: dict[str, list[int]] = {}
        for (k, _), a in level1.items():
            span = spans.setdefault(k, [a[4], a[5]])
            span[0], span[1] = min(span[0], a[4]), max(span[1], a[5])
        for k, (lo, hi) in sorted(spans.items()):
            recompute(conn, run_id, k, lo, hi)
    cursor.executemany(
        f"UPDATE {SERIES} SET step = {p}, timestamp = {p}, value = {p} "
        f"WHERE run_uuid = {p} AND key = {p} AND (step IS NULL OR "
        f"({p}, {p}, {p}) > (step, timestamp, value))",
        [(s, t, v, run_id, k, s, t, v) for k, v, t, s in latest],
    )


_MIN_STEP, _MAX_STEP = -(2**63), 2**63 - 1


def recompute(conn: Connection, run_id: str, key: str, lo: int, hi: int) -> None:
    """Rebuild the blocks of one series that cover steps ``lo..hi`` from its points.

    Whole level-2 blocks are recomputed: level 1 from the points, level 2 from level 1.
    """
    s1, s2 = LEVELS[1], LEVELS[2]
    b0, b1 = lo >> s2, hi >> s2
    first = max(b0 << s2, _MIN_STEP)
    last = min(((b1 + 1) << s2) - 1, _MAX_STEP)
    args = {"r": run_id, "k": key, "s0": first, "s1": last}
    table = metrics_by_series(conn.dialect.name)
    steps = {**args, "b0": first >> s1, "b1": last >> s1}
    conn.execute(
        text(
            f"DELETE FROM {ROLLUPS} WHERE run_uuid = :r AND key = :k AND "
            "((level = 1 AND block BETWEEN :b0 AND :b1) OR (level = 2 AND block BETWEEN "
            ":c0 AND :c1))"
        ),
        {**steps, "c0": b0, "c1": b1},
    )
    conn.execute(
        text(
            f"INSERT INTO {ROLLUPS} (run_uuid, key, level, block, points, value_sum, "
            "min_value, max_value, min_step, max_step) "
            f"SELECT run_uuid, key, 1, step >> {s1} AS blk, COUNT(*), SUM(value), "
            f"MIN(value), MAX(value), MIN(step), MAX(step) FROM {table} "
            "WHERE run_uuid = :r AND key = :k AND step BETWEEN :s0 AND :s1 "
            "GROUP BY run_uuid, key, blk"
        ),
        args,
    )
    conn.execute(
        text(
            f"INSERT INTO {ROLLUPS} (run_uuid, key, level, block, points, value_sum, "
            "min_value, max_value, min_step, max_step) "
            f"SELECT run_uuid, key, 2, block >> {s2 - s1} AS blk, SUM(points), "
            "SUM(value_sum), MIN(min_value), MAX(max_value), MIN(min_step), MAX(max_step) "
            f"FROM {ROLLUPS} WHERE run_uuid = :r AND key = :k AND level = 1 "
            "AND block BETWEEN :b0 AND :b1 GROUP BY run_uuid, key, blk"
        ),
        steps,
    )


def rebuild(engine: Engine, run_id: str, key: str) -> None:
    """Recompute a whole series' summary from its points, and mark it complete."""
    with engine.begin() as conn:
        args = {"r": run_id, "k": key}
        # Creating (or locking) the series row first serialises this with writers.
        conn.execute(
            text(
                f"INSERT INTO {SERIES} (run_uuid, key, complete) VALUES (:r, :k, 0) "
                "ON CONFLICT (run_uuid, key) DO NOTHING"
            ),
            args,
        )
        if conn.dialect.name == "postgresql":
            conn.execute(
                text(f"SELECT 1 FROM {SERIES} WHERE run_uuid = :r AND key = :k FOR UPDATE"),
                args,
            )
        conn.execute(text(f"DELETE FROM {ROLLUPS} WHERE run_uuid = :r AND key = :k"), args)
        recompute(conn, run_id, key, _MIN_STEP, _MAX_STEP)
        conn.execute(
            text(
                f"UPDATE {SERIES} SET complete = 1, step = l.step, timestamp = l.timestamp, "
                "value = l.value FROM (SELECT step, timestamp, value FROM latest_metrics "
                "WHERE run_uuid = :r AND key = :k) AS l "
                f"WHERE {SERIES}.run_uuid = :r AND {SERIES}.key = :k"
            ),
            args,
        )


def is_current(conn: Connection, run_id: str, key: str) -> bool:
    """Whether the summary holds every point of a series, as far as can be told cheaply.

    It must be complete, and ``latest_metrics`` (which every MLflow writer updates)
    must show the same latest point that the summary saw.
    """
    row = conn.execute(
        text(
            f"SELECT s.complete, s.step, s.timestamp, s.value, l.step, l.timestamp, l.value "
            f"FROM {SERIES} s LEFT JOIN latest_metrics l "
            "ON l.run_uuid = s.run_uuid AND l.key = s.key "
            "WHERE s.run_uuid = :r AND s.key = :k"
        ),
        {"r": run_id, "k": key},
    ).one_or_none()
    return row is not None and bool(row[0]) and tuple(row[1:4]) == tuple(row[4:7])

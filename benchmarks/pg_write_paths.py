"""How to put many rows into PostgreSQL from psycopg 3, measured for ``bench_pg.py``.

Two writes of the bulk metric writer (``matih_ml.mlflow_adapter.bulk`` and ``rollup``):

- the points, into MLflow's ``metrics`` table: ``executemany`` (psycopg pipelines it; the
  writer's path before COPY), multi-row ``INSERT ... VALUES`` (1,000 rows a statement),
  one ``INSERT ... SELECT FROM unnest(arrays)``, and ``COPY`` (the writer's path now);
- the chart summary's blocks (an upsert that adds to the stored block): ``executemany``,
  one ``unnest`` upsert, and ``COPY`` into a temporary table then one
  ``INSERT ... SELECT ... ON CONFLICT`` (the writer's path now).

And what bounds the points: ``COPY`` into a copy of ``metrics`` without MLflow's foreign
key, and without its three indexes either.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from matih_ml.mlflow_adapter import rollup

COLUMNS = "(key, value, timestamp, run_uuid, step, is_nan)"
BLOCK_COLUMNS = (
    "(run_uuid, key, level, block, points, value_sum, min_value, max_value, min_step, max_step)"
)
R = rollup.ROLLUPS
FOLD = (
    " ON CONFLICT (run_uuid, key, level, block) DO UPDATE SET "
    f"points = {R}.points + excluded.points, value_sum = {R}.value_sum + excluded.value_sum, "
    f"min_value = LEAST({R}.min_value, excluded.min_value), "
    f"max_value = GREATEST({R}.max_value, excluded.max_value), "
    f"min_step = LEAST({R}.min_step, excluded.min_step), "
    f"max_step = GREATEST({R}.max_step, excluded.max_step)"
)

Row = tuple[Any, ...]


def _points(run_id: str, n: int) -> list[Row]:
    now = int(time.time() * 1000)
    return [(f"m{i % 20}", 0.5 + i, now + i // 20, run_id, i // 20, False) for i in range(n)]


def executemany(cur: psycopg.Cursor, table: str, rows: list[Row]) -> None:
    cur.executemany(
        f"INSERT INTO {table} {COLUMNS} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        rows,
    )


def multirow(cur: psycopg.Cursor, table: str, rows: list[Row], size: int = 1_000) -> None:
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
        cur.execute(
            f"INSERT INTO {table} {COLUMNS} VALUES {values} ON CONFLICT DO NOTHING",
            [a for row in chunk for a in row],
        )


def unnest(cur: psycopg.Cursor, table: str, rows: list[Row]) -> None:
    keys, values, stamps, runs, steps, _ = (list(c) for c in zip(*rows, strict=True))
    cur.execute(
        f"INSERT INTO {table} {COLUMNS} SELECT k, v, t, %s, s, false FROM unnest("
        "%s::text[], %s::float8[], %s::int8[], %s::int8[]) AS u(k, v, t, s) "
        "ON CONFLICT DO NOTHING",
        (runs[0], keys, values, stamps, steps),
    )


def copy(cur: psycopg.Cursor, table: str, rows: list[Row]) -> None:
    with cur.copy(f"COPY {table} {COLUMNS} FROM STDIN") as c:
        for row in rows:
            c.write_row(row)


def _blocks(run_id: str, first_step: int) -> list[Row]:
    """The summary blocks of a 200,000-point batch of 20 keys (3,200 rows)."""
    points = [(f"m{i % 20}", 0.5 + i, 0, first_step + i // 20) for i in range(200_000)]
    level1 = rollup.aggregate(points)
    return [
        (run_id, k, level, b, *a)
        for level, blocks in ((1, level1), (2, rollup.coarsen(level1)))
        for (k, b), a in sorted(blocks.items())
    ]


def blocks_executemany(cur: psycopg.Cursor, rows: list[Row]) -> None:
    cur.executemany(
        f"INSERT INTO {R} {BLOCK_COLUMNS} VALUES ({', '.join(['%s'] * 10)}){FOLD}", rows
    )


def blocks_unnest(cur: psycopg.Cursor, rows: list[Row]) -> None:
    cols = [list(c) for c in zip(*rows, strict=True)]
    cur.execute(
        f"INSERT INTO {R} {BLOCK_COLUMNS} SELECT %s, * FROM unnest(%s::text[], %s::int2[], "
        "%s::int8[], %s::int8[], %s::float8[], %s::float8[], %s::float8[], %s::int8[], "
        f"%s::int8[]){FOLD}",
        [cols[0][0], *cols[1:]],
    )


def blocks_copy(cur: psycopg.Cursor, rows: list[Row]) -> None:
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS bench_blocks (LIKE {R}) ON COMMIT DELETE ROWS")
    with cur.copy(f"COPY bench_blocks {BLOCK_COLUMNS} FROM STDIN") as c:
        for row in rows:
            c.write_row(row)
    cur.execute(f"INSERT INTO {R} {BLOCK_COLUMNS} SELECT * FROM bench_blocks{FOLD}")


def measure(
    url: str, new_run: Callable[[], str], rows: int, rounds: int = 2
) -> dict[str, dict[str, float]]:
    """Rows/s of each way of writing points (the best of ``rounds``, the ways interleaved),
    and ms per batch of each way of writing the summary's blocks (median)."""
    points: dict[str, list[float]] = {}
    blocks: dict[str, list[float]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_no_fk (LIKE metrics INCLUDING ALL)")
        conn.execute("CREATE TABLE bench_no_index (LIKE metrics INCLUDING DEFAULTS)")
        conn.commit()
        try:
            ways: list[tuple[str, Callable[..., None], str]] = [
                ("executemany", executemany, "metrics"),
                ("multi-row INSERT, 1,000 a statement", multirow, "metrics"),
                ("INSERT ... SELECT unnest(arrays)", unnest, "metrics"),
                ("COPY", copy, "metrics"),
                ("COPY, no foreign key", copy, "bench_no_fk"),
                ("COPY, no foreign key, no index", copy, "bench_no_index"),
            ]
            for _ in range(rounds):
                for name, way, table in ways:
                    batch = _points(new_run(), rows)
                    t = time.perf_counter()
                    with conn.cursor() as cur:
                        way(cur, table, batch)
                    conn.commit()
                    points.setdefault(name, []).append(rows / (time.perf_counter() - t))
            block_ways = [
                ("executemany", blocks_executemany),
                ("one unnest upsert", blocks_unnest),
                ("COPY to a temp table + one upsert", blocks_copy),
            ]
            for _ in range(rounds + 1):
                for name, way in block_ways:
                    run_id = uuid.uuid4().hex
                    # New blocks, then a batch half over blocks already stored.
                    for first in (0, 5_000):
                        batch = _blocks(run_id, first)
                        t = time.perf_counter()
                        with conn.cursor() as cur:
                            way(cur, batch)
                        conn.commit()
                        blocks.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        finally:
            conn.rollback()
            conn.execute("DROP TABLE IF EXISTS bench_no_fk, bench_no_index")
            conn.execute(f"DELETE FROM {R} WHERE run_uuid NOT IN (SELECT run_uuid FROM runs)")
            conn.commit()
    return {
        "points": {k: max(v) for k, v in points.items()},
        "blocks": {k: statistics.median(v) for k, v in blocks.items()},
    }

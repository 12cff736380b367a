"""How many intra-op threads an ONNX Runtime session of the serving fast path should get.

The sklearn twins of a LogisticRegression and of a 100-tree RandomForest (4 features,
skl2onnx, as registration makes them) are opened with ``open_session`` (the service's
options) at 1 and 2 intra-op threads and scored on 1 and 1,000 rows: the median wall
time of a call, and the process's CPU time per call (which counts the pool threads'
work and spinning, and which other load on a shared machine barely changes).

Run with ``.venv/bin/python benchmarks/bench_onnx_threads.py``; docs/decisions.md ("The
ONNX Runtime fast path") records what it showed.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from matih_ml.runtime.onnx_session import LABEL_OUTPUT, open_session


def _time(run, calls: int) -> tuple[float, float]:
    """Median wall microseconds per call, and CPU microseconds per call."""
    for _ in range(max(100, calls // 10)):
        run()
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        run()
        walls.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    return statistics.median(walls) * 1e6, cpu / calls * 1e6


def main() -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    models = {
        "logistic": LogisticRegression().fit(x, y),
        "forest-100": RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y),
    }
    print(f"1-min load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    print(f"{'model':12} {'threads':>7} {'rows':>5} {'p50 us':>9} {'CPU us/call':>12}")
    for name, est in models.items():
        graph = to_onnx(est, x[:1].astype(np.float32), options={"zipmap": False})
        data = graph.SerializeToString()
        for threads in (1, 2):
            session = open_session(data, threads)
            for rows in (1, 1000):
                feeds = {"X": x[:rows].astype(np.float32)}
                calls = 20_000 if rows == 1 else 300
                p50, cpu = _time(lambda s=session, f=feeds: s.run([LABEL_OUTPUT], f), calls)
                print(f"{name:12} {threads:7} {rows:5} {p50:9.1f} {cpu:12.1f}")
    print(f"1-min load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()

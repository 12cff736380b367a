"""What the trust boundary costs: one model, scored in process by plain MLflow, through
matih-ml's runtime in process (skops), and through the tenant's sandbox (cloudpickle).

- plain MLflow: ``mlflow.pyfunc.load_model`` of the cloudpickle copy, in this process
  (what a plain MLflow server or ``mlflow models serve`` does with a tenant's pickle);
- matih-ml, data format: the skops copy through ``ModelRuntime.open_served``, in process;
- matih-ml, sandboxed: the cloudpickle copy through the tenant's bubblewrap worker;
- a one-off sandbox's cold start (registration, the staging gate): start, load, predict.

Run with ``make bench``; the figures in docs/performance.md come from it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

CALLS = 2_000
COLD = 5


def _p(samples: list[float], q: float) -> float:
    return sorted(samples)[int(q * (len(samples) - 1))] * 1000


def _time(predict, frame, calls: int) -> list[float]:
    for _ in range(50):
        predict(frame)
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        predict(frame)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from matih_ml.runtime.loader import ModelRuntime
    from matih_ml.runtime.sandbox import SandboxLimits

    root = Path(tempfile.mkdtemp(prefix="matih-bench-sandbox-"))
    try:
        x = pd.DataFrame(np.random.default_rng(0).normal(size=(500, 8)))
        x.columns = [f"f{i}" for i in range(8)]
        est = LogisticRegression().fit(x, (x.f0 > 0).astype(int))
        serving = root / "serving" / "bench" / "m"
        reqs = {"pip_requirements": ["scikit-learn"]}
        mlflow.sklearn.save_model(est, str(serving / "1"), serialization_format="skops", **reqs)
        mlflow.sklearn.save_model(
            est, str(serving / "2"), serialization_format="cloudpickle", **reqs
        )
        one = x.iloc[:1]
        runtime = ModelRuntime(root / "serving", SandboxLimits())
        try:
            plain = mlflow.pyfunc.load_model(str(serving / "2"))
            data = runtime.open_served("bench", "m", serving / "1", "m/1")
            boxed = runtime.open_served("bench", "m", serving / "2", "m/2")
            rows = {
                "plain MLflow, pickle in process": _time(plain.predict, one, CALLS),
                "matih-ml, skops in process": _time(data.predict, one, CALLS),
                "matih-ml, pickle in the sandbox": _time(boxed.predict, one, CALLS),
            }
            cold = []
            for _ in range(COLD):
                t = time.perf_counter()
                with runtime.open("bench", "m", serving / "2") as m:
                    m.predict(one)
                cold.append(time.perf_counter() - t)
        finally:
            runtime.close()
        print(f"one-row predict, {CALLS} calls each (ms):")
        for name, samples in rows.items():
            print(f"  {name:34s} p50 {_p(samples, 0.5):7.3f}  p99 {_p(samples, 0.99):7.3f}")
        base = statistics.median(rows["plain MLflow, pickle in process"])
        boxed_s = statistics.median(rows["matih-ml, pickle in the sandbox"])
        print(f"  sandbox / plain MLflow in process: {boxed_s / base:.1f}x")
        print(
            f"one-off sandbox (start, load, predict), {COLD} runs: "
            f"median {statistics.median(cold) * 1000:.0f} ms"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

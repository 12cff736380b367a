"""A batch-scoring job beside a plain loop of ``pyfunc.predict`` over the same file.

- **plain**: ``mlflow.pyfunc.load_model(...)`` in this process, then the parquet file read
  in chunks of ``BATCH`` rows, each chunk predicted, the ids and predictions written to
  one parquet file (what a script does to get the job's output by hand).
- **ours**: the same model registered and in production, a batch job submitted through
  the in-process door (``LocalClient.batch``), run by the job executor on a local Ray
  with 2 CPUs and ``concurrency`` 2 (two scoring actors, each loading the model once),
  and waited for. Its time is the whole job: queue, version resolution, Ray Data's read,
  scoring, the atomic write of the output and the events.

Both read the same 1,000,000-row parquet file with ``BATCH`` rows a chunk and write the
same columns; rows/s is rows over wall time, in one run. The target: ours at least 3x
the plain loop with 2 local workers. For reference, the same read and ``map_batches``
in bare Ray Data (no version, checks, sampling, progress or output) says what Ray Data
alone costs on this machine.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_batch.py``);
docs/performance.md records the figures.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

ROWS, FEATURES, BATCH, WORKERS = 1_000_000, 10, 4096, 2
MODEL = "scorer"
COLUMNS = [f"f{i}" for i in range(FEATURES)]


def _table(root: Path) -> Path:
    """The input: an ``id`` key column and ``FEATURES`` float columns."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(ROWS, FEATURES)), columns=COLUMNS)
    frame.insert(0, "id", np.arange(ROWS, dtype="int64"))
    path = root / "big.parquet"
    # Row groups of 64k rows: Ray Data reads a file's row groups as blocks in parallel.
    frame.to_parquet(path, index=False, row_group_size=65_536)
    return path


# The two models: one that costs about 1 µs a row (Ray Data's fixed costs dominate) and
# one that costs about 50 µs a row (an RBF SVC with ~1,300 support vectors; libsvm scores
# on one thread), to show how the ratio moves with the model's cost per row. Both are
# data formats that score in the actors' own processes (a forest would score in the
# sandbox: docs/decisions.md, "Trees score in the sandbox").
MODELS = ("LogisticRegression", "SVC(rbf, ~1,300 support vectors)")


def _estimator(kind: str) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    rng = np.random.default_rng(1)
    if kind == MODELS[0]:
        x = pd.DataFrame(rng.normal(size=(5_000, FEATURES)), columns=COLUMNS)
        y = (x["f0"] - x["f1"] + 0.3 * x["f2"] > 0).astype(int)
        return LogisticRegression().fit(x, y), x
    # Noisy labels: many rows end up support vectors, and each row scored costs them all.
    x = pd.DataFrame(rng.normal(size=(3_000, FEATURES)), columns=COLUMNS)
    noise = rng.normal(scale=0.8, size=len(x))
    y = (x["f0"] - x["f1"] + 0.3 * x["f2"] + noise > 0).astype(int)
    return SVC().fit(x, y), x


def plain(saved: Path, table: Path, out: Path) -> float:
    """The plain loop; returns its seconds (load included, as the job's are)."""
    import mlflow.pyfunc
    import pandas as pd
    import pyarrow.parquet as pq

    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(str(saved))
    parts = []
    for batch in pq.ParquetFile(table).iter_batches(batch_size=BATCH):
        frame = batch.to_pandas()
        predicted = model.predict(frame[COLUMNS])
        parts.append(pd.DataFrame({"id": frame["id"], "prediction": predicted}))
    scored = pd.concat(parts, ignore_index=True)
    scored.to_parquet(out, index=False)
    elapsed = time.perf_counter() - start
    assert len(scored) == ROWS
    return elapsed


def ours(ml: Any, name: str, model: str = MODEL) -> tuple[float, Any]:
    """Submit the job, wait for it; returns its seconds and the finished job."""
    body = {
        "name": name,
        "model": model,
        "input": {"path": "big.parquet"},
        "columns": COLUMNS,
        "key_columns": ["id"],
        "output": {"path": f"scores/{name}.parquet"},
        "batch_size": BATCH,
        "concurrency": WORKERS,
    }
    start = time.perf_counter()
    job = ml.batch.submit(body)
    job = ml.batch.wait(job.job_id, poll=0.05)
    elapsed = time.perf_counter() - start
    assert job.status == "succeeded", (job.status, job.reason)
    assert job.result["rows"] == ROWS, job.result
    return elapsed, job


class _BareScorer:
    """Ray Data's own floor: an actor holding the estimator, no checks, no sampling."""

    def __init__(self, estimator: list[Any]) -> None:
        import ray

        self._est = ray.get(estimator[0])

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        return pd.DataFrame({"id": batch["id"], "prediction": self._est.predict(batch[COLUMNS])})


def bare_ray_data(table: Path, estimator: Any) -> float:
    """The same read and ``map_batches`` on 2 actors (half a CPU each, as the job's, so a
    read task can run), the batches pulled to this process; returns its seconds."""
    import ray

    start = time.perf_counter()
    mapped = ray.data.read_parquet(str(table)).map_batches(
        _BareScorer,
        fn_constructor_kwargs={"estimator": [ray.put(estimator)]},
        compute=ray.data.ActorPoolStrategy(size=WORKERS),
        num_cpus=(WORKERS - 1) / WORKERS,
        batch_size=BATCH,
        batch_format="pandas",
    )
    rows = sum(b.num_rows for b in mapped.iter_batches(batch_format="pyarrow", batch_size=None))
    assert rows == ROWS
    return time.perf_counter() - start


def main() -> None:
    import mlflow.sklearn
    import pandas as pd
    import ray
    from mlflow.models import infer_signature

    from matih_ml.config import Settings
    from matih_ml.local import LocalClient
    from matih_ml.registry.policy import Policy, ProductionGate
    from matih_ml.services import build_services
    from matih_ml.training.executor import JobExecutor

    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    rows: list[tuple[str, float, float, float, list[Any]]] = []
    with tempfile.TemporaryDirectory(prefix="matih-bench-batch-") as tmp:
        folder = Path(tmp)
        settings = Settings(
            MATIH_DATA_DIR=str(folder / "data"),
            MLFLOW_TRACKING_URI=None,
            MLFLOW_REGISTRY_URI=None,
            MLFLOW_ARTIFACT_ROOT=None,
            MATIH_TRAINING_WORKERS=0,  # the executor below is the only one
        )
        root = Path(settings.tenant_data_root("bench"))
        root.mkdir(parents=True)
        table = _table(root)
        services = build_services(settings)
        tenant = services.tenants.create_tenant("bench").tenant_id
        # No four-eyes approval: the benchmark is about scoring, not about the gates.
        services.lifecycle.policies.set(
            tenant, Policy(production=ProductionGate(require_approval=False))
        )
        ml = LocalClient.operator(services, tenant)
        ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
        executor = JobExecutor(services, workers=1, poll_s=0.05, heartbeat_s=0.2)
        executor.start()
        try:
            for i, kind in enumerate(MODELS):
                name = f"scorer{i}"
                estimator, x = _estimator(kind)
                saved = folder / f"plain-model-{i}"
                signature = infer_signature(x, estimator.predict(x))
                mlflow.sklearn.save_model(estimator, str(saved), signature=signature)
                _, version = services.registry.register_model_version(
                    tenant,
                    name,
                    estimator,
                    "sklearn",
                    {"accuracy": 0.9},
                    {},
                    input_example=x.head(5),
                )
                for stage in ("staging", "production"):
                    services.lifecycle.transition_stage(tenant, name, version.version, stage)
                if i == 0:  # warm imports, the page cache and Ray's workers, once
                    plain(saved, table, folder / "warm.parquet")
                    ours(ml, "warm", name)  # a long-lived service has its workers
                p = plain(saved, table, folder / f"plain{i}.parquet")
                o, job = ours(ml, f"bench{i}", name)
                bare = bare_ray_data(table, estimator)
                log = ml.batch.logs(job.job_id).items
                out = pd.read_parquet(root / "scores" / f"bench{i}.parquet")
                mine = pd.read_parquet(folder / f"plain{i}.parquet")
                same = out.sort_values("id")["prediction"].to_numpy() == mine["prediction"]
                assert same.all(), f"{kind}: the job and the plain loop disagree"
                rows.append((kind, p, o, bare, log))
        finally:
            executor.stop()
            ray.shutdown()

    print("`.venv/bin/python benchmarks/bench_batch.py`")
    print(f"{ROWS:,} rows x {FEATURES} features of parquet, chunks of {BATCH}; load {_load()}")
    print(f"| {'model':<34} | {'what':<42} | {'s':>6} | {'rows/s':>10} |")
    print(f"|{'-' * 36}|{'-' * 44}|{'-' * 8}|{'-' * 12}|")
    for kind, p, o, bare, _ in rows:
        for what, seconds in (
            ("plain: pyfunc loop, one process", p),
            (f"ours: batch job, {WORKERS} local workers", o),
            ("reference: bare Ray Data, same map_batches", bare),
        ):
            print(f"| {kind:<34} | {what:<42} | {seconds:6.2f} | {ROWS / seconds:10,.0f} |")
    for kind, p, o, _, log in rows:
        print(f"{kind}: ours / plain, rows/s: {p / o:.2f}x (target >= 3x)")
        print("  where the job's time goes (its log, seconds after it was queued):")
        for line in log:
            print(f"    {(line.at - log[0].at).total_seconds():6.2f}  {line.line}")


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


if __name__ == "__main__":
    main()

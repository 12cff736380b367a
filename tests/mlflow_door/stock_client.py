"""A data scientist's script on another machine: the stock MLflow client, nothing of ours.

Run by ``test_stock_client.py`` as ``python stock_client.py PHASE OUT.json ARGS.json`` in a
fresh folder, with only ``MLFLOW_TRACKING_URI`` and a key in its environment. It imports
MLflow, scikit-learn, numpy and pandas only (never matih_ml), and writes what each step saw to
``OUT.json``: ``{"ok": value}``, or ``{"error": code, "message": ..., "status": ...}``
for a refusal, so that the test asserts on behaviour rather than on "no exception".
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import types
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException


def _without_feast_header_plugin() -> None:
    """Keep feast's MLflow plugin out of this client.

    The test venv has feast (matih-ml's ``training`` extra), which registers an
    ``mlflow.request_header_provider`` entry point: MLflow loads it on a process's first
    request, importing feast and torch (15 s of CPU, a minute on a busy machine). A data
    scientist's machine need not have it and it adds no header here, so it is replaced
    by one that adds nothing; everything else is the stock client. MLflow loads header
    plugins on the first request, so this runs before that, not on import.
    """

    class NoHeaders:
        def in_context(self) -> bool:
            return False

        def request_headers(self) -> dict:
            return {}

    stub = types.ModuleType("feast.infra.data_sources.mlflow.auth")
    stub.FeastMLflowHeaderProvider = NoHeaders
    sys.modules[stub.__name__] = stub


STEPS = 1000
LOOP_STEPS = 50


COLUMNS = ["f0", "f1", "f2", "f3"]


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y


def probe() -> np.ndarray:
    """The rows every phase predicts on (the test sends the same to our REST predict)."""
    return data()[0][:5]


class Steps:
    """Runs named steps, recording each one's answer or refusal."""

    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}

    def __call__(self, name: str, fn):
        started = time.perf_counter()
        try:
            value = fn()
        except MlflowException as exc:
            self.seen[name] = {
                "error": exc.error_code,
                "message": exc.message,
                "status": exc.get_http_status_code(),
                "s": round(time.perf_counter() - started, 3),
            }
            return None
        except Exception as exc:  # noqa: BLE001 - recorded, the test fails on it
            self.seen[name] = {
                "crash": f"{type(exc).__name__}: {exc}",
                "tb": traceback.format_exc(),
            }
            return None
        self.seen[name] = {"ok": value, "s": round(time.perf_counter() - started, 3)}
        return value


def version_state(c: MlflowClient, name: str, version: str) -> dict:
    mv = c.get_model_version(name, version)
    return {"stage": mv.current_stage, "aliases": sorted(mv.aliases)}


def train(step: Steps, args: dict) -> None:
    """Track two runs (one by hand, one by autolog), register a version from each, move
    them to staging, and try production without its gates."""
    from sklearn.linear_model import LogisticRegression

    name, c = args["model"], MlflowClient()
    x, y = data()
    here = Path.cwd()
    exp = step("set_experiment", lambda: mlflow.set_experiment(args["experiment"]).experiment_id)
    step(
        "experiment",
        lambda: {
            "name": c.get_experiment(exp).name,
            "artifact_location": c.get_experiment(exp).artifact_location,
        },
    )

    with mlflow.start_run(run_name="by-hand") as run:
        run_id = run.info.run_id
        step("log_params", lambda: mlflow.log_params({"lr": "0.1", "layers": "3"}))

        def log_steps() -> float:
            # 1,000 steps of "loss" in one log-batch (the bulk path; MLflow's async
            # logging would send one request per call), and a loop of single calls.
            started = time.perf_counter()
            now = int(time.time() * 1000)
            c.log_batch(run_id, [Metric("loss", 1.0 / (i + 1), now, i) for i in range(STEPS)])
            for i in range(LOOP_STEPS):
                mlflow.log_metric("acc", i / LOOP_STEPS, step=i)
            return time.perf_counter() - started

        step("log_metrics", log_steps)
        (here / "mine").mkdir(exist_ok=True)
        (here / "mine" / "notes.txt").write_text("hello from a stock client\n")
        step("log_artifact", lambda: mlflow.log_artifact("mine/notes.txt", artifact_path="notes"))
        # Version 1: named columns (a DataFrame); its requirements given, which spares
        # the client MLflow's inference subprocess (autolog's version 2 infers them).
        frame = pd.DataFrame(x, columns=COLUMNS)
        model = LogisticRegression(C=1.0).fit(frame, y)
        step(
            "log_model",
            lambda: (
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    registered_model_name=name,
                    input_example=frame.iloc[:2],
                    pip_requirements=["scikit-learn", "pandas"],
                ).registered_model_version
            ),
        )
        step(
            "v1_predictions",
            lambda: [int(p) for p in model.predict(pd.DataFrame(probe(), columns=COLUMNS))],
        )
    step("run_id", lambda: run_id)

    def history() -> dict:
        points = c.get_metric_history(run_id, "loss")
        acc = c.get_metric_history(run_id, "acc")
        return {
            "count": len(points),
            "steps": sorted(p.step for p in points) == list(range(STEPS)),
            "values": {str(p.step): p.value for p in points},
            "acc": {str(p.step): p.value for p in acc},
        }

    step("metric_history", history)
    step(
        "run",
        lambda: {
            "params": c.get_run(run_id).data.params,
            "metrics": c.get_run(run_id).data.metrics,
            "status": c.get_run(run_id).info.status,
            "artifact_uri": c.get_run(run_id).info.artifact_uri,
        },
    )

    # autolog of an sklearn fit, registering the model it logs.
    mlflow.sklearn.autolog(log_input_examples=True, registered_model_name=name)
    with mlflow.start_run(run_name="autolog") as auto:
        LogisticRegression(C=0.5, max_iter=200).fit(x, y)
    mlflow.sklearn.autolog(disable=True)
    step("autolog_run_id", lambda: auto.info.run_id)
    step(
        "autolog_run",
        lambda: {
            "params": c.get_run(auto.info.run_id).data.params,
            "metrics": c.get_run(auto.info.run_id).data.metrics,
        },
    )

    # Artifacts back down, through the service.
    step("list_artifacts", lambda: [f.path for f in c.list_artifacts(run_id)])
    step(
        "download_artifacts",
        lambda: Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="notes/notes.txt", dst_path=str(here / "downloads")
            )
        ).read_text(),
    )

    # Search.
    step(
        "search_runs",
        lambda: sorted(r.info.run_name for r in c.search_runs([exp], order_by=["start_time"])),
    )
    step(
        "search_runs_filtered",
        lambda: [r.info.run_id for r in c.search_runs([exp], "params.lr = '0.1'")],
    )
    step("search_registered_models", lambda: [m.name for m in c.search_registered_models()])
    step(
        "search_model_versions",
        lambda: sorted((v.version, v.run_id) for v in c.search_model_versions(f"name = '{name}'")),
    )
    step("registered", lambda: {v: version_state(c, name, v) for v in ("1", "2")})

    # A free alias is MLflow's own.
    step("set_free_alias", lambda: c.set_registered_model_alias(name, "champion", "1"))
    step("by_free_alias", lambda: c.get_model_version_by_alias(name, "champion").version)
    step("delete_free_alias", lambda: c.delete_registered_model_alias(name, "champion"))

    # Staging through the gates (the default policy: the model loads and predicts).
    step(
        "transition_staging",
        lambda: c.transition_model_version_stage(name, "1", "Staging").current_stage,
    )
    step("alias_staging", lambda: c.set_registered_model_alias(name, "staging", "2"))

    # Production without the approval the default policy asks for: refused.
    step("alias_production_refused", lambda: c.set_registered_model_alias(name, "production", "1"))
    step(
        "transition_production_refused",
        lambda: c.transition_model_version_stage(name, "1", "Production"),
    )
    step("delete_staging_alias_refused", lambda: c.delete_registered_model_alias(name, "staging"))
    step("after_refusals", lambda: {v: version_state(c, name, v) for v in ("1", "2")})

    # An editor may delete runs, but not registered versions (that needs an admin).
    def scratch_run() -> str:
        with mlflow.start_run(run_name="scratch") as r:
            mlflow.log_param("throwaway", "yes")
        return r.info.run_id

    scratch = step("scratch_run", scratch_run)
    step("delete_run", lambda: c.delete_run(scratch))
    step("deleted_run", lambda: c.get_run(scratch).info.lifecycle_stage)
    step("search_after_delete", lambda: sorted(r.info.run_name for r in c.search_runs([exp])))
    step("delete_version_as_editor", lambda: c.delete_model_version(name, "2"))
    step("still_there", lambda: c.get_model_version(name, "2").version)


def promote(step: Steps, args: dict) -> None:
    """With the approvals granted: version 1 by its stage, then version 2 by its alias."""
    name, c = args["model"], MlflowClient()
    step(
        "transition_production",
        lambda: c.transition_model_version_stage(name, "1", "Production").current_stage,
    )
    step("after_transition", lambda: {v: version_state(c, name, v) for v in ("1", "2")})
    step("alias_production", lambda: c.set_registered_model_alias(name, "production", "2"))
    step("after_alias", lambda: {v: version_state(c, name, v) for v in ("1", "2")})
    step("by_production_alias", lambda: c.get_model_version_by_alias(name, "production").version)


def load(step: Steps, args: dict) -> None:
    """Load the production version by stage and by alias, as the seeds' loader does."""
    name = args["model"]
    for label, uri in (
        ("by_stage", f"models:/{name}/Production"),
        ("by_alias", f"models:/{name}@production"),
    ):

        def loaded(uri: str = uri) -> dict:
            model = mlflow.pyfunc.load_model(uri)
            return {
                "run_id": model.metadata.run_id,
                "predictions": [int(p) for p in model.predict(probe())],
            }

        step(label, loaded)


def misconfigured(step: Steps, args: dict) -> None:
    """No key, then a wrong key: each a 401 that says what is wrong. Then an admin's key
    deletes what may be deleted."""
    name, c = args["model"], MlflowClient()
    step("no_key", lambda: len(c.search_experiments()))
    os.environ["MLFLOW_TRACKING_TOKEN"] = args["wrong_key"]
    step("wrong_key", lambda: len(c.search_experiments()))
    os.environ["MLFLOW_TRACKING_TOKEN"] = args["admin_key"]
    step("delete_production_version", lambda: c.delete_model_version(name, "2"))
    step("delete_archived_version", lambda: c.delete_model_version(name, "1"))
    step(
        "versions_left",
        lambda: sorted(v.version for v in c.search_model_versions(f"name = '{name}'")),
    )


PHASES = {"train": train, "promote": promote, "load": load, "misconfigured": misconfigured}

if __name__ == "__main__":
    phase, out, arguments = (
        sys.argv[1],
        Path(sys.argv[2]),
        json.loads(Path(sys.argv[3]).read_text()),
    )
    _without_feast_header_plugin()  # before the first request (not on import: tests import us)
    steps = Steps()
    try:
        PHASES[phase](steps, arguments)
    finally:
        out.write_text(json.dumps(steps.seen, default=str))

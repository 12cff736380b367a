"""A data scientist's script on another machine, with only a server's URL and keys.

Run by ``test_remote_client.py`` as ``python remote_client.py OUT.json`` in an empty
folder (also its HOME), with only ``PATH`` (this Python's bin first, so ``matih-ml`` is
the installed command), ``DO_NOT_TRACK``, ``MATIH_URL``, ``MATIH_API_KEY`` (an editor's: the person
training), ``MATIH_APPROVER_KEY`` (an approver's, another person) and
``MATIH_ADMIN_KEY`` (an admin's, for the policy). It writes the files it names below and
nothing else; what each step answered goes to ``OUT.json``, outside the folder.

The story: a run with 10,000 buffered metric points and an sklearn model logged by the
SDK's ExperimentTracker; ``matih-ml models register --run-id-file ... --stage staging``;
a policy that requires approval for production; a request approved by the other person;
promotion; a prediction through ``MatihClient``; a second version promoted the same way;
a rollback; the history and the events; and a training job submitted and followed.

Each CLI step records ``{"argv", "rc", "out", "stderr"}`` (``out``: the JSON it printed,
else its text); each SDK step ``{"ok": ...}`` or ``{"error": [class, code, message]}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

MODEL = "churn"
JOB_MODEL = "churn-job"
EXPERIMENT = "churn-remote"
# 5,000 points of loss (log_metric) and 2,500 steps of two metrics (log_metrics).
LOSS_STEPS = 5_000
PAIR_STEPS = 2_500
FEATURES = 4

# The files this script writes in its folder; the test checks there are no others.
WRITES = (
    "model-v1",
    "model-v2",
    "run-v1.json",
    "run-v2.json",
    "policy.json",
    "job.json",
)

steps: dict[str, Any] = {}


def cli(step: str, *args: str, key: str | None = None) -> Any:
    """Run ``matih-ml ARGS --json`` (with another person's key if given); its JSON."""
    argv = ["matih-ml", *args, "--json"]
    if key is not None:
        argv += ["--api-key", key]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    try:
        out: Any = json.loads(done.stdout)
    except ValueError:
        out = done.stdout
    shown = [a if a != key else "<key>" for a in argv]
    steps[step] = {"argv": shown, "rc": done.returncode, "out": out, "stderr": done.stderr[-3000:]}
    return out


def sdk(step: str, fn: Any) -> Any:
    """Run one SDK step; record its answer or its error."""
    from matih_ml.errors import MatihError

    try:
        value = fn()
    except MatihError as exc:
        steps[step] = {"error": [type(exc).__name__, exc.code, exc.message]}
        return None
    except Exception as exc:  # noqa: BLE001 - the test shows it
        steps[step] = {"crash": "".join(traceback.format_exception(exc))[-5000:]}
        return None
    steps[step] = {"ok": value}
    return value


def data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, FEATURES))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(int)
    return x, y


def train(tracker: Any, tenant: str, version: str, c: float) -> str:
    """One run: params, buffered points (the v1 run's 10,000), the model as an artifact."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    from matih_ml.tracking.tracker import RunConfig

    x, y = data()
    model = LogisticRegression(C=c).fit(x, y)
    folder = f"model-{version}"
    config = RunConfig(tenant_id=tenant, user_id="ana", run_name=f"baseline-{version}")
    with tracker.start_run(EXPERIMENT, run_config=config) as run:
        run.log_params({"C": c})
        if version == "v1":
            for i in range(LOSS_STEPS):
                run.log_metric("loss", 1.0 / (i + 1), step=i)
            for i in range(PAIR_STEPS):
                run.log_metrics({"acc": i / PAIR_STEPS, "val_loss": 2.0 / (i + 1)}, step=i)
        else:
            run.log_metric("loss", 0.5)
        mlflow.sklearn.save_model(model, folder)
        run.log_artifact(folder, "model")
    steps[f"local_predictions_{version}"] = model.predict(x[:5]).tolist()
    Path(f"run-{version}.json").write_text(json.dumps({"run_id": run.run_id, "model_name": MODEL}))
    return run.run_id


def approve(version: str, approver: str) -> None:
    asked = cli(f"request_{version}", "approvals", "request", MODEL, version[1:])
    approval = asked.get("id") if isinstance(asked, dict) else None
    cli(f"approve_{version}", "approvals", "approve", str(approval), key=approver)


def story(out_path: Path) -> None:
    from matih_ml.client import MatihClient
    from matih_ml.sdk import ModelRegistry, TrainingJobs
    from matih_ml.tracking.tracker import ExperimentTracker

    admin, approver = os.environ["MATIH_ADMIN_KEY"], os.environ["MATIH_APPROVER_KEY"]
    with MatihClient() as ml:
        me = sdk("whoami", lambda: ml.whoami().model_dump(mode="json"))
        tenant = me["tenant_id"]

        tracker = ExperimentTracker()  # MATIH_URL and MATIH_API_KEY
        run_id = sdk("train_v1", lambda: train(tracker, tenant, "v1", 1.0))
        steps["points"] = {
            key: len(list(ml.runs.all_points(run_id, key))) for key in ("loss", "acc", "val_loss")
        }
        run = ml.runs.get(run_id)
        steps["run"] = {"status": run.status, "params": run.params, "tags": run.tags}
        steps["run_artifacts"] = [f.path for f in ml.runs.list_artifacts(run_id, "model")]

        cli(
            "register_v1",
            "models",
            "register",
            "--run-id-file",
            "run-v1.json",
            "--stage",
            "staging",
        )
        Path("policy.json").write_text(json.dumps({"production": {"require_approval": True}}))
        cli("policy", "policy", "set", "-f", "policy.json", key=admin)
        cli("promote_unapproved", "models", "promote", MODEL, "1", "--stage", "production")
        approve("v1", approver)
        cli("promote_v1", "models", "promote", MODEL, "1", "--stage", "production")

        x, _ = data()
        rows = x[:5].tolist()
        sdk("predict_v1", lambda: ml.serving.predict(MODEL, inputs=rows).model_dump(mode="json"))

        sdk("train_v2", lambda: train(tracker, tenant, "v2", 0.01))
        cli(
            "register_v2",
            "models",
            "register",
            "--run-id-file",
            "run-v2.json",
            "--stage",
            "staging",
        )
        approve("v2", approver)
        cli("promote_v2", "models", "promote", MODEL, "2", "--stage", "production")
        sdk("predict_v2", lambda: ml.serving.predict(MODEL, inputs=rows).model_dump(mode="json"))

        cli("rollback", "models", "rollback", MODEL, "--reason", "v2 regressed")
        sdk("predict_after_rollback", lambda: ml.serving.predict(MODEL, inputs=rows).version)
        cli("history", "models", "history", MODEL)
        cli("events", "events", "list", "--limit", "1000")

        registry = ModelRegistry()  # MATIH_URL and MATIH_API_KEY
        found = sdk("sdk_get_model", lambda: asyncio.run(registry.get_model(tenant, MODEL)))
        if found is not None:
            steps["sdk_get_model"]["ok"] = {
                "stage": found.stage,
                "current_version": found.current_version,
                "versions": found.versions,
            }

        Path("job.json").write_text(
            json.dumps(
                {
                    "name": "nightly",
                    "model_name": JOB_MODEL,
                    "trainer": {
                        "kind": "sklearn",
                        "estimator": "sklearn.linear_model.LogisticRegression",
                    },
                    "data": {"kind": "table", "path": "churn.csv", "target": "label"},
                    "evaluation": {"primary_metric": "accuracy"},
                }
            )
        )
        job = cli("job", "jobs", "submit", "-f", "job.json", "--wait")
        if isinstance(job, dict) and "job_id" in job:
            jobs = TrainingJobs()
            sdk(
                "sdk_job",
                lambda: asyncio.run(jobs.get(tenant, job["job_id"])).status,
            )
    out_path.write_text(json.dumps(steps, default=str))


def main() -> None:
    out_path = Path(sys.argv[1])
    try:
        story(out_path)
    except BaseException as exc:
        steps["crash"] = "".join(traceback.format_exception(exc))[-5000:]
        out_path.write_text(json.dumps(steps, default=str))
        raise


if __name__ == "__main__":
    main()

"""The stock MLflow client against `matih-ml serve`, as a data scientist on another
machine uses it: a separate process in a fresh folder, with only the service's URL and a
key (issue 18, "Done when" 1, 3 and 4).

One server per profile (the embedded default; PostgreSQL with S3 over moto's server when
PostgreSQL is up), one story per server, told by :mod:`stock_client` in four client
processes, with our REST API looking on between them:

1. ``train`` (an editor's key): an experiment, a run with params, 1,000 metric steps (in
   one log-batch) and 50 more (one log-metric call each), an artifact,
   ``log_model(registered_model_name=...)``; an autologged sklearn fit that registers
   version 2; search; a free alias; both versions to staging; production tried
   without its approval (refused); a run deleted; a version delete tried (refused).
2. Approvals requested over REST and granted by an approver of another owner.
3. ``promote`` (the editor): version 1 to production by ``transition_model_version_stage``,
   then version 2 by ``set_registered_model_alias(..., "production", ...)``.
4. ``load`` (a viewer's key as Basic auth's password): ``models:/NAME/Production`` and
   ``models:/NAME@production``.
5. ``misconfigured``: no key, a wrong key; then an admin's key deletes versions.

The tests assert on what each step saw and on what our REST API shows after it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stock_client

from conftest import MotoS3, ServeProcess, fresh_postgres_database
from production.stack import BUCKET, Stack

# The story takes a minute or two per profile (most of it client processes starting
# MLflow, and the staging gate loading each model in the sandbox).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SCRIPT = Path(stock_client.__file__)
TENANT = "door-acme"
MODEL = "churn"
EXPERIMENT = "churn-exp"
STAGE_CHANGED = "MODEL_STAGE_CHANGED"


# ------------------------------------------------------------------ the servers


def _postgres_database():
    """A fresh PostgreSQL database for the module (conftest's fixture is per test)."""
    return fresh_postgres_database()


@contextmanager
def _embedded(tmp: Path) -> Iterator[ServeProcess]:
    env = {"MATIH_DATA_DIR": str(tmp / "data"), "MATIH_BOOTSTRAP_TENANT": TENANT}
    server = ServeProcess(tmp / "serve.log", env)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _production(tmp: Path) -> Iterator[ServeProcess]:
    with _postgres_database() as pg_url:
        s3 = MotoS3(tmp / "moto.log")
        try:
            s3.client().create_bucket(Bucket=BUCKET)
            stack = Stack(tmp, pg_url, s3.url)
            try:
                stack.cli("db", "upgrade")
                yield stack.replica(MATIH_BOOTSTRAP_TENANT=TENANT)
            finally:
                stack.close()
        finally:
            s3.stop()


@dataclass
class Served:
    """A served tenant: its URL and one key per role (each of its own owner)."""

    url: str
    keys: dict[str, str]

    def rest(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.keys[role]}"}
        )


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("production", marks=pytest.mark.postgres)],
)
def served(request, tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"door-{request.param}")
    profile = _embedded if request.param == "embedded" else _production
    with profile(tmp) as server:
        # As an operator does: the first start's admin key, then a key per role.
        admin = re.search(r"mk_[0-9a-f]{16}_\S+", server.output()).group(0)
        keys = {"admin": admin}
        with httpx.Client(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            for role, owner in (("editor", "alice"), ("approver", "bob"), ("viewer", "dave")):
                made = c.post("/api/v1/keys", json={"role": role, "owner": owner})
                assert made.status_code == 201, made.text
                keys[role] = made.json()["key"]
        yield Served(server.url, keys)


# ------------------------------------------------------------------ the client


class StockClient:
    """Runs :mod:`stock_client` phases in a fresh folder, with only a URL and a key."""

    def __init__(self, tmp: Path, url: str) -> None:
        self.home = tmp / "client"  # the data scientist's folder (and HOME)
        self.io = tmp / "io"  # what each phase saw, outside that folder
        self.home.mkdir()
        self.io.mkdir()
        self.url = url

    def run(self, phase: str, credentials: dict[str, str], **args: Any) -> dict[str, dict]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.url,
            # MLflow's own usage telemetry (HOME/.config/mlflow), not the protocol.
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            **credentials,
        }
        arguments = self.io / f"{phase}-args.json"
        arguments.write_text(json.dumps({"model": MODEL, "experiment": EXPERIMENT, **args}))
        out = self.io / f"{phase}.json"
        done = subprocess.run(
            [sys.executable, str(SCRIPT), phase, str(out), str(arguments)],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0 and out.exists(), (
            f"the {phase} phase exited {done.returncode}:\n{done.stderr[-5000:]}"
        )
        return json.loads(out.read_text())

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.home)) for p in self.home.rglob("*") if p.is_file())


def token(key: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_TOKEN": key}


# ------------------------------------------------------------------ the story


@dataclass
class Story:
    """What the client's steps saw, and what our REST API showed between them."""

    served: Served
    train: dict[str, dict] = field(default_factory=dict)
    promote: dict[str, dict] = field(default_factory=dict)
    load: dict[str, dict] = field(default_factory=dict)
    misconfigured: dict[str, dict] = field(default_factory=dict)
    after_train: dict[str, Any] = field(default_factory=dict)
    approvals: list[dict] = field(default_factory=list)
    after_promote: dict[str, Any] = field(default_factory=dict)
    after_deletes: dict[str, Any] = field(default_factory=dict)
    client_files: list[str] = field(default_factory=list)

    def saw(self, phase: str, step: str) -> Any:
        """What ``step`` answered; fails with the refusal or crash if it had none."""
        seen = getattr(self, phase)[step]
        assert "ok" in seen, f"{phase}/{step}: {json.dumps(seen)[:3000]}"
        return seen["ok"]

    def refused(self, phase: str, step: str) -> dict:
        seen = getattr(self, phase)[step]
        assert "error" in seen, f"{phase}/{step} was not refused: {json.dumps(seen)[:3000]}"
        return seen


def _get(c: httpx.Client, path: str, **params: Any) -> Any:
    r = c.get(path, params=params)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:2000]}"
    return r.json()


def _registry_view(c: httpx.Client) -> dict[str, Any]:
    return {
        "model": _get(c, f"/api/v1/models/{MODEL}"),
        "versions": {v["version"]: v for v in _get(c, f"/api/v1/models/{MODEL}/versions")["items"]},
        "history": _get(c, f"/api/v1/models/{MODEL}/history")["items"],
        "events": _get(c, "/api/v1/events", after=0, limit=1000)["items"],
    }


@pytest.fixture(scope="module")
def story(served: Served, tmp_path_factory) -> Story:
    s = Story(served)
    client = StockClient(tmp_path_factory.mktemp("stock-client"), served.url)
    with served.rest("editor") as editor, served.rest("approver") as approver:
        s.train = client.run("train", token(served.keys["editor"]))

        run_id = s.train["run_id"].get("ok")
        s.after_train = _registry_view(editor)
        s.after_train["models"] = _get(editor, "/api/v1/models")["items"]
        s.after_train["files"] = {
            v: [f["path"] for f in _get(editor, f"/api/v1/models/{MODEL}/versions/{v}/files")]
            for v in ("1", "2")
        }
        if run_id:
            history = f"/api/v1/runs/{run_id}/metrics/loss/history"
            s.after_train["chart"] = _get(editor, history, max_points=100)
            s.after_train["points"] = _get(editor, history, max_results=1000)
            acc = f"/api/v1/runs/{run_id}/metrics/acc/history"
            s.after_train["acc_chart"] = _get(editor, acc, max_points=10)

        # Four eyes: the editor asks, an approver of another owner approves.
        for v in ("1", "2"):
            asked = editor.post(f"/api/v1/models/{MODEL}/versions/{v}/approvals", json={})
            assert asked.status_code == 201, asked.text
            granted = approver.post(f"/api/v1/approvals/{asked.json()['id']}/approve", json={})
            assert granted.status_code == 200, granted.text
            s.approvals.append(granted.json())

        s.promote = client.run("promote", token(served.keys["editor"]))
        s.after_promote = _registry_view(editor)
        s.after_promote["approvals"] = [
            _get(editor, f"/api/v1/approvals/{a['id']}")["status"] for a in s.approvals
        ]
        rows = stock_client.probe()
        records = [dict(zip(stock_client.COLUMNS, map(float, r), strict=True)) for r in rows]
        predict = f"/api/v1/models/{MODEL}/predict"
        s.after_promote["predict_production"] = editor.post(predict, json={"inputs": rows.tolist()})
        s.after_promote["predict_v1"] = editor.post(
            predict, params={"version": "1"}, json={"records": records}
        )

        # A viewer's key as Basic auth's password (MLFLOW_TRACKING_USERNAME/PASSWORD).
        s.load = client.run(
            "load",
            {"MLFLOW_TRACKING_USERNAME": "dave", "MLFLOW_TRACKING_PASSWORD": served.keys["viewer"]},
        )
        wrong = served.keys["editor"][:-6] + "wrong0"
        s.misconfigured = client.run(
            "misconfigured", {}, wrong_key=wrong, admin_key=served.keys["admin"]
        )
        s.after_deletes = _registry_view(editor)
    s.client_files = client.files()
    return s


def _moves(history: list[dict]) -> list[tuple[str, str | None, str]]:
    return [(m["version"], m["from_stage"], m["to_stage"]) for m in history]


def _stage_events(events: list[dict]) -> list[tuple[str, str | None, str]]:
    return [
        (e["data"]["version"], e["data"]["from_stage"], e["data"]["to_stage"])
        for e in events
        if e["type"] == STAGE_CHANGED and e["subject"] == MODEL
    ]


# ------------------------------------------------------------------ tracking


def test_experiment_run_params_and_metric_steps(story: Story) -> None:
    exp = story.saw("train", "experiment")
    assert exp["name"] == EXPERIMENT
    # Artifacts travel through the service: no bucket or server folder is shown.
    assert exp["artifact_location"].startswith("mlflow-artifacts:/")
    run = story.saw("train", "run")
    assert run["artifact_uri"].startswith("mlflow-artifacts:/")
    assert run["status"] == "FINISHED"
    assert run["params"] == {"lr": "0.1", "layers": "3"}
    assert run["metrics"]["loss"] == pytest.approx(1 / stock_client.STEPS)
    history = story.saw("train", "metric_history")
    assert history["count"] == stock_client.STEPS and history["steps"]
    values = {int(k): v for k, v in history["values"].items()}
    assert values == {i: pytest.approx(1 / (i + 1)) for i in range(stock_client.STEPS)}
    # The single log-metric calls of a loop, each its own request.
    n = stock_client.LOOP_STEPS
    assert {int(k): v for k, v in history["acc"].items()} == {i: i / n for i in range(n)}
    assert run["metrics"]["acc"] == (n - 1) / n


def test_our_chart_and_history_agree_with_what_the_client_logged(story: Story) -> None:
    values = {int(k): v for k, v in story.saw("train", "metric_history")["values"].items()}
    points = story.after_train["points"]
    assert points["next_page_token"] is None
    assert {p["step"]: p["value"] for p in points["items"]} == values
    chart = story.after_train["chart"]
    assert chart["total"] == stock_client.STEPS
    assert (chart["first"]["step"], chart["first"]["value"]) == (0, values[0])
    assert (chart["last"]["step"], chart["last"]["value"]) == (999, values[999])
    buckets = chart["buckets"]
    assert 1 < len(buckets) <= 100
    assert sum(b["count"] for b in buckets) == stock_client.STEPS
    assert buckets[0]["step_min"] == 0 and buckets[-1]["step_max"] == 999
    for b in buckets:
        inside = [values[i] for i in range(b["step_min"], b["step_max"] + 1)]
        assert b["count"] == len(inside)
        assert (b["min"], b["max"]) == (pytest.approx(min(inside)), pytest.approx(max(inside)))
        assert b["mean"] == pytest.approx(sum(inside) / len(inside))
    # The loop's single calls reach the chart summary too.
    acc = story.after_train["acc_chart"]
    n = stock_client.LOOP_STEPS
    assert acc["total"] == n and sum(b["count"] for b in acc["buckets"]) == n
    assert (acc["first"]["step"], acc["last"]["step"]) == (0, n - 1)
    assert acc["last"]["value"] == (n - 1) / n


def test_autolog_of_an_sklearn_fit_logs_params_metrics_and_registers(story: Story) -> None:
    run = story.saw("train", "autolog_run")
    assert run["params"]["C"] == "0.5" and run["params"]["max_iter"] == "200"
    assert {"training_accuracy_score", "training_f1_score"} <= set(run["metrics"])
    assert 0.5 <= run["metrics"]["training_accuracy_score"] <= 1.0
    versions = dict(story.saw("train", "search_model_versions"))
    assert versions == {
        "1": story.saw("train", "run_id"),
        "2": story.saw("train", "autolog_run_id"),
    }


def test_search_runs_and_registered_models(story: Story) -> None:
    assert story.saw("train", "search_runs") == ["autolog", "by-hand"]
    assert story.saw("train", "search_runs_filtered") == [story.saw("train", "run_id")]
    assert story.saw("train", "search_registered_models") == [MODEL]


def test_artifacts_go_up_and_come_back_down_through_the_service(story: Story) -> None:
    story.saw("train", "log_artifact")
    assert story.saw("train", "list_artifacts") == ["notes"]
    assert story.saw("train", "download_artifacts") == "hello from a stock client\n"


def test_runs_publish_the_training_events(story: Story) -> None:
    runs = [story.saw("train", k) for k in ("run_id", "autolog_run_id", "scratch_run")]
    events = Counter(
        (e["type"], e["data"].get("run_id"))
        for e in story.after_deletes["events"]
        if e["type"].startswith("MODEL_TRAINING_")
    )
    assert events == Counter(
        {(t, r): 1 for r in runs for t in ("MODEL_TRAINING_STARTED", "MODEL_TRAINING_COMPLETED")}
    )


# ------------------------------------------------------------------ registration


def test_log_model_registers_through_our_lifecycle(story: Story) -> None:
    assert story.saw("train", "log_model") == "1"
    # Registered in development (MLflow's "None"), with no alias.
    assert story.saw("train", "registered") == {
        "1": {"stage": "None", "aliases": []},
        "2": {"stage": "None", "aliases": []},
    }
    listed = [m for m in story.after_train["models"] if m["name"] == MODEL]
    assert len(listed) == 1 and listed[0]["versions"] == ["1", "2"]
    for v in ("1", "2"):
        files = story.after_train["files"][v]
        assert {"MLmodel", "requirements.txt", "model_card.md"} <= set(files), (v, files)
    # MODEL_REGISTERED exactly once per version, whichever door registered it.
    registered = Counter(
        e["data"]["version"]
        for e in story.after_deletes["events"]
        if e["type"] == "MODEL_REGISTERED" and e["subject"] == MODEL
    )
    assert registered == {"1": 1, "2": 1}


def test_a_stock_clients_versions_are_served_by_predict(story: Story) -> None:
    v1 = story.after_promote["predict_v1"]
    assert v1.status_code == 200, v1.text
    assert (v1.json()["version"], v1.json()["predictions"]) == (
        "1",
        story.saw("train", "v1_predictions"),
    )
    # Version 2 was autologged from a numpy array: its signature is a float64 tensor,
    # which predict once cast to float32 and MLflow's schema check refused (422).
    production = story.after_promote["predict_production"]
    assert production.status_code == 200, production.text
    assert (production.json()["version"], production.json()["predictions"]) == (
        "2",
        story.saw("load", "by_stage")["predictions"],
    )


# ------------------------------------------------------------------ aliases and stages


def test_a_free_alias_is_mlflows_own(story: Story) -> None:
    story.saw("train", "set_free_alias")
    assert story.saw("train", "by_free_alias") == "1"
    story.saw("train", "delete_free_alias")


def test_staging_through_the_gate_lands_once_per_call(story: Story) -> None:
    assert story.saw("train", "transition_staging") == "Staging"
    story.saw("train", "alias_staging")
    view = story.after_train
    assert _moves(view["history"]) == [
        ("1", "development", "staging"),
        ("2", "development", "staging"),
    ]
    assert [m["reason"] for m in view["history"]] == ["MLflow transition-stage", "MLflow @staging"]
    assert _stage_events(view["events"]) == _moves(view["history"])


def test_production_without_its_gates_is_refused_and_nothing_changes(story: Story) -> None:
    for step in ("alias_production_refused", "transition_production_refused"):
        refusal = story.refused("train", step)
        assert (refusal["status"], refusal["error"]) == (409, "RESOURCE_CONFLICT"), refusal
        assert "approv" in refusal["message"], refusal
        assert f"PUT /api/v1/models/{MODEL}/stage" in refusal["message"], refusal
    # The lifecycle moves @staging; removing it by hand is refused too.
    refusal = story.refused("train", "delete_staging_alias_refused")
    assert refusal["status"] == 409 and f"/api/v1/models/{MODEL}/rollback" in refusal["message"]
    # As MLflow sees it: no production alias, stages unchanged.
    assert story.saw("train", "after_refusals") == {
        "1": {"stage": "Staging", "aliases": []},
        "2": {"stage": "Staging", "aliases": ["staging"]},
    }
    # As our API sees it: still in staging, no production alias, no move, no event
    # beyond the two staging moves (the refusals came after them, in the same process).
    view = story.after_train
    assert view["model"]["stage"] == "staging"
    assert {v: (d["stage"], d["aliases"]) for v, d in view["versions"].items()} == {
        "1": ("staging", []),
        "2": ("staging", ["staging"]),
    }
    assert len(view["history"]) == 2
    assert all(m["to_stage"] != "production" for m in view["history"])
    assert len(_stage_events(view["events"])) == 2


def test_with_the_gates_passing_each_call_lands_once(story: Story) -> None:
    assert all(a["decided_by"] == "bob" for a in story.approvals)
    assert story.saw("promote", "transition_production") == "Production"
    assert story.saw("promote", "after_transition") == {
        "1": {"stage": "Production", "aliases": ["production"]},
        "2": {"stage": "Staging", "aliases": ["staging"]},
    }
    story.saw("promote", "alias_production")
    assert story.saw("promote", "after_alias") == {
        "1": {"stage": "Archived", "aliases": []},
        "2": {"stage": "Production", "aliases": ["production"]},
    }
    assert story.saw("promote", "by_production_alias") == "2"
    view = story.after_promote
    assert view["approvals"] == ["applied", "applied"]
    before = _moves(story.after_train["history"])
    moves = _moves(view["history"])
    assert moves[:2] == before
    # transition-stage: one row. @production: one row, and the row archiving version 1
    # (a promotion archives the version it replaces).
    assert moves[2] == ("1", "staging", "production")
    assert sorted(moves[3:]) == [("1", "production", "archived"), ("2", "staging", "production")]
    assert [m["reason"] for m in view["history"][2:3]] == ["MLflow transition-stage"]
    # One MODEL_STAGE_CHANGED per row, the same moves in the same order.
    assert _stage_events(view["events"]) == moves
    assert view["model"]["stage"] == "production" and view["model"]["current_version"] == "2"


def test_load_model_by_stage_and_by_alias_from_a_fresh_process(story: Story) -> None:
    by_stage, by_alias = story.saw("load", "by_stage"), story.saw("load", "by_alias")
    autolog_run = story.saw("train", "autolog_run_id")
    assert by_stage["run_id"] == by_alias["run_id"] == autolog_run
    assert by_stage["predictions"] == by_alias["predictions"]
    assert len(by_stage["predictions"]) == len(stock_client.probe())


# ------------------------------------------------------------------ deletes


def test_a_run_delete_lands(story: Story) -> None:
    story.saw("train", "delete_run")
    assert story.saw("train", "deleted_run") == "deleted"
    assert story.saw("train", "search_after_delete") == ["autolog", "by-hand"]


def test_version_deletes_need_an_admin_and_spare_production(story: Story) -> None:
    refusal = story.refused("train", "delete_version_as_editor")
    assert (refusal["status"], refusal["error"]) == (403, "PERMISSION_DENIED")
    assert "'admin'" in refusal["message"]
    assert story.saw("train", "still_there") == "2"
    refusal = story.refused("misconfigured", "delete_production_version")
    assert (refusal["status"], refusal["error"]) == (409, "RESOURCE_CONFLICT")
    assert "production" in refusal["message"]
    story.saw("misconfigured", "delete_archived_version")
    assert story.saw("misconfigured", "versions_left") == ["2"]
    assert sorted(story.after_deletes["versions"]) == ["2"]
    assert story.after_deletes["model"]["stage"] == "production"
    deleted = [
        e["data"].get("version")
        for e in story.after_deletes["events"]
        if e["type"] == "MODEL_VERSION_DELETED"
    ]
    assert deleted == ["1"]


# ------------------------------------------------------------------ misconfigured


def test_a_client_without_a_key_or_with_a_wrong_one_gets_a_clear_401(story: Story) -> None:
    none = story.refused("misconfigured", "no_key")
    assert (none["status"], none["error"]) == (401, "UNAUTHENTICATED")
    assert "MLFLOW_TRACKING_TOKEN" in none["message"]
    wrong = story.refused("misconfigured", "wrong_key")
    assert (wrong["status"], wrong["error"]) == (401, "UNAUTHENTICATED")
    assert "key" in wrong["message"] and "not valid" in wrong["message"]


def test_the_client_folder_holds_only_what_the_client_wrote(story: Story) -> None:
    """No mlruns/, no database, no cache of ours: only the script's own files, and the
    font cache matplotlib (autolog's plots) keeps under HOME."""
    ours = [
        f
        for f in story.client_files
        if not f.startswith((".cache/matplotlib/", ".config/matplotlib/"))
    ]
    assert ours == ["downloads/notes.txt", "mine/notes.txt"]

"""Crash consistency: cut a promotion or a registration at each named point, by killing
the process (SIGKILL) or the database connections (``pg_terminate_backend``), then check
that our store, ``GET /production``, MLflow's ``@production`` alias and its
``Production`` stage, the history and the events all agree.

The service is a real ``matih-ml serve``; the cuts are armed through a file
(:mod:`matih_ml.crashpoints`), so a test arms the point it wants before each request.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.helpers import ok, run_with_model
from conftest import ServeProcess, embedded_settings, new_tenant_id
from matih_ml.config import Settings
from matih_ml.crashpoints import POINTS

PROMOTE_POINTS = [p for p in POINTS if not p.startswith("register.")]
REGISTER_POINTS = [p for p in POINTS if p.startswith("register.")]
MODEL = "churn"
# How long the projection and the reconciler may take to settle after a restart.
SETTLE_S = 20.0


class Harness:
    """One service's stores, the process serving them (restarted after a kill), and
    a tenant with an admin key."""

    def __init__(self, tmp_path: Path, env: dict[str, str], settings: Settings) -> None:
        from matih_ml.services import build_services

        self.tmp_path = tmp_path
        self.crash_file = tmp_path / "crash-at"
        self.crash_file.write_text("")
        self.env = {
            **env,
            "MATIH_CRASH_AT_FILE": str(self.crash_file),
            "MATIH_EVENTS_INTENT_GRACE_S": "1",
            "MATIH_RECONCILE_INTERVAL_S": "0.5",
            "MATIH_PROJECTION_INTERVAL_S": "0.5",
            "MATIH_REGISTRATION_GRACE_S": "5",
        }
        self.settings = settings
        self.starts = 0
        self.server: ServeProcess | None = None
        self.start()
        self.services = build_services(settings)
        self.tenant = self.services.tenants.create_tenant(new_tenant_id("crash")).tenant_id
        self.key = self.services.api_keys.create(self.tenant, "admin", "crash-admin").secret
        # Acknowledged registrations: run id -> version.
        self.acknowledged: dict[str, str] = {}

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        self.starts += 1
        self.server = ServeProcess(self.tmp_path / f"serve-{self.starts}.log", self.env)

    def client(self) -> httpx.Client:
        assert self.server is not None
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=60,
        )

    def arm(self, point: str) -> None:
        self.crash_file.write_text(point)

    def disarm(self) -> None:
        self.crash_file.write_text("")

    def send(self, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """A request; None when the process died under it."""
        with self.client() as c:
            try:
                return c.request(method, path, **kw)
            except httpx.TransportError:
                return None

    def restart_if_dead(self) -> None:
        assert self.server is not None
        if self.server.proc.poll() is None:
            try:
                self.server.proc.wait(timeout=5)  # SIGKILL may still be on its way
            except Exception:  # noqa: BLE001 - alive: nothing to restart
                return
        self.server.stop()
        self.start()

    def close(self) -> None:
        if self.server is not None and self.server.proc.poll() is None:
            self.server.stop()
        self.services.db.dispose()

    # ------------------------------------------------------------------ operations

    def new_run(self, model_dir: Path) -> str:
        with self.client() as c:
            return run_with_model(c, model_dir)

    def register(self, run_id: str) -> httpx.Response | None:
        r = self.send("POST", "/api/v1/models", json={"name": MODEL, "run_id": run_id})
        if r is not None and r.status_code in (200, 201):
            self.acknowledged[run_id] = r.json()["registered_version"]
        return r

    def move(self, version: str, stage: str) -> httpx.Response | None:
        body = {"version": version, "stage": stage, "reason": "crash test"}
        return self.send("PUT", f"/api/v1/models/{MODEL}/stage", json=body)

    # ------------------------------------------------------------------ invariants

    def _mlflow_view(self) -> tuple[str | None, list[str], dict[str, str]]:
        """MLflow's own answer: the @production alias, the versions in its Production
        stage, and each version's stage field."""
        client = self.services.backend.client
        with self.services.tenants.scope(self.tenant):
            rm = client.get_registered_model(MODEL)
            versions = client.search_model_versions(f"name = '{MODEL}'")
        production = sorted(str(v.version) for v in versions if v.current_stage == "Production")
        fields = {str(v.version): v.current_stage for v in versions}
        alias = (rm.aliases or {}).get("production")
        return (None if alias is None else str(alias)), production, fields

    def problems(self) -> list[str]:
        """What breaks the invariants now (empty: they hold)."""
        found: list[str] = []
        with self.client() as c:
            versions = {
                v["version"]: v for v in ok(c.get(f"/api/v1/models/{MODEL}/versions"))["items"]
            }
            ours = ok(c.get(f"/api/v1/models/{MODEL}/production"))["version"]
            history = ok(c.get(f"/api/v1/models/{MODEL}/history"))["items"]
            events: list[dict] = []
            after = 0
            while True:
                page = ok(c.get("/api/v1/events", params={"after": after, "limit": 1000}))
                events += page["items"]
                if not page["items"]:
                    break
                after = page["cursor"]
        alias, production, fields = self._mlflow_view()
        # One production version, the same everywhere (or none anywhere).
        if len(production) > 1:
            found.append(f"MLflow shows {production} in Production")
        if not (ours == alias == (production[0] if production else None)):
            found.append(f"production: ours {ours}, @production {alias}, MLflow {production}")
        # History replays to the stored stages, with never two in production.
        stage = {v: "development" for v in versions}
        for move in history:
            stage[move["version"]] = move["to_stage"]
            live = [v for v, s in stage.items() if s == "production"]
            if len(live) > 1:
                found.append(f"history has {live} in production at once (move {move['id']})")
        mlflow_name = {
            "development": "None",
            "staging": "Staging",
            "production": "Production",
            "archived": "Archived",
        }
        for v, s in stage.items():
            if v in versions and versions[v]["stage"] != s:
                found.append(f"v{v}: history says {s}, the version shows {versions[v]['stage']}")
            if v in fields and fields[v] != mlflow_name[s]:
                found.append(f"v{v}: history says {s}, MLflow's stage field {fields[v]}")
        # Each visible version has exactly one MODEL_REGISTERED; none names a ghost.
        registered = Counter(
            e["data"]["version"]
            for e in events
            if e["type"] == "MODEL_REGISTERED" and e["data"]["model"] == MODEL
        )
        for v in versions:
            if registered[v] != 1:
                found.append(f"v{v} has {registered[v]} MODEL_REGISTERED events")
        ghosts = sorted(set(registered) - set(versions))
        if ghosts:
            found.append(f"MODEL_REGISTERED for versions that do not exist: {ghosts}")
        # Every move in the history has its MODEL_STAGE_CHANGED, and no other exists.
        moved = Counter((m["version"], m["from_stage"], m["to_stage"]) for m in history)
        announced = Counter(
            (e["data"]["version"], e["data"]["from_stage"], e["data"]["to_stage"])
            for e in events
            if e["type"] == "MODEL_STAGE_CHANGED" and e["data"]["model"] == MODEL
        )
        if moved != announced:
            found.append(f"stage moves {dict(moved)} but events {dict(announced)}")
        # Every acknowledged registration is visible.
        for run_id, v in self.acknowledged.items():
            if v not in versions:
                found.append(f"acknowledged v{v} (run {run_id}) is not visible")
        return found

    def _event_summary(self) -> list[tuple[str, Any]]:
        with self.client() as c:
            items = ok(c.get("/api/v1/events", params={"limit": 1000}))["items"]
        return [(e["type"], e["data"].get("version")) for e in items]

    def settle(self) -> float:
        """Wait until the invariants hold; return how long that took."""
        started = time.monotonic()
        while True:
            left = self.problems()
            if not left:
                return time.monotonic() - started
            if time.monotonic() - started > SETTLE_S:
                pytest.fail(f"after {SETTLE_S} s: {left}; events: {self._event_summary()}")
            time.sleep(0.25)


def _prepare(h: Harness, model_dir: Path) -> None:
    """Open gates, and v1 in production (so promotions replace a production version)."""
    with h.client() as c:
        policy = {
            "staging": {"prediction_check": "off"},
            "production": {"require_approval": False},
        }
        ok(c.put("/api/v1/policy", json=policy))
    v1 = ok(h.register(h.new_run(model_dir)), 201)["registered_version"]
    ok(h.move(v1, "staging"))
    ok(h.move(v1, "production"))
    h.settle()


def _promote_cut(h: Harness, model_dir: Path, point: str, *, kill: bool) -> None:
    """A new version, staged, then cut on its way to production."""
    version = ok(h.register(h.new_run(model_dir)), 201)["registered_version"]
    ok(h.move(version, "staging"))
    h.arm(point)
    answer = h.move(version, "production")
    h.disarm()
    if kill:
        assert answer is None, (point, answer and answer.text)
        h.restart_if_dead()
    else:
        assert answer is not None and answer.status_code in (200, 503), (point, answer.text)
    h.settle()


def _register_cut(h: Harness, model_dir: Path, point: str, *, kill: bool) -> None:
    """A registration cut at ``point``; then the client's retry returns one version."""
    run_id = h.new_run(model_dir)
    h.arm(point)
    answer = h.register(run_id)
    h.disarm()
    if kill:
        assert answer is None, (point, answer and answer.text)
        h.restart_if_dead()
    else:
        assert answer is not None and answer.status_code in (200, 201, 503), (point, answer.text)
    h.settle()
    retry = h.register(run_id)
    assert retry is not None and retry.status_code in (200, 201), retry and retry.text
    with h.client() as c:
        items = ok(c.get(f"/api/v1/models/{MODEL}/versions"))["items"]
    assert [v["version"] for v in items if v["run_id"] == run_id] == [
        retry.json()["registered_version"]
    ]
    h.settle()


def _cuts(seed: int) -> list[str]:
    """Every point twice, in order, then a few at random."""
    rng = random.Random(seed)
    return [p for p in POINTS for _ in range(2)] + rng.sample(list(POINTS), 3)


def _run(h: Harness, model_dir: Path, *, kill: bool) -> list[float]:
    _prepare(h, model_dir)
    waits = []
    for point in _cuts(seed=17):
        cut = _promote_cut if point in PROMOTE_POINTS else _register_cut
        started = time.monotonic()
        cut(h, model_dir, point, kill=kill)
        waits.append(time.monotonic() - started)
    return waits


@pytest.fixture
def embedded_harness(tmp_path) -> Iterator[Harness]:
    data = tmp_path / "data"
    h = Harness(tmp_path, {"MATIH_DATA_DIR": str(data)}, embedded_settings(data))
    try:
        yield h
    finally:
        h.close()


@pytest.mark.slow
def test_sigkill_at_every_cut_point_leaves_one_consistent_story_on_sqlite(
    embedded_harness: Harness, saved_sklearn_model: Path
) -> None:
    _run(embedded_harness, saved_sklearn_model, kill=True)
    assert embedded_harness.starts > len(POINTS) * 2  # each cut point killed the process


@pytest.mark.slow
@pytest.mark.postgres
def test_connection_cuts_at_every_cut_point_leave_one_consistent_story_on_postgresql(
    stack, saved_sklearn_model: Path
) -> None:
    from production.stack import ROOT

    stack.cli("db", "upgrade")
    env = stack.env(MATIH_CRASH_MODE="cut-db", MATIH_CRASH_DB_URL=stack.direct_pg_url)
    settings = Settings(
        MLFLOW_TRACKING_URI=stack.direct_pg_url,
        MLFLOW_REGISTRY_URI=None,
        MLFLOW_ARTIFACT_ROOT=ROOT,
        MATIH_DATA_DIR=env["MATIH_DATA_DIR"],
    )
    h = Harness(stack.tmp_path, env, settings)
    try:
        _run(h, saved_sklearn_model, kill=False)
        assert h.starts == 1  # the same process went through every cut
    finally:
        h.close()

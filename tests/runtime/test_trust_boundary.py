"""A tenant's model files are data, and the code they carry runs only in the sandbox.

Everything here runs against a real `matih-ml serve` in its own process, over HTTP with
the tenants' keys, on the embedded default and on PostgreSQL with S3 (moto's server).
Tenant B's editor uploads hostile model folders to its own runs, as any editor can.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from api.helpers import error, ok, run_with_model
from conftest import ServeProcess, embedded_settings, new_tenant_id
from matih_ml.config import Settings
from runtime import payloads

COLUMNS = ["a", "b", "c"]


def _frame(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(0).normal(size=(n, 3)), columns=COLUMNS)


def _clean_model(folder: Path, label: int) -> Path:
    """An skops sklearn model that answers ``label`` for every row."""
    x = _frame(40)
    y = np.array([label] * 39 + [1 - label])
    mlflow.sklearn.save_model(
        LogisticRegression(C=1e-6).fit(x, y),
        str(folder),
        input_example=x.iloc[:5],
        pip_requirements=["scikit-learn"],
    )
    return folder


class Deployment:
    """One `matih-ml serve`, tenants A and B with admin and editor keys on it."""

    def __init__(self, tmp_path: Path, profile: str, env: dict[str, str], settings: Settings):
        from matih_ml.services import build_services

        self.profile = profile
        self.tmp_path = tmp_path
        self.data_dir = Path(env["MATIH_DATA_DIR"])
        self.settings = settings
        # Secrets the sandbox must not see.
        env = {**env, "MATIH_PROBE_SECRET": "s3cret", "AWS_PROBE_SECRET": "s3cret"}
        self.server = ServeProcess(tmp_path / "serve.log", env)
        self.services = build_services(settings)
        self.a: dict[str, Any] = {}
        self.b: dict[str, Any] = {}

    def fresh_tenants(self) -> None:
        """New tenants A and B, so that tests sharing the server share nothing else."""
        self._close_clients()
        self.a = self._tenant("tba")
        self.b = self._tenant("tbb")

    def _tenant(self, prefix: str) -> dict[str, Any]:
        tenant = self.services.tenants.create_tenant(new_tenant_id(prefix)).tenant_id
        clients = {}
        for role in ("admin", "editor", "viewer"):
            key = self.services.api_keys.create(tenant, role, f"{role}-key").secret
            clients[role] = httpx.Client(
                base_url=self.server.url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
        return {"id": tenant, **clients}

    @property
    def artifact_root(self) -> str:
        return self.settings.artifact_root

    def registry_files(self, tenant: str, model: str, version: str) -> str:
        return f"{self.artifact_root}/{tenant}/models/{model}/{version}"

    def served_files(self, tenant: str, model: str, version: str) -> Path:
        return self.data_dir.resolve() / "serving" / tenant / model / version

    def write_registry_file(self, tenant: str, model: str, version: str, name: str, data: bytes):
        """Change a version's stored file behind the service's back (storage tampering)."""
        uri = f"{self.registry_files(tenant, model, version)}/{name}"
        if uri.startswith("s3://"):
            import boto3

            bucket, key = uri[len("s3://") :].split("/", 1)
            boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"]).put_object(
                Bucket=bucket, Key=key, Body=data
            )
        else:
            Path(uri).write_bytes(data)

    def sandbox_pids(self) -> list[int]:
        """The sandbox processes under the service."""
        service = self.server.proc.pid
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes()
                if b"/sandbox/worker.py" not in cmd:
                    continue
                pid = int(entry.name)
                parent = pid
                while parent > 1:
                    stat = (Path("/proc") / str(parent) / "stat").read_text()
                    parent = int(stat.rsplit(")", 1)[1].split()[1])
                    if parent == service:
                        found.append(pid)
                        break
            except (OSError, ValueError, IndexError):
                continue
        return found

    def _close_clients(self) -> None:
        for t in (self.a, self.b):
            for role in ("admin", "editor", "viewer"):
                if role in t:
                    t[role].close()

    def close(self) -> None:
        self._close_clients()
        self.server.stop()
        self.services.db.dispose()


def _deployment(request, tmp_path: Path, profile: str) -> Iterator[Deployment]:
    data = tmp_path / "data"
    if profile == "embedded":
        env = {"MATIH_DATA_DIR": str(data)}
        settings = embedded_settings(data)
    else:
        from production.stack import ROOT, Stack

        pg = request.getfixturevalue("postgres_database")
        s3 = request.getfixturevalue("s3_server")
        stack = Stack(tmp_path, pg, s3.url)
        s3.client().create_bucket(Bucket="mlflow")
        stack.cli("db", "upgrade")
        env = stack.env()
        settings = Settings(
            MLFLOW_TRACKING_URI=pg, MLFLOW_ARTIFACT_ROOT=ROOT, MATIH_DATA_DIR=str(data)
        )
    d = Deployment(tmp_path, profile, env, settings)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def embedded(request, tmp_path_factory) -> Iterator[Deployment]:
    """One `matih-ml serve` on the embedded default for the module; each test takes
    tenants of its own."""
    yield from _deployment(request, tmp_path_factory.mktemp("embedded"), "embedded")


@pytest.fixture
def production(request, tmp_path) -> Iterator[Deployment]:
    """PostgreSQL with S3 (moto's server)."""
    yield from _deployment(request, tmp_path, "production")


@pytest.fixture(
    params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def deployment(request) -> Deployment:
    """The embedded default, and PostgreSQL with S3."""
    d = request.getfixturevalue(request.param)
    d.fresh_tenants()
    return d


def _register(client: httpx.Client, name: str, folder: Path) -> httpx.Response:
    run_id = run_with_model(client, folder)
    return client.post("/api/v1/models", json={"name": name, "run_id": run_id})


def _predict(client: httpx.Client, name: str, version: str, frame: pd.DataFrame) -> httpx.Response:
    return client.post(
        f"/api/v1/models/{name}/predict",
        params={"version": version},
        json={"records": frame.to_dict(orient="records")},
    )


def _versions(client: httpx.Client, name: str) -> list[dict]:
    r = client.get(f"/api/v1/models/{name}/versions")
    return [] if r.status_code == 404 else ok(r)["items"]


# ------------------------------------------------------------------ paths in MLmodel


def test_no_mlmodel_trick_reaches_another_tenants_model(deployment: Deployment, tmp_path) -> None:
    d = deployment
    a, b = d.a, d.b
    x = _frame()
    a_run = run_with_model(a["editor"], _clean_model(tmp_path / "a", 1))
    secret = ok(a["editor"].post("/api/v1/models", json={"name": "secret", "run_id": a_run}), 201)
    version = secret["registered_version"]
    a_answer = ok(_predict(a["editor"], "secret", version, x))["predictions"]
    assert a_answer == [1] * len(x)
    a_file = d.served_files(a["id"], "secret", version) / "model.skops"
    assert a_file.is_file()  # A's model, on the service's disk
    b_clean = _clean_model(tmp_path / "b", 0)
    # Where B's version would be served from: relative paths start there.
    b_served = d.served_files(b["id"], "stolen", "1")
    relative = os.path.relpath(a_file, b_served)

    def point(key: str, value: str):
        def edit(meta: dict) -> None:
            meta["flavors"]["python_function"][key] = value
            if key == "model_path":
                meta["flavors"]["sklearn"]["pickled_model"] = value

        return edit

    tricks = {
        "relative": (point("model_path", relative), "flavors.python_function.model_path"),
        "absolute": (point("model_path", str(a_file)), "flavors.python_function.model_path"),
        "code": (point("code", os.path.relpath(a_file.parent, b_served)), "python_function.code"),
        "data": (point("data", str(a_file.parent)), "flavors.python_function.data"),
        "artifacts": (
            lambda m: m["flavors"]["python_function"].update(
                {"artifacts": {"w": {"path": relative, "uri": "w"}}}
            ),
            "python_function.artifacts.w.path",
        ),
    }
    for trick, (edit, field) in tricks.items():
        folder = payloads.with_mlmodel(b_clean, tmp_path / f"b-{trick}", edit)
        refused = error(_register(b["editor"], "stolen", folder), 422, "UNTRUSTED_MODEL")
        assert field in refused["details"]["field"], (trick, refused)
        assert _versions(b["editor"], "stolen") == [], trick

    # A run of B's whose artifact URI points under A's prefix (MLflow refuses such an
    # experiment in a workspace; a stock client's version source, or a store edited by
    # hand, can still name one) is refused by its URI.
    run_id = run_with_model(b["editor"], b_clean)
    from sqlalchemy import create_engine, text

    engine = create_engine(d.settings.tracking_uri)
    try:
        with engine.begin() as conn:
            planted = conn.execute(
                text("SELECT artifact_uri FROM runs WHERE run_uuid = :r"), {"r": a_run}
            ).scalar_one()
            conn.execute(
                text("UPDATE runs SET artifact_uri = :u WHERE run_uuid = :r"),
                {"u": planted, "r": run_id},
            )
    finally:
        engine.dispose()
    refused = error(
        b["editor"].post("/api/v1/models", json={"name": "stolen", "run_id": run_id}),
        422,
        "UNTRUSTED_MODEL",
    )
    assert refused["details"]["field"] == "run_id"

    # Files changed in storage after registration are refused at load: the signature
    # no longer matches (issue 22), before any path in them is followed. (An unsigned
    # version's MLmodel is still checked for paths at every load: files.check_folder,
    # tests/runtime/test_model_formats.py.)
    v = ok(_register(b["editor"], "stolen", b_clean), 201)["registered_version"]
    meta = (b_clean / "MLmodel").read_text().replace("model.skops", str(a_file))
    d.write_registry_file(b["id"], "stolen", v, "MLmodel", meta.encode())
    refused = error(_predict(b["editor"], "stolen", v, x), 409, "MODEL_INTEGRITY_FAILED")
    assert refused["details"]["files"] == ["MLmodel"]
    # A's predictions never came back to B, by any of these.
    assert a_answer != [0] * len(x)


# ------------------------------------------------------------------ code runs in the sandbox


def _probe_config(d: Deployment, marker: Path) -> dict[str, Any]:
    other = (
        d.data_dir.resolve() / "artifacts" / d.a["id"]
        if d.profile == "embedded"
        else d.data_dir.resolve() / "serving"
    )
    db = d.data_dir.resolve() / "matih.db" if d.profile == "embedded" else "/var/run/postgresql"
    return {"marker": str(marker), "port": d.server.port, "other": str(other), "db": str(db)}


def _probe(prediction: dict) -> dict:
    return json.loads(prediction["probe"])


def test_code_bearing_models_run_only_in_the_sandbox(deployment: Deployment, tmp_path) -> None:
    d = deployment
    b = d.b
    # A's files exist on the host, so that failing to read them means something.
    ok(_register(d.a["editor"], "secret", _clean_model(tmp_path / "a", 1)), 201)
    x = _frame(4)
    builders = {
        "loader_module": payloads.loader_module_model,
        "pickle": payloads.pickle_model,
        "python_model": payloads.python_model,
    }
    markers = []
    for kind, build in builders.items():
        marker = tmp_path / f"marker-{kind}"
        markers.append(marker)
        folder = build(tmp_path / kind, _probe_config(d, marker))
        version = ok(_register(b["editor"], kind, folder), 201)["registered_version"]
        answer = ok(_predict(b["editor"], kind, version, x))["predictions"]
        # It still predicts right...
        assert [p["y"] for p in answer] == pytest.approx(x.sum(axis=1).tolist()), kind
        found = _probe(answer[0])
        # ...in a process of its own, that could not write on the host, reach the
        # service, read another tenant's files or the database, or see its secrets.
        assert found["ran"] and found["pid"] != d.server.proc.pid, kind
        assert found["marker_written"] is False, kind
        assert found["socket"] != "connected", kind
        assert isinstance(found["other_tenant"], str), (kind, found)
        assert isinstance(found["database"], str), (kind, found)
        assert found["env"] == [], (kind, found)
        assert not marker.exists(), kind

    # A killed worker is started again, and the next request succeeds.
    pids = d.sandbox_pids()
    assert pids, "a sandbox worker serves B"
    for pid in pids:
        # One listed may have ended on its own since (a worker of a conversion or of
        # an earlier model's check): gone is what the kill wants too.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = ok(_predict(b["editor"], "pickle", "1", x))["predictions"]
    assert [p["y"] for p in again] == pytest.approx(x.sum(axis=1).tolist())
    assert not any(m.exists() for m in markers)
    assert d.server.proc.poll() is None


def test_a_crafted_tree_crashes_only_its_sandbox(deployment: Deployment, tmp_path) -> None:
    """sklearn's own classes are not all data: a tree whose node indices point outside
    it segfaults whatever scores it. It scores in B's sandbox, so only that dies."""
    d = deployment
    ok(_register(d.a["editor"], "clean", _clean_model(tmp_path / "a", 1)), 201)
    folder = payloads.crafted_tree_model(tmp_path / "tree")
    version = ok(_register(d.b["editor"], "tree", folder), 201)["registered_version"]
    x = _frame(4)
    answer = _predict(d.b["editor"], "tree", version, x)
    assert 400 <= answer.status_code < 600 and answer.status_code != 500, answer.text
    assert answer.json()["error"]["message"], answer.text
    assert d.server.proc.poll() is None, "the service died with the tree"
    # Everyone else is served as before: A's model, and B's next request.
    assert ok(_predict(d.a["editor"], "clean", "1", x))["predictions"] == [1, 1, 1, 1]
    ok(_register(d.b["editor"], "clean", _clean_model(tmp_path / "b", 0)), 201)
    assert ok(_predict(d.b["editor"], "clean", "1", x))["predictions"] == [0, 0, 0, 0]


def test_an_uploaded_pickle_is_unpickled_in_the_sandbox_only(
    embedded: Deployment, tmp_path
) -> None:
    import pickle

    d = embedded
    d.fresh_tenants()
    marker = tmp_path / "marker-upload"
    hostile = payloads._Evil(_probe_config(d, marker))
    refused = error(
        d.b["editor"].post(
            "/api/v1/models",
            data={"name": "uploaded", "framework": "sklearn"},
            files={"file": ("model.pkl", pickle.dumps(hostile))},
        ),
        422,
    )
    assert "model" in refused["message"]
    assert not marker.exists()
    # A plain estimator still uploads (unpickled in the sandbox, saved as skops).
    x = _frame(40)
    est = LogisticRegression().fit(x, (x.a > 0).astype(int))
    done = d.b["editor"].post(
        "/api/v1/models",
        data={"name": "uploaded", "framework": "sklearn"},
        files={"file": ("model.pkl", pickle.dumps(est))},
    )
    v = ok(done, 201)["registered_version"]
    got = ok(_predict(d.b["editor"], "uploaded", v, x.iloc[:5]))["predictions"]
    assert got == est.predict(x.iloc[:5]).tolist()


class _Reporter:
    """A pickle that, when unpickled, counts the uploads its worker has unpickled, lists
    what that worker sees, tries to read ``secret``, and raises with what it found."""

    def __init__(self, secret: Path) -> None:
        self.secret = str(secret)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        source = (
            "import builtins, json, os\n"
            "builtins.UPLOADS = getattr(builtins, 'UPLOADS', 0) + 1\n"
            "seen = {'n': builtins.UPLOADS, 'models': os.listdir('/models'),"
            f" 'out': os.listdir('/out'), 'read': os.path.exists({self.secret!r})}}\n"
            "raise RuntimeError('SEEN' + json.dumps(seen))\n"
        )
        return exec, (source,)


def _reported(response: httpx.Response) -> dict[str, Any]:
    message = error(response, 422)["message"]
    return json.loads(message.split("SEEN", 1)[1])


def test_a_tenants_uploads_share_its_worker_and_never_another_tenants(
    embedded: Deployment,
) -> None:
    """Pickled uploads are unpickled in one long-lived worker per tenant (its imports
    are paid once): what one upload leaves in that worker reaches the same tenant's
    next upload, never another tenant's, and no worker sees another tenant's uploads."""
    import pickle

    d = embedded
    d.fresh_tenants()
    secret = d.data_dir.resolve() / "uploads" / d.a["id"] / "waiting.bin"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"tenant A's upload, waiting")

    def upload(tenant: dict[str, Any]) -> dict[str, Any]:
        return _reported(
            tenant["editor"].post(
                "/api/v1/models",
                data={"name": "reported", "framework": "sklearn"},
                files={"file": ("model.pkl", pickle.dumps(_Reporter(secret)))},
            )
        )

    first_b, second_b = upload(d.b), upload(d.b)
    first_a = upload(d.a)
    assert (first_b["n"], second_b["n"], first_a["n"]) == (1, 2, 1)
    for seen in (first_b, second_b):
        # B's worker sees B's folder, holding only the upload being unpickled.
        assert len(seen["models"]) == 1 and seen["models"][0].startswith("upload-")
        assert seen["out"] == seen["models"]
        assert seen["read"] is False
    assert "waiting.bin" in first_a["models"]
    # Nothing of a refused upload stays behind on the host.
    assert sorted(p.name for p in secret.parent.iterdir()) == ["waiting.bin"]
    assert not list((d.data_dir.resolve() / "uploads" / d.b["id"]).iterdir())


def test_a_policy_can_refuse_code_bearing_models(embedded: Deployment, tmp_path) -> None:
    d = embedded
    d.fresh_tenants()
    b = d.b
    folder = payloads.pickle_model(tmp_path / "p", _probe_config(d, tmp_path / "m"))
    v = ok(_register(b["editor"], "coded", folder), 201)["registered_version"]
    ok(b["admin"].put("/api/v1/policy", json={"code_models": "refuse"}))
    refused = error(_register(b["editor"], "coded2", folder), 422, "UNTRUSTED_MODEL")
    assert "policy" in refused["message"]
    refused = error(_predict(b["editor"], "coded", v, _frame(2)), 422, "UNTRUSTED_MODEL")
    assert "policy" in refused["message"]
    # Data formats are not affected.
    clean = ok(_register(b["editor"], "clean", _clean_model(tmp_path / "c", 0)), 201)
    ok(_predict(b["editor"], "clean", clean["registered_version"], _frame(2)))

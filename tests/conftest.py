"""Shared fixtures: one embedded store per test session, a fresh tenant per test.

Creating an MLflow SQLite schema takes seconds, so the store is shared and each
test isolates itself by working in tenants of its own (which is also what the
product promises: tenants never see each other).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from matih_ml.backend import MlflowBackend, use_as_mlflow_default
from matih_ml.config import Settings
from matih_ml.registry import RegistryService
from matih_ml.sdk import ModelRegistry
from matih_ml.tenancy import TenantDirectory
from matih_ml.tracking import ExperimentTracker

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# The production profile's fixtures (PostgreSQL + S3 stacks, replicas, proxies).
pytest_plugins = ["production.stack", "ui.browser"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first: with one file per worker at a time, a long file that
    starts last keeps one worker busy while the other has nothing left to do."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order kept within


@pytest.fixture(scope="module", autouse=True)
def _no_event_loop_left_running() -> Iterator[None]:
    """A file may not leave an event loop running on the worker's main thread: the next
    file's ``asyncio.run`` would fail for a reason of this one's (a Playwright session
    left open did). Checked after the file's own fixtures are torn down."""
    import asyncio

    yield
    loop = asyncio.events._get_running_loop()
    assert loop is None, f"this file left an event loop running on the main thread: {loop!r}"


def embedded_settings(data_dir: Path) -> Settings:
    """The embedded default under ``data_dir``, whatever MLflow put in the environment.

    MLflow's ``set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` to the environment, so
    a test that wants a store of its own says so explicitly.
    """
    return Settings(
        MATIH_DATA_DIR=str(data_dir),
        MLFLOW_TRACKING_URI=None,
        MLFLOW_REGISTRY_URI=None,
        MLFLOW_ARTIFACT_ROOT=None,
        MATIH_AUTO_CREATE_TENANTS=True,
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matih-data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    # The session's app runs no training jobs by itself: the job tests start their own
    # executor, so that a queue they are testing is not drained under them.
    return embedded_settings(data_dir).model_copy(update={"training_workers": 0})


@pytest.fixture(scope="session")
def services(settings: Settings):
    from matih_ml.services import build_services

    return build_services(settings)


@pytest.fixture(scope="session")
def backend(services) -> MlflowBackend:
    # As a user's script would: models:/ URIs in the tests reach this store.
    use_as_mlflow_default(services.backend)
    return services.backend


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_WORKSPACE")


@pytest.fixture(autouse=True)
def _restore_mlflow_environment(backend: MlflowBackend) -> Iterator[None]:
    """Trackers built by a test point MLflow's globals elsewhere; put them back after."""
    saved = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    use_as_mlflow_default(backend)


@pytest.fixture(scope="session")
def tenants(services, backend) -> TenantDirectory:
    return services.tenants


@pytest.fixture(scope="session")
def registry(services, backend) -> RegistryService:
    return services.registry


@pytest.fixture(scope="session")
def lifecycle(services, backend):
    return services.lifecycle


@pytest.fixture(scope="session")
def async_registry(registry: RegistryService, lifecycle) -> ModelRegistry:
    return ModelRegistry(registry, lifecycle)


@pytest.fixture
def move(lifecycle):
    """Move a version through the lifecycle; returns the model's metadata afterwards."""

    def _move(tenant_id: str, model: str, version, stage: str, **options):
        return lifecycle.transition_stage(tenant_id, model, version, stage, **options).model

    return _move


def open_production_gate(lifecycle, tenant_id: str) -> None:
    """A tenant policy with no approval before production (for tests about other things)."""
    from matih_ml.registry.policy import Policy, ProductionGate

    lifecycle.policies.set(tenant_id, Policy(production=ProductionGate(require_approval=False)))


@pytest.fixture
def open_gates(lifecycle, tenant):
    open_production_gate(lifecycle, tenant)
    return tenant


@pytest.fixture(scope="session")
def tracker(settings: Settings) -> ExperimentTracker:
    return ExperimentTracker(settings=settings)


_counter = itertools.count()


def new_tenant_id(prefix: str = "t") -> str:
    """A tenant id no other test uses."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tenant(tenants: TenantDirectory) -> str:
    return tenants.create_tenant(new_tenant_id()).tenant_id


@pytest.fixture
def other_tenant(tenants: TenantDirectory) -> str:
    return tenants.create_tenant(new_tenant_id("o")).tenant_id


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray (2 CPUs) for a module; shut down here only (never `ray stop`: other
    test runs on the machine may have a Ray of their own)."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        # Ray Train V2's controller takes one report per poll (2 s by default); the
        # driver passes this to the controller when fit() starts.
        mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.fixture(scope="session")
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return x, y


@pytest.fixture(scope="session")
def sk_model(xy: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    x, y = xy
    return LogisticRegression().fit(x, y)


@pytest.fixture
def isolated_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a store of its own, for the few tests that need one."""
    yield embedded_settings(tmp_path / "data")


# ------------------------------------------------------------------ the REST API


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on a loopback port, in a thread of the test process."""

    def __init__(self, app) -> None:
        import threading
        import time

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def api(services) -> Iterator[LiveServer]:
    from matih_ml.api.app import create_app

    server = LiveServer(create_app(services=services))
    yield server
    server.stop()


class ApiTenant:
    """A tenant with one API key per role, and HTTP clients that use them."""

    def __init__(self, api: LiveServer, services, tenant_id: str) -> None:
        import httpx

        self.tenant_id = tenant_id
        self.keys = {
            role: services.api_keys.create(tenant_id, role, f"{role}-key").secret
            for role in ("viewer", "editor", "approver", "admin")
        }
        self._clients = {
            role: httpx.Client(
                base_url=api.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
            )
            for role, key in self.keys.items()
        }

    def __getattr__(self, role: str):
        try:
            return self._clients[role]
        except KeyError:
            raise AttributeError(role) from None

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


@pytest.fixture
def acme(api, services) -> Iterator[ApiTenant]:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("acme")).tenant_id)
    yield t
    t.close()


@pytest.fixture
def globex(api, services) -> Iterator[ApiTenant]:
    t = ApiTenant(api, services, services.tenants.create_tenant(new_tenant_id("glx")).tenant_id)
    yield t
    t.close()


@pytest.fixture(scope="session")
def saved_sklearn_model(tmp_path_factory, sk_model) -> Path:
    import mlflow.sklearn

    path = tmp_path_factory.mktemp("saved") / "model"
    mlflow.sklearn.save_model(sk_model, str(path))
    return path


class ServerProcess:
    """A server as its own process on a loopback port, ready once ``ready_path`` is 200.

    Args:
        log_path: Where its output goes.
        argv: Its command line; ``{port}`` is replaced by the port chosen.
        env: Its environment, on top of this one without MLFLOW_* and MATIH_*.
        ready_path: The path polled until the server answers 200.
    """

    def __init__(
        self, log_path: Path, argv: list[str], env: dict[str, str], ready_path: str
    ) -> None:
        import subprocess
        import time

        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [a.replace("{port}", str(self.port)) for a in argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**clean, **env},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}{ready_path}", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{argv[0]} did not become ready:\n{log_path.read_text()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        self._log.close()


class ServeProcess(ServerProcess):
    """`matih-ml serve` as its own process on a loopback port, with the given environment."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        import sys

        argv = [sys.executable, "-m", "matih_ml.cli", "serve", "--port", "{port}"]
        super().__init__(log_path, argv, env, "/readyz")


POSTGRES_ADMIN_URL = os.environ.get(
    "MATIH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Where PostgreSQL is not reachable the test is skipped, except under CI=true,
    where that is a failure.
    """
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}). Start it "
            "(pg_ctlcluster <version> main start) or point MATIH_TEST_POSTGRES_URL at one."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"matih_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+psycopg://"
        )
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (see :func:`fresh_postgres_database`)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def saved_sklearn_model_dir(saved_sklearn_model: Path) -> Path:
    return saved_sklearn_model


class MotoS3:
    """moto's S3 server as a real process on a loopback port: the S3 protocol over HTTP."""

    def __init__(self, log_path: Path) -> None:
        import shutil
        import subprocess
        import sys
        import time

        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not start:\n{log_path.read_text()}")

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def s3_server(tmp_path, monkeypatch) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path / "moto.log")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield server
    server.stop()

"""The production profile, for real: PostgreSQL, S3 over moto's server, `matih-ml serve`
processes, and proxies in between that a test can cut to make a part fail.

Test modules import the fixtures they use from here."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from conftest import ServeProcess
from matih_ml.config import Settings
from production.tcp_proxy import TcpProxy

BUCKET = "mlflow"
ROOT = f"s3://{BUCKET}/root"


class Stack:
    """One PostgreSQL database and one S3 bucket, shared by any number of replicas.

    ``via_proxies`` puts a :class:`TcpProxy` in front of each, for fault tests.
    """

    def __init__(
        self, tmp_path: Path, pg_url: str, s3_url: str, *, via_proxies: bool = False
    ) -> None:
        self.tmp_path = tmp_path
        self.direct_pg_url = pg_url
        self.direct_s3_url = s3_url
        self.pg_proxy: TcpProxy | None = None
        self.s3_proxy: TcpProxy | None = None
        self.pg_url, self.s3_url = pg_url, s3_url
        if via_proxies:
            url = make_url(pg_url)
            self.pg_proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
            self.pg_url = url.set(port=self.pg_proxy.port).render_as_string(hide_password=False)
            s3 = make_url(s3_url.replace("http://", "http+x://"))
            self.s3_proxy = TcpProxy(s3.host or "127.0.0.1", s3.port or 80)
            self.s3_url = f"http://127.0.0.1:{self.s3_proxy.port}"
        self.replicas: list[ServeProcess] = []
        # docs/deploy.md: replicas share one secret key (webhook secrets, signing keys).
        self.secret_key = Fernet.generate_key().decode()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment docs/deploy.md gives a replica."""
        return {
            "MLFLOW_TRACKING_URI": self.pg_url,
            "MLFLOW_ARTIFACT_ROOT": ROOT,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MATIH_DATA_DIR": str(self.tmp_path / "data"),
            "MATIH_SECRET_KEY": self.secret_key,
            **extra,
        }

    def cli(self, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
        """Run ``matih-ml ARGS`` as its own process, as an operator would."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
        done = subprocess.run(
            [sys.executable, "-m", "matih_ml.cli", *args],
            env={**clean, **self.env(**extra)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check:
            assert done.returncode == 0, (done.stdout, done.stderr)
        return done

    def upgrade(self) -> None:
        """``matih-ml db upgrade`` on these stores, in this process: scene-setting for tests
        about something else. A new interpreter importing MLflow for it costs 5-8 CPU
        seconds; test_migrations runs the command as its own process, as an operator does."""
        from typer.testing import CliRunner

        from matih_ml.cli import app

        # As :meth:`cli`: this environment's MLFLOW_* and MATIH_* do not reach it.
        unset: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith(("MLFLOW_", "MATIH_"))
        }
        result = CliRunner().invoke(app, ["db", "upgrade"], env={**unset, **self.env()})
        assert result.exit_code == 0, (result.output, result.exception)

    def settings(self) -> Settings:
        """Settings for in-process admin work (keys, checks) on the same stores."""
        return Settings(
            MLFLOW_TRACKING_URI=self.direct_pg_url,
            MLFLOW_ARTIFACT_ROOT=ROOT,
            MATIH_DATA_DIR=str(self.tmp_path / "data"),
        )

    def replica(self, **extra: str) -> ServeProcess:
        """Start one more `matih-ml serve` on these stores."""
        n = len(self.replicas)
        proc = ServeProcess(self.tmp_path / f"replica-{n}.log", self.env(**extra))
        self.replicas.append(proc)
        return proc

    def close(self) -> None:
        for r in self.replicas:
            if r.proc.poll() is None:
                r.stop()
        for proxy in (self.pg_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.close()


def _make_stack(tmp_path, postgres_database, s3_server, *, via_proxies: bool) -> Iterator[Stack]:
    s3_server.client().create_bucket(Bucket=BUCKET)
    stack = Stack(tmp_path, postgres_database, s3_server.url, via_proxies=via_proxies)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(tmp_path, postgres_database, s3_server) -> Iterator[Stack]:
    """PostgreSQL + S3, reached directly."""
    yield from _make_stack(tmp_path, postgres_database, s3_server, via_proxies=False)


@pytest.fixture
def faulty_stack(tmp_path, postgres_database, s3_server) -> Iterator[Stack]:
    """PostgreSQL + S3, each behind a proxy the test can cut."""
    yield from _make_stack(tmp_path, postgres_database, s3_server, via_proxies=True)


def admin_keys(stack: Stack, *tenants: str) -> dict[str, str]:
    """Create the tenants and an admin key for each, in-process on the same stores."""
    from matih_ml.services import build_services

    services = build_services(stack.settings())
    try:
        keys = {}
        for tenant in tenants:
            services.tenants.create_tenant(tenant)
            keys[tenant] = services.api_keys.create(tenant, "admin", "test").secret
        return keys
    finally:
        services.db.dispose()


def client(url: str, key: str, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)


def upload(
    c: httpx.Client, name: str, model, *, timeout: float | None = None, **metadata
) -> httpx.Response:
    """Register an sklearn model by uploading its pickle (``timeout``: this request's,
    instead of the client's)."""
    import json

    return c.post(
        "/api/v1/models",
        data={"name": name, "framework": "sklearn", "metadata": json.dumps(metadata)},
        files={"file": ("model.pkl", pickle.dumps(model))},
        timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
    )

"""`matih-ml serve` for the remote tests, and processes that know only its URL and a key.

A server per profile: ``embedded`` (SQLite and local artifacts under one data folder)
and ``production`` (PostgreSQL and S3 over moto's server, as docs/deploy.md sets a
replica up). As an operator does before the first start, the tenants and keys are made
with the CLI on the server's own stores (``matih-ml tenants create``, ``matih-ml keys
create --tenant T --role R --json``), then the server starts.

A client process gets an environment with only ``PATH`` (this interpreter's bin first,
so ``matih-ml`` and ``python`` are the installed ones), ``HOME`` (its own fresh folder),
``DO_NOT_TRACK=true`` (the general opt-out MLflow and DVC honour: no usage telemetry is
sent, or written under HOME) and the ``MATIH_*`` a test gives it: no ``MATIH_DATA_DIR``,
no ``MLFLOW_*``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import MotoS3, ServeProcess, free_port, fresh_postgres_database
from production.stack import BUCKET, Stack

BIN = Path(sys.executable).parent
PATH = f"{BIN}:/usr/local/bin:/usr/bin:/bin"

# Both profiles; PostgreSQL's is skipped where it is not running, except under CI=true.
PROFILES = [
    "embedded",
    pytest.param("production", marks=[pytest.mark.slow, pytest.mark.postgres]),
]

# The keys the tests use: name -> (tenant, role, owner). The approver is another person.
TENANT_A, TENANT_B = "acme", "globex"
KEYS = {
    "admin": (TENANT_A, "admin", "olga"),
    "editor": (TENANT_A, "editor", "ana"),
    "approver": (TENANT_A, "approver", "bob"),
    "viewer": (TENANT_A, "viewer", "dave"),
    "b_admin": (TENANT_B, "admin", "gus"),
}


@dataclass
class Served:
    """A running server: its URL, the keys made for it, and its own data folder."""

    url: str
    keys: dict[str, str]
    data_dir: Path

    def training_data(self, tenant: str) -> Path:
        """The tenant's training data root on the server (MATIH_TRAINING_DATA_ROOT unset)."""
        return self.data_dir / "training-data" / tenant


def _operator_cli(env: dict[str, str], *args: str) -> str:
    """``matih-ml ARGS`` on the server's own stores, as an operator runs it there."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    done = subprocess.run(
        [sys.executable, "-m", "matih_ml.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr[-3000:])
    return done.stdout


def _make_tenants_and_keys(env: dict[str, str], keys: dict[str, tuple]) -> dict[str, str]:
    tenants = sorted({tenant for tenant, _, _ in keys.values()})
    for tenant in tenants:
        _operator_cli(env, "tenants", "create", tenant)

    def make(spec: tuple[str, str, str | None]) -> str:
        tenant, role, owner = spec
        args = ["keys", "create", "--tenant", tenant, "--role", role, "--json"]
        if owner:
            args += ["--owner", owner]
        return json.loads(_operator_cli(env, *args))["key"]

    # Each CLI process spends most of its time starting; two at a time.
    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(make, keys.values()))
    return dict(zip(keys, made, strict=True))


@contextmanager
def _embedded(tmp: Path, keys: dict[str, tuple]) -> Iterator[Served]:
    data = tmp / "srv"
    env = {"MATIH_DATA_DIR": str(data)}
    made = _make_tenants_and_keys(env, keys)
    server = ServeProcess(tmp / "serve.log", env)
    try:
        yield Served(server.url, made, data)
    finally:
        server.stop()


@contextmanager
def _production(tmp: Path, keys: dict[str, tuple]) -> Iterator[Served]:
    with fresh_postgres_database() as pg_url:
        s3 = MotoS3(tmp / "moto.log")
        try:
            s3.client().create_bucket(Bucket=BUCKET)
            stack = Stack(tmp, pg_url, s3.url)
            try:
                stack.upgrade()
                made = _make_tenants_and_keys(stack.env(), keys)
                server = stack.replica()
                yield Served(server.url, made, tmp / "data")
            finally:
                stack.close()
        finally:
            s3.stop()


@contextmanager
def serve(profile: str, tmp: Path, keys: dict[str, tuple] | None = None) -> Iterator[Served]:
    """A server of ``profile`` with ``keys`` (default: :data:`KEYS`) made before it starts."""
    start = _embedded if profile == "embedded" else _production
    with start(tmp, KEYS if keys is None else keys) as served:
        yield served


def client_env(home: Path, url: str | None, key: str | None, **extra: str) -> dict[str, str]:
    """A client process's whole environment (see the module's docstring)."""
    env = {"PATH": PATH, "HOME": str(home), "DO_NOT_TRACK": "true", **extra}
    if url is not None:
        env["MATIH_URL"] = url
    if key is not None:
        env["MATIH_API_KEY"] = key
    return env


def fresh_folder(parent: Path, name: str) -> Path:
    """An empty folder for one client (its cwd and its HOME)."""
    folder = parent / name
    folder.mkdir(parents=True)
    return folder


def files_in(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, relative, sorted (dot-folders included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@dataclass
class Done:
    """A CLI call's exit code, its stdout (parsed when JSON) and its stderr."""

    rc: int
    out: object
    stdout: str
    stderr: str

    @property
    def error(self) -> dict:
        """The error a ``--json`` call printed (``{"code", "message", "details"}``)."""
        assert self.rc == 1 and isinstance(self.out, dict) and "error" in self.out, self
        return self.out["error"]


def matih(folder: Path, env: dict[str, str], *args: str, timeout: float = 300) -> Done:
    """Run the installed ``matih-ml ARGS`` in ``folder`` with exactly ``env``."""
    done = subprocess.run(
        ["matih-ml", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        out: object = json.loads(done.stdout)
    except ValueError:
        out = done.stdout
    return Done(done.returncode, out, done.stdout, done.stderr)


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


FEATURES = [f"f{i}" for i in range(5)]


def write_training_table(served: Served, tenant: str, name: str = "churn.csv") -> Path:
    """A small table on the server, under the tenant's training data root."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, len(FEATURES)))
    y = (x[:, 0] - x[:, 1] + rng.normal(0, 0.3, 400) > 0).astype(int)
    root = served.training_data(tenant)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(x, columns=FEATURES).assign(label=y).to_csv(root / name, index=False)
    return root / name

"""`matih-ml gc` on S3 (moto's server): it finds what crashes and MLflow's deletes leave
behind, removes exactly that, and spares live data and anything still young.

The CLI runs in-process (typer's CliRunner, same command, same environment), except for
the human-form dry run, which runs as its own process, as an operator's cron job would:
each subprocess imports MLflow anew (5-7 s on a loaded 2-core machine), and nine of them
were most of this file's time. A dry run prints the plan the real run then carries out:
what goes, what stays, and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from mlflow.entities import ViewType
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.config import Settings
from matih_ml.registry.metadata import (
    REGISTRATION_PENDING,
    RUN_KIND_REGISTRATION,
    TAG_REGISTRATION,
    TAG_RUN_KIND,
)
from matih_ml.services import build_services
from matih_ml.tenancy import tenant_scope
from matih_ml.tracking.experiments import all_experiment_ids

ROOT = "s3://mlflow/root"


def _keys(s3, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow", Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def gc_env(tmp_path, s3_server, monkeypatch):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MATIH_REGISTRATION_GRACE_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MATIH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", f"{ROOT}")
    services = build_services(Settings())
    yield services, s3
    services.db.dispose()


def gc_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``matih-ml gc`` in its own process, with this test's environment."""
    done = subprocess.run(
        [sys.executable, "-m", "matih_ml.cli", "gc", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def gc(*args: str) -> dict:
    """``matih-ml gc ARGS --json`` in this process (the same command line and environment
    as :func:`gc_process`, without a new interpreter importing MLflow)."""
    result = CliRunner().invoke(app, ["gc", *args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def _shape(items: list[dict]) -> list[tuple]:
    """An item without its age and wording: what two runs' plans must agree on."""
    keys = ("kind", "tenant_id", "model_id", "version", "run_id", "uri")
    return sorted(tuple(str(i[k]) for k in keys) for i in items)


def _registration_run(client, model: str) -> str:
    """A run as ``register_model`` makes one, with a file uploaded."""
    exp = client.get_experiment_by_name(f"models/{model}")
    exp_id = exp.experiment_id if exp else client.create_experiment(f"models/{model}")
    run_id = client.create_run(exp_id, tags={TAG_RUN_KIND: RUN_KIND_REGISTRATION}).info.run_id
    client.log_text(run_id, "half a model", "model/MLmodel")
    return run_id


def _half_registered(client, s3, model: str) -> tuple[str, str]:
    """A registration killed after its version existed: pending, files half-there."""
    run_id = _registration_run(client, model)
    client.create_registered_model(model)
    mv = client.create_model_version(
        model, f"{ROOT}/nowhere", run_id, tags={TAG_REGISTRATION: REGISTRATION_PENDING}
    )
    s3.put_object(Bucket="mlflow", Key=f"root/acme/models/{model}/{mv.version}/MLmodel", Body=b"x")
    return str(mv.version), run_id


def _backdate(settings: Settings, model: str, seconds: float) -> None:
    """Make a model and its versions look ``seconds`` old, as if a crash were that old."""
    past = int((time.time() - seconds) * 1000)
    engine = sa.create_engine(settings.registry_uri)
    try:
        with engine.begin() as conn:
            for table, column in (
                ("model_versions", "creation_time"),
                ("registered_models", "last_updated_time"),
            ):
                conn.execute(
                    sa.text(f"UPDATE {table} SET {column} = :t WHERE name = :n"),
                    {"t": past, "n": model},
                )
    finally:
        engine.dispose()


def _state(services, s3, tenant: str) -> dict:
    """Everything gc may touch: files, models, versions (with their mark), runs."""
    client = services.backend.client
    with tenant_scope(tenant):
        versions = client.search_model_versions(max_results=1000)
        runs = client.search_runs(all_experiment_ids(client), run_view_type=ViewType.ALL)
        return {
            "keys": _keys(s3, "root/"),
            "models": sorted(m.name for m in client.search_registered_models()),
            "versions": sorted(
                (v.name, str(v.version), (v.tags or {}).get(TAG_REGISTRATION)) for v in versions
            ),
            "runs": sorted((r.info.run_id, r.info.lifecycle_stage) for r in runs),
        }


def test_gc_removes_exactly_the_leftovers(gc_env, sk_model, xy) -> None:
    services, s3 = gc_env
    client = services.backend.client
    services.tenants.create_tenant("acme")
    _, live = services.registry.register_model_version(
        "acme", "churn", sk_model, "sklearn", {"accuracy": 0.9}, {}
    )
    with tenant_scope("acme"):
        # A user's run with files of its own: never gc's business.
        user_run = client.create_run(client.create_experiment("mine")).info.run_id
        client.log_text(user_run, "keep me", "notes.txt")
        # A registration killed after its version existed: marked pending, files half-there.
        reg_run = client.search_model_versions("name = 'churn'")[0].run_id
        pending = client.create_model_version(
            "churn", f"{ROOT}/nowhere", reg_run, tags={TAG_REGISTRATION: REGISTRATION_PENDING}
        )
        # A registration killed before its version existed: a run and its upload.
        lonely = _registration_run(client, "churn")
    # Folders with no version behind them (a delete that died halfway, say).
    for key in (
        "root/acme/models/ghost/3/MLmodel",
        "root/acme/models/churn/7/MLmodel",
        f"root/acme/models/churn/{pending.version}/MLmodel",
    ):
        s3.put_object(Bucket="mlflow", Key=key, Body=b"x")
    before = _keys(s3, "root/")
    folders = [f"{ROOT}/acme/models/churn/7", f"{ROOT}/acme/models/ghost/3"]

    # Within the grace period the pending version and the lonely run are kept, and the
    # dry run says so and why; folders with no version are orphans at any age.
    young = gc("--dry-run")
    assert sorted(i["uri"] for i in young["remove"]) == folders
    assert {i["kind"] for i in young["remove"]} == {"orphan_folder"}
    assert sorted((i["kind"], i["version"] or i["run_id"]) for i in young["keep"]) == [
        ("orphan_run", lonely),
        ("pending_version", str(pending.version)),
    ]
    assert all("younger than the 900 s grace period" in i["reason"] for i in young["keep"])
    assert young["counts"] == {"remove": 2, "keep": 2}

    found = gc("--older-than", "0", "--dry-run")
    assert found["dry_run"] is True and found["keep"] == []
    assert _shape(found["remove"]) == _shape(
        [
            {
                "kind": "pending_version",
                "tenant_id": "acme",
                "model_id": "churn",
                "version": str(pending.version),
                # The live version still uses the run: it stays.
                "run_id": None,
                "uri": f"{ROOT}/acme/models/churn/{pending.version}",
            },
            {
                "kind": "orphan_run",
                "tenant_id": "acme",
                "model_id": None,
                "version": None,
                "run_id": lonely,
                "uri": None,
            },
            *(
                {
                    "kind": "orphan_folder",
                    "tenant_id": "acme",
                    "model_id": uri.rsplit("/", 2)[-2],
                    "version": uri.rsplit("/", 1)[-1],
                    "run_id": None,
                    "uri": uri,
                }
                for uri in folders
            ),
        ]
    )
    assert _keys(s3, "root/") == before  # a dry run removes nothing

    removed = gc("--older-than", "0")
    assert removed["total"] == 4 and removed["keep"] == []
    assert _shape(removed["remove"]) == _shape(found["remove"])
    after = _keys(s3, "root/")
    assert not any("/models/ghost/" in k or "/models/churn/7/" in k for k in after)
    assert not any(f"/models/churn/{pending.version}/" in k for k in after)
    assert not any(lonely in k for k in after)
    # Live data is whole: the live version's files, the user's run.
    assert f"root/acme/models/churn/{live.version}/MLmodel" in after
    assert any(user_run in k and k.endswith("notes.txt") for k in after)
    with tenant_scope("acme"):
        assert [str(v.version) for v in client.search_model_versions("name = 'churn'")] == [
            live.version
        ]
        assert client.get_run(lonely).info.lifecycle_stage == "deleted"
        assert client.get_run(user_run).info.lifecycle_stage == "active"
    assert services.registry.list_versions("acme", "churn")[0].version == live.version

    # A second pass finds nothing.
    assert gc("--older-than", "0")["total"] == 0


def test_dry_run_lists_what_gc_removes_and_what_it_keeps_with_the_reason(gc_env, sk_model) -> None:
    services, s3 = gc_env
    client = services.backend.client
    services.tenants.create_tenant("acme")
    _, live = services.registry.register_model_version(
        "acme", "churn", sk_model, "sklearn", {"accuracy": 0.9}, {}
    )
    with tenant_scope("acme"):
        stale_v, stale_run = _half_registered(client, s3, "stale")
        fresh_v, fresh_run = _half_registered(client, s3, "fresh")
    # The stale one was cut an hour ago; the fresh one seconds ago, within the default
    # grace (MATIH_REGISTRATION_GRACE_S, 900 s), so its writer may still be at work.
    _backdate(services.settings, "stale", 3600)
    before = _state(services, s3, "acme")

    plan = gc("--dry-run")
    assert plan["dry_run"] is True and plan["grace_s"] == 900
    assert _shape(plan["remove"]) == _shape(
        [
            {
                "kind": "pending_version",
                "tenant_id": "acme",
                "model_id": "stale",
                "version": stale_v,
                "run_id": stale_run,  # only this version used it: it goes too
                "uri": f"{ROOT}/acme/models/stale/{stale_v}",
            },
            {
                "kind": "empty_model",
                "tenant_id": "acme",
                "model_id": "stale",
                "version": None,
                "run_id": None,
                "uri": f"{ROOT}/acme/models/stale",
            },
        ]
    )
    assert all("older than the 900 s grace period" in i["reason"] for i in plan["remove"])
    [kept] = plan["keep"]
    assert (kept["kind"], kept["model_id"], kept["version"]) == (
        "pending_version",
        "fresh",
        fresh_v,
    )
    assert kept["reason"].startswith("pending registration younger than the 900 s grace period")
    assert 0 <= kept["age_s"] < 900 and f"(age {kept['age_s']:.0f} s)" in kept["reason"]
    assert plan["counts"] == {"remove": 2, "keep": 1}

    # The human form shows both lists, with their counts and reasons.
    text = gc_process("--dry-run").stdout
    assert "Would remove 2 item(s) (grace period 900 s):" in text
    assert "Would keep 1 item(s):" in text
    assert "half-registered version fresh v1: pending registration younger than" in text

    assert _state(services, s3, "acme") == before  # the dry runs changed nothing

    done = gc()
    assert done["dry_run"] is False
    assert _shape(done["remove"]) == _shape(plan["remove"])
    assert _shape(done["keep"]) == _shape(plan["keep"])

    after = _state(services, s3, "acme")
    assert "stale" not in after["models"]
    assert not any("/models/stale/" in k for k in after["keys"])
    assert (stale_run, "deleted") in after["runs"]
    # What the plan kept is as it was: the fresh version, its files, its run.
    assert ("fresh", fresh_v, REGISTRATION_PENDING) in after["versions"]
    assert f"root/acme/models/fresh/{fresh_v}/MLmodel" in after["keys"]
    assert (fresh_run, "active") in after["runs"]
    assert ("churn", str(live.version), None) in after["versions"]
    assert f"root/acme/models/churn/{live.version}/MLmodel" in after["keys"]

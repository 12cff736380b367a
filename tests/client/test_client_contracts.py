"""The client keeps to the contracts, the contracts keep to the routes, and neither pulls
the server in."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

from matih_ml.client import ClientConfig, MatihClient
from matih_ml.contracts import protocols
from matih_ml.contracts.protocols import CONTRACTS, SessionContract

# Every route of /api/v1 (and /readyz), and the contract methods that call it. A route
# added to the API without a method here fails test_every_route_has_a_contract_method.
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/api/v1/whoami"): ("session.whoami",),
    ("GET", "/readyz"): ("session.health",),
    ("GET", "/api/v1/models"): ("models.list",),
    ("POST", "/api/v1/models"): ("models.register", "models.upload"),
    ("GET", "/api/v1/models/{model_id}"): ("models.get",),
    ("DELETE", "/api/v1/models/{model_id}"): ("models.delete",),
    ("POST", "/api/v1/models/{model_id}/versions"): ("models.create_version",),
    ("GET", "/api/v1/models/{model_id}/versions"): ("models.list_versions",),
    ("GET", "/api/v1/models/{model_id}/versions/{version}"): ("models.get_version",),
    ("DELETE", "/api/v1/models/{model_id}/versions/{version}"): ("models.delete_version",),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/files"): (
        "models.list_files",
        "models.download",
    ),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/files/{path}"): (
        "models.read_file",
        "models.download",
    ),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/bom"): ("models.bom",),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/verification"): ("models.verify",),
    ("PUT", "/api/v1/models/{model_id}/stage"): ("lifecycle.transition",),
    ("POST", "/api/v1/models/{model_id}/rollback"): ("lifecycle.rollback",),
    ("GET", "/api/v1/models/{model_id}/history"): ("lifecycle.history",),
    ("GET", "/api/v1/models/{model_id}/production"): ("lifecycle.production_at",),
    ("POST", "/api/v1/models/{model_id}/versions/{version}/evaluations"): (
        "lifecycle.record_evaluation",
    ),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/evaluations"): (
        "lifecycle.list_evaluations",
    ),
    ("GET", "/api/v1/models/{model_id}/versions/{version}/gates"): ("lifecycle.gates",),
    ("POST", "/api/v1/models/{model_id}/versions/{version}/approvals"): ("approvals.request",),
    ("GET", "/api/v1/approvals"): ("approvals.list",),
    ("GET", "/api/v1/approvals/{approval_id}"): ("approvals.get",),
    ("POST", "/api/v1/approvals/{approval_id}/approve"): ("approvals.approve",),
    ("POST", "/api/v1/approvals/{approval_id}/reject"): ("approvals.reject",),
    ("GET", "/api/v1/policy"): ("policy.get",),
    ("PUT", "/api/v1/policy"): ("policy.set",),
    ("DELETE", "/api/v1/policy"): ("policy.clear",),
    ("GET", "/api/v1/models/{model_id}/policy"): ("policy.get",),
    ("PUT", "/api/v1/models/{model_id}/policy"): ("policy.set",),
    ("DELETE", "/api/v1/models/{model_id}/policy"): ("policy.clear",),
    ("GET", "/api/v1/experiments"): ("experiments.list",),
    ("GET", "/api/v1/experiments/compare"): ("experiments.compare",),
    ("GET", "/api/v1/experiments/{exp_id}"): ("experiments.get",),
    ("GET", "/api/v1/experiments/{exp_id}/runs"): ("experiments.list_runs",),
    ("POST", "/api/v1/runs"): ("runs.create",),
    ("GET", "/api/v1/runs/{run_id}"): ("runs.get",),
    ("POST", "/api/v1/runs/{run_id}/end"): ("runs.end",),
    ("POST", "/api/v1/runs/{run_id}/log-batch"): ("runs.log_batch",),
    ("POST", "/api/v1/runs/{run_id}/metrics:batch"): ("runs.log_metrics",),
    ("GET", "/api/v1/runs/{run_id}/metrics/{key}/history"): (
        "runs.metric_history",
        "runs.downsampled_history",
    ),
    ("GET", "/api/v1/runs/{run_id}/artifacts"): ("runs.list_artifacts",),
    ("PUT", "/api/v1/runs/{run_id}/artifacts/{path}"): ("runs.upload_artifact",),
    ("GET", "/api/v1/runs/{run_id}/artifacts/{path}"): ("runs.read_artifact",),
    ("POST", "/api/v1/runs/{run_id}/inputs"): ("runs.log_inputs",),
    ("GET", "/api/v1/lineage"): ("runs.lineage",),
    ("GET", "/api/v1/events"): ("events.feed",),
    ("GET", "/api/v1/events/schemas"): ("events.schemas",),
    ("POST", "/api/v1/training-jobs"): ("jobs.submit",),
    ("GET", "/api/v1/training-jobs"): ("jobs.list",),
    ("GET", "/api/v1/training-jobs/{job_id}"): ("jobs.get",),
    ("POST", "/api/v1/training-jobs/{job_id}/cancel"): ("jobs.cancel",),
    ("GET", "/api/v1/training-jobs/{job_id}/logs"): ("jobs.logs",),
    ("POST", "/api/v1/batch-jobs"): ("batch.submit",),
    ("GET", "/api/v1/batch-jobs"): ("batch.list",),
    ("GET", "/api/v1/batch-jobs/{job_id}"): ("batch.get",),
    ("POST", "/api/v1/batch-jobs/{job_id}/cancel"): ("batch.cancel",),
    ("GET", "/api/v1/batch-jobs/{job_id}/logs"): ("batch.logs",),
    ("POST", "/api/v1/models/{model_id}/predict"): ("serving.predict",),
    ("POST", "/api/v1/models/{model_id}/predict:batch"): ("serving.predict_batch",),
    ("GET", "/api/v1/models/{model_id}/serving"): ("serving.get_config",),
    ("PUT", "/api/v1/models/{model_id}/serving"): ("serving.set_config",),
    ("GET", "/api/v1/models/{model_id}/serving/summary"): ("serving.summary",),
    ("POST", "/api/v1/models/{model_id}/serving/evidence"): ("serving.record_evidence",),
    ("GET", "/api/v1/models/{model_id}/monitoring"): ("serving.monitoring",),
    ("POST", "/api/v1/webhooks"): ("webhooks.create",),
    ("GET", "/api/v1/webhooks"): ("webhooks.list",),
    ("GET", "/api/v1/webhooks/{webhook_id}"): ("webhooks.get",),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): ("webhooks.delete",),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): ("webhooks.deliveries",),
    ("POST", "/api/v1/keys"): ("keys.create",),
    ("GET", "/api/v1/keys"): ("keys.list",),
    ("DELETE", "/api/v1/keys/{key_id}"): ("keys.revoke",),
}

# Routes no tenant's client calls: liveness is for the orchestrator.
NOT_IN_CONTRACTS = {("GET", "/healthz")}

# What sub-clients add beyond their contract: helpers built on its methods.
EXTRAS = {
    "models": {"all"},
    "experiments": {"all", "all_runs"},
    "runs": {"all_points"},
    "events": {"all"},
    "jobs": {"all", "wait", "follow"},
    "batch": {"all", "wait", "follow"},
}

ALL_CONTRACTS = {"session": SessionContract, **CONTRACTS}


@pytest.fixture(scope="module")
def client():
    # Nothing is sent: building a client makes no request.
    with MatihClient(config=ClientConfig("http://127.0.0.1:9", "mk_0000000000000000_x")) as c:
        yield c


def _methods(cls: type) -> list[str]:
    return sorted(
        n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)
    )


def _part(client: MatihClient, domain: str):
    return client if domain == "session" else getattr(client, domain)


def test_every_route_has_a_contract_method() -> None:
    from matih_ml.api.app import create_app

    served = {
        (method.upper(), path)
        for path, ops in create_app().openapi()["paths"].items()
        for method in ops
    }
    assert served - NOT_IN_CONTRACTS == set(ROUTES), (
        "routes without a contract method: "
        f"{sorted(served - NOT_IN_CONTRACTS - set(ROUTES))}; "
        f"listed but not served: {sorted(set(ROUTES) - served)}"
    )
    named = {m for methods in ROUTES.values() for m in methods}
    declared = {f"{d}.{m}" for d, proto in ALL_CONTRACTS.items() for m in _methods(proto)}
    assert named == declared, (sorted(declared - named), sorted(named - declared))


@pytest.mark.parametrize("domain", sorted(ALL_CONTRACTS))
def test_each_sub_client_implements_its_contract(client, domain) -> None:
    proto = ALL_CONTRACTS[domain]
    part = _part(client, domain)
    assert isinstance(part, proto)
    impl_cls = type(part)
    for name in _methods(proto):
        want, got = getattr(proto, name), getattr(impl_cls, name)
        want_sig, got_sig = inspect.signature(want), inspect.signature(got)
        assert [(p.name, p.kind, p.default) for p in want_sig.parameters.values()] == [
            (p.name, p.kind, p.default) for p in got_sig.parameters.values()
        ], f"{domain}.{name}: {want_sig} != {got_sig}"
        # A helper in contracts.walk annotates self with its contract: not a parameter.
        got_hints = {k: v for k, v in typing.get_type_hints(got).items() if k != "self"}
        assert typing.get_type_hints(want) == got_hints, f"{domain}.{name}"
        assert got.__doc__, f"{domain}.{name} has no docstring"
    if domain != "session":
        inherited = {
            n
            for klass in impl_cls.__mro__
            if klass.__module__.startswith("matih_ml")
            for n, v in vars(klass).items()
            if not n.startswith("_") and inspect.isfunction(v)
        }
        extra = inherited - set(_methods(proto))
        assert extra == EXTRAS.get(domain, set()), f"{domain}: methods outside the contract"


def test_the_client_has_one_attribute_per_contract(client) -> None:
    for domain, proto in CONTRACTS.items():
        assert isinstance(getattr(client, domain), proto)
    assert set(CONTRACTS) == {
        n for n, v in vars(client).items() if not n.startswith("_") and n != "config"
    }


def test_the_contract_policy_is_the_registrys_policy() -> None:
    # One definition (matih_ml.gate_policy): what the API accepts is what the gates read.
    from matih_ml.contracts.policy import Policy
    from matih_ml.registry.policy import Policy as RegistryPolicy

    assert Policy is RegistryPolicy


def test_contracts_and_client_import_no_server_layer() -> None:
    code = (
        "import sys, matih_ml.client, matih_ml.contracts.protocols\n"
        "heavy = ('fastapi', 'starlette', 'mlflow', 'sqlalchemy', 'uvicorn')\n"
        "ours = ('matih_ml.api', 'matih_ml.cli', 'matih_ml.services', 'matih_ml.registry',"
        " 'matih_ml.store', 'matih_ml.tracking', 'matih_ml.serving')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy"
        " or any(m == o or m.startswith(o + '.') for o in ours)]\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_the_protocols_module_lists_every_contract() -> None:
    defined = {
        v
        for v in vars(protocols).values()
        if isinstance(v, type) and getattr(v, "_is_protocol", False)
    }
    assert defined - {typing.Protocol} == set(ALL_CONTRACTS.values())

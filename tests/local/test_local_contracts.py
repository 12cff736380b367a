"""The in-process doors keep to the same contracts as the HTTP client, with the same
names, parameters, defaults and types, and bind the caller's tenant and roles."""

from __future__ import annotations

import inspect
import typing

import pytest

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.protocols import CONTRACTS, SessionContract
from matih_ml.errors import ForbiddenError, NotFoundError
from matih_ml.local import LocalClient, operator_principal

ALL_CONTRACTS = {"session": SessionContract, **CONTRACTS}

# A whole batch-scoring job body: a case changes one field of it.
BATCH_JOB = {"model": "m", "input": {"path": "in.parquet"}, "output": {"path": "out.parquet"}}

# Helpers built on the contracts (matih_ml.contracts.walk), the same as the client's.
EXTRAS = {
    "models": {"all"},
    "experiments": {"all", "all_runs"},
    "runs": {"all_points"},
    "events": {"all"},
    "jobs": {"all", "wait", "follow"},
    "batch": {"all", "wait", "follow"},
}


def principal(tenant: str, *roles: Role, owner: str = "someone") -> Principal:
    return Principal(
        tenant_id=tenant, subject=f"key-{owner}", roles=frozenset(roles), via="test", owner=owner
    )


def _methods(cls: type) -> list[str]:
    return sorted(
        n
        for klass in cls.__mro__
        if klass is not object and klass.__module__.startswith("matih_ml")
        for n, v in vars(klass).items()
        if not n.startswith("_") and inspect.isfunction(v)
    )


def _own(cls: type) -> list[str]:
    return sorted(
        n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)
    )


@pytest.mark.parametrize("domain", sorted(ALL_CONTRACTS))
def test_each_local_door_implements_its_contract(services, domain) -> None:
    ml = LocalClient(services, operator_principal("nobody"))
    part = ml if domain == "session" else getattr(ml, domain)
    proto = ALL_CONTRACTS[domain]
    assert isinstance(part, proto)
    impl_cls = type(part)
    for name in _own(proto):
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
        extra = set(_methods(impl_cls)) - set(_own(proto))
        assert extra == EXTRAS.get(domain, set()), f"{domain}: methods outside the contract"


def test_the_local_client_has_the_http_clients_shape(services) -> None:
    from matih_ml.client import MatihClient

    local = {n for n, v in vars(LocalClient).items() if not n.startswith("_")}
    remote = {n for n, v in vars(MatihClient).items() if not n.startswith("_")}
    assert set(CONTRACTS) <= local
    assert remote - {"config"} <= local | set(CONTRACTS)


def test_an_operator_needs_a_tenant_that_exists(services) -> None:
    with pytest.raises(NotFoundError):
        LocalClient.operator(services, "no-such-tenant-here")


def test_policy_binds_the_tenant_and_checks_the_role(services, tenant, other_tenant) -> None:
    admin = LocalClient(services, principal(tenant, Role.ADMIN)).policy
    viewer = LocalClient(services, principal(tenant, Role.VIEWER)).policy
    other = LocalClient(services, principal(other_tenant, Role.ADMIN)).policy

    assert viewer.get().source == "default"
    strict = Policy.model_validate({"production": {"require_evaluation": True}})
    with pytest.raises(ForbiddenError):
        viewer.set(strict)
    stored = admin.set(strict)
    assert stored.source == "tenant"
    assert viewer.get().policy.production.require_evaluation is True
    assert other.get().source == "default"  # B's admin sees its own default, not A's
    with pytest.raises(ForbiddenError):
        viewer.clear()
    admin.clear()
    assert viewer.get().source == "default"
    with pytest.raises(NotFoundError):
        admin.get("no-such-model")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda ml: ml.lifecycle.transition("m", 1, "staging", reason="r" * 5001), "reason"),
        (lambda ml: ml.lifecycle.rollback("m", reason="r" * 5001), "reason"),
        (lambda ml: ml.approvals.request("m", 1, comment="c" * 5001), "comment"),
        (lambda ml: ml.approvals.approve(1, reason="r" * 5001), "reason"),
        (lambda ml: ml.webhooks.create("http://h/", event_types=["x"] * 21), "event_types"),
        (lambda ml: ml.keys.create("viewer", name="n" * 129), "name"),
        (lambda ml: ml.serving.set_config("m", "ab", ab_share=2.0), "ab_share"),
        (lambda ml: ml.events.feed(limit=0), "limit"),
        (lambda ml: ml.jobs.logs("job_0123456789abcdef", limit=0), "limit"),
        (lambda ml: ml.batch.logs("job_0123456789abcdef", after=-1), "after"),
        (lambda ml: ml.batch.list(limit=501), "limit"),
        (lambda ml: ml.batch.list(page_token="x"), "page_token"),
        (lambda ml: ml.batch.submit({**BATCH_JOB, "batch_size": 0}), "batch_size"),
    ],
)
def test_the_rest_bodys_limits_hold_in_process_before_anything_is_read(
    services, tenant, call, field
) -> None:
    from matih_ml.errors import ValidationError

    ml = LocalClient(services, principal(tenant, Role.ADMIN))
    with pytest.raises(ValidationError) as refused:
        call(ml)
    details = refused.value.details or {}
    named = [p["field"] for p in details.get("problems", [])] or [details.get("field")]
    assert field in named[0], (refused.value.message, details)

"""The lifecycle and approvals doors in process: the same moves, gates, four eyes and
record as the REST routes (which call them), bound to the caller's tenant and roles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.policy import Policy
from matih_ml.contracts.schemas import (
    ApprovalRead,
    EvaluationRead,
    GateEvidenceRead,
    ModelRead,
    MoveRead,
    Page,
    ProductionAt,
)
from matih_ml.errors import (
    ConflictError,
    ForbiddenError,
    GateFailedError,
    NotFoundError,
    ValidationError,
)
from matih_ml.local import LocalClient


def door(services, tenant: str, role: Role, owner: str = "alice") -> LocalClient:
    who = Principal(
        tenant_id=tenant,
        subject=f"{role.value}-key-of-{owner}",
        roles=frozenset({role}),
        via="test",
        owner=owner,
    )
    return LocalClient(services, who)


def register(services, tenant: str, sk_model, xy, name: str = "churn") -> str:
    x, _ = xy
    _, mv = services.registry.register_model_version(
        tenant, name, sk_model, "sklearn", {"accuracy": 0.9}, {}, input_example=x[:2]
    )
    return mv.version


def stage_of(services, tenant: str, version: str, name: str = "churn") -> str:
    return services.lifecycle.stage(tenant, name, version).value


def test_moves_go_through_the_gates_and_are_recorded(services, open_gates, sk_model, xy):
    tenant = open_gates
    v = register(services, tenant, sk_model, xy)
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)

    with pytest.raises(ForbiddenError):
        viewer.lifecycle.transition("churn", v, "staging")
    assert stage_of(services, tenant, v) == "development"
    assert viewer.lifecycle.history("churn").items == []

    md = editor.lifecycle.transition("churn", v, "staging", reason="looks good")
    assert isinstance(md, ModelRead)
    assert md.stage == "staging"
    md = editor.lifecycle.transition("churn", int(v), "production")
    assert (md.stage, md.current_version) == ("production", v)

    moves = viewer.lifecycle.history("churn")
    assert isinstance(moves, Page)
    assert all(isinstance(m, MoveRead) for m in moves.items)
    assert [(m.from_stage, m.to_stage, m.actor, m.forced) for m in moves.items] == [
        ("development", "staging", "editor-key-of-alice", False),
        ("staging", "production", "editor-key-of-alice", False),
    ]
    assert moves.items[0].reason == "looks good"

    now = viewer.lifecycle.production_at("churn")
    assert isinstance(now, ProductionAt)
    assert (now.model_id, now.version) == ("churn", v)
    # A time without a zone is UTC, as over REST.
    early = viewer.lifecycle.production_at("churn", datetime(2000, 1, 1))
    assert (early.version, early.at) == (None, datetime(2000, 1, 1, tzinfo=UTC))

    with pytest.raises(ConflictError):
        editor.lifecycle.transition("churn", v, "staging")


def test_forcing_needs_an_admin_and_a_reason(services, tenant, sk_model, xy) -> None:
    v = register(services, tenant, sk_model, xy)
    editor = door(services, tenant, Role.EDITOR)
    admin = door(services, tenant, Role.ADMIN)
    editor.lifecycle.transition("churn", v, "staging")
    # The default policy wants an approval before production.
    with pytest.raises(GateFailedError) as refused:
        editor.lifecycle.transition("churn", v, "production")
    assert refused.value.details["reasons"]
    with pytest.raises(ForbiddenError):
        editor.lifecycle.transition("churn", v, "production", reason="x", force=True)
    with pytest.raises(ValidationError):
        admin.lifecycle.transition("churn", v, "production", force=True)
    assert stage_of(services, tenant, v) == "staging"

    md = admin.lifecycle.transition("churn", v, "production", reason="incident 42", force=True)
    assert md.stage == "production"
    last = admin.lifecycle.history("churn").items[-1]
    assert (last.to_stage, last.forced, last.reason, last.actor) == (
        "production",
        True,
        "incident 42",
        "admin-key-of-alice",
    )
    gates = admin.lifecycle.gates("churn", v).items
    assert [(g.gate, g.passed) for g in gates][-1] == ("production", False)


def test_rollback_puts_the_previous_version_back(services, open_gates, sk_model, xy) -> None:
    tenant = open_gates
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)
    with pytest.raises(NotFoundError):
        editor.lifecycle.rollback("churn")
    versions = [register(services, tenant, sk_model, xy) for _ in range(2)]
    with pytest.raises(ConflictError):
        editor.lifecycle.rollback("churn")
    for v in versions:
        editor.lifecycle.transition("churn", v, "staging")
        editor.lifecycle.transition("churn", v, "production")

    with pytest.raises(ForbiddenError):
        viewer.lifecycle.rollback("churn")
    assert stage_of(services, tenant, versions[1]) == "production"

    md = editor.lifecycle.rollback("churn", reason="bad v2")
    assert (md.current_version, md.stage) == (versions[0], "production")
    assert stage_of(services, tenant, versions[1]) == "development"
    assert viewer.lifecycle.history("churn").items[-1].reason == "bad v2"


def test_evaluations_and_gate_evidence(services, tenant, sk_model, xy) -> None:
    v = register(services, tenant, sk_model, xy)
    editor = door(services, tenant, Role.EDITOR)
    viewer = door(services, tenant, Role.VIEWER)

    with pytest.raises(ForbiddenError):
        viewer.lifecycle.record_evaluation("churn", v, kind="shadow", passed=True)
    assert viewer.lifecycle.list_evaluations("churn", v).items == []

    e = editor.lifecycle.record_evaluation(
        "churn", v, kind="shadow", passed=True, metrics={"agreement": 0.98}, notes="a week"
    )
    assert isinstance(e, EvaluationRead)
    assert (e.kind, e.passed, e.metrics, e.notes, e.recorded_by) == (
        "shadow",
        True,
        {"agreement": 0.98},
        "a week",
        "editor-key-of-alice",  # evidence is recorded by the key, as over REST
    )
    with pytest.raises(ValidationError):
        editor.lifecycle.record_evaluation("churn", v, kind="canary", passed=True)  # type: ignore[arg-type]
    listed = viewer.lifecycle.list_evaluations("churn", v).items
    assert [x.id for x in listed] == [e.id]

    strict = Policy.model_validate(
        {"staging": {"required_metrics": [{"metric": "accuracy", "op": ">=", "value": 0.95}]}}
    )
    services.lifecycle.policies.set(tenant, strict)
    with pytest.raises(GateFailedError):
        editor.lifecycle.transition("churn", v, "staging")
    gates = viewer.lifecycle.gates("churn", v)
    assert all(isinstance(g, GateEvidenceRead) for g in gates.items)
    assert [(g.gate, g.passed, g.reasons) for g in gates.items] == [
        ("staging", False, ["accuracy 0.9 is not >= 0.95"])
    ]


def test_approvals_with_four_eyes_on_owners(services, tenant, sk_model, xy) -> None:
    v = register(services, tenant, sk_model, xy)
    alice = door(services, tenant, Role.EDITOR, owner="alice")
    alices_admin_key = door(services, tenant, Role.ADMIN, owner="alice")
    bob = door(services, tenant, Role.APPROVER, owner="bob")
    viewer = door(services, tenant, Role.VIEWER, owner="carol")

    with pytest.raises(ConflictError):  # only a staging version can be put up
        alice.approvals.request("churn", v)
    alice.lifecycle.transition("churn", v, "staging")
    with pytest.raises(ForbiddenError):
        viewer.approvals.request("churn", v)
    assert viewer.approvals.list().items == []

    req = alice.approvals.request("churn", v, comment="please")
    assert isinstance(req, ApprovalRead)
    assert (req.status, req.requested_by, req.comment) == ("pending", "alice", "please")
    # A second request for the same version is the pending one.
    assert alice.approvals.request("churn", v).id == req.id

    # Four eyes compares owners: alice's other key (an admin's) is still alice.
    with pytest.raises(ForbiddenError, match="four eyes"):
        alices_admin_key.approvals.approve(req.id)
    with pytest.raises(ForbiddenError):  # an editor may not approve at all
        alice.approvals.approve(req.id)
    with pytest.raises(ValidationError):
        bob.approvals.reject(req.id)
    assert viewer.approvals.get(req.id).status == "pending"

    done = bob.approvals.approve(req.id, reason="ok")
    assert (done.status, done.decided_by, done.reason) == ("approved", "bob", "ok")
    with pytest.raises(ConflictError):
        bob.approvals.reject(req.id, reason="too late")
    assert [a.id for a in viewer.approvals.list(status="approved", model_id="churn").items] == [
        req.id
    ]
    assert viewer.approvals.list(status="pending").items == []

    alice.lifecycle.transition("churn", v, "production")
    assert viewer.approvals.get(req.id).status == "applied"


def test_another_tenant_reaches_nothing(services, tenant, other_tenant, sk_model, xy) -> None:
    v = register(services, tenant, sk_model, xy)
    door(services, tenant, Role.EDITOR).lifecycle.transition("churn", v, "staging")
    req = door(services, tenant, Role.EDITOR).approvals.request("churn", v)
    other = door(services, other_tenant, Role.ADMIN, owner="mallory")

    for call in (
        lambda: other.lifecycle.transition("churn", v, "production", reason="x", force=True),
        lambda: other.lifecycle.rollback("churn"),
        lambda: other.lifecycle.history("churn"),
        lambda: other.lifecycle.production_at("churn"),
        lambda: other.lifecycle.record_evaluation("churn", v, kind="ab", passed=True),
        lambda: other.lifecycle.list_evaluations("churn", v),
        lambda: other.lifecycle.gates("churn", v),
        lambda: other.approvals.request("churn", v),
        lambda: other.approvals.get(req.id),
        lambda: other.approvals.approve(req.id),
        lambda: other.approvals.reject(req.id, reason="no"),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert other.approvals.list().items == []
    assert stage_of(services, tenant, v) == "staging"
    assert door(services, tenant, Role.VIEWER).approvals.get(req.id).status == "pending"

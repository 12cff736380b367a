"""``matih-ml approvals``: four-eyes approvals of staging versions for production.

Against a server, the key's owner asks or decides. With ``--local`` the operator does
(owner ``operator:<login>``), and four eyes still holds: a request an operator made
needs someone else's decision.
"""

from __future__ import annotations

from typing import Annotated

import typer

from matih_ml.cli.output import JsonOpt, emit, handles_errors
from matih_ml.cli.target import Target, targeted

approvals_app = typer.Typer(help="Approvals for production.", no_args_is_help=True)

_COLUMNS = ("id", "model_id", "version", "status", "requested_by", "decided_by", "reason")


@approvals_app.command("list")
@handles_errors
@targeted
def approvals_list(
    status: Annotated[str | None, typer.Option(help="pending, approved or rejected.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="One model's.")] = None,
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """The tenant's approval requests."""
    with target.doors() as ml:
        items = ml.approvals.list(status=status, model_id=model).items  # type: ignore[arg-type]
    emit(items, _COLUMNS, as_json, "Approvals")


@approvals_app.command("request")
@handles_errors
@targeted
def approvals_request(
    model_id: str,
    version: str,
    comment: Annotated[str, typer.Option(help="For the approver.")] = "",
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Ask for a staging version to be approved for production."""
    with target.doors() as ml:
        found = ml.approvals.request(model_id, version, comment=comment)
    emit(found, _COLUMNS, as_json, "Approval requested")


@approvals_app.command("approve")
@handles_errors
@targeted
def approvals_approve(
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Approve a request (approvers and admins; not the requester)."""
    with target.doors() as ml:
        found = ml.approvals.approve(approval_id, reason=reason)
    emit(found, _COLUMNS, as_json, "Approved")


@approvals_app.command("reject")
@handles_errors
@targeted
def approvals_reject(
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    as_json: JsonOpt = False,
    *,
    target: Target,
) -> None:
    """Reject a request."""
    with target.doors() as ml:
        found = ml.approvals.reject(approval_id, reason=reason)
    emit(found, _COLUMNS, as_json, "Rejected")

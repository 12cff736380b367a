"""Server-wide MLflow operations, answered for the caller's tenant alone.

MLflow's own views list every workspace of the server (every tenant's name) and proxy
the UI's gateway calls to a deployments server; here a key sees its own workspace only,
and nothing is proxied.
"""

from __future__ import annotations

from flask import jsonify, request
from mlflow.protos.service_pb2 import GetWorkspace, ListWorkspaces
from mlflow.server.handlers import _wrap_response

from matih_ml.api.mlflow.door import Call
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated


def _own(call: Call):  # noqa: ANN202 - MLflow's Workspace
    with translated(f"Workspace {call.tenant!r}"):
        return call.services.backend.client.get_workspace(call.tenant)


def list_workspaces(call: Call) -> object:
    """``GET workspaces``: the caller's own workspace."""
    response = ListWorkspaces.Response()
    response.workspaces.extend([_own(call).to_proto()])
    return _wrap_response(response)


def get_workspace(call: Call, workspace_name: str) -> object:
    """``GET workspaces/<name>``: the caller's own, or not found."""
    if workspace_name != call.tenant:
        raise NotFoundError(f"Workspace {workspace_name[:80]!r} not found.")
    response = GetWorkspace.Response()
    response.workspace.MergeFrom(_own(call).to_proto())
    return _wrap_response(response)


def gateway_proxy(call: Call) -> object:
    """The UI's gateway calls: no gateway endpoints, and nothing proxied."""
    if request.method != "GET":
        raise ValidationError("MLflow's AI gateway is not part of matih-ml.")
    return jsonify({"endpoints": []})


def graphql(call: Call) -> object:
    """``graphql``: a POSTed JSON query; MLflow's view fails with a 500 on anything else."""
    from graphql import GraphQLError, parse
    from mlflow.server import handlers

    body = request.get_json(silent=True) if request.method == "POST" else None
    query = body.get("query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        raise ValidationError(
            "GraphQL takes a POST with a JSON body holding a 'query' string.",
            details={"field": "query"},
        )
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise ValidationError("'variables' must be an object.", details={"field": "variables"})
    try:
        parse(query)
    except GraphQLError as exc:
        raise ValidationError(
            f"The GraphQL query does not parse: {exc.message}", details={"field": "query"}
        ) from None
    return handlers._graphql()


OPS = {
    "_graphql": graphql,
    "_list_workspaces_handler": list_workspaces,
    "_get_workspace_handler": get_workspace,
    "serve_gateway_proxy": gateway_proxy,
}

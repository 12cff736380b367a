"""The MLflow door keeps tenants apart and roles enforced, on every route of MLflow's.

The routes are MLflow's own (its Flask app's ``url_map``), not a list kept here, so a
route MLflow adds or renames fails these tests until :mod:`matih_ml.api.mlflow.access`
classifies it. Against a real ``matih-ml serve``:

- tenant A (``acme``) writes an experiment, a run with params, metrics, tags and a file,
  a logged model, a registered model with a version, tags and a free alias, in the order a
  stock MLflow client sends them;
- tenant B's admin key (``globex``; an admin, so that roles do not hide a leak) sends
  every route, with A's ids, names and paths filled in as A itself would send them, then
  with Basic auth, then naming A's workspace in ``X-MLflow-Workspace``: B gets nothing of
  A's, and A's state is the same before and after;
- B aims paths that climb out of its artifact prefix, and A's physical locations as
  sources, at A's files: each is refused (4xx, never a 500);
- A's viewer key is refused every write with 403 ``PERMISSION_DENIED``, and reads;
- no credential is 401 in MLflow's format with a Basic challenge, on every route.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.server import app as mlflow_app

from conftest import ServeProcess, embedded_settings
from matih_ml.api.mlflow import access, routes
from matih_ml.auth.principal import Permission

pytestmark = pytest.mark.slow

A, B = "acme", "globex"

# A's names: each is unique to A's objects, none is a part of another or of B's.
NAMES = {
    "experiment": "churn-exp-q7x",
    "run_name": "nightly-run-q7x",
    "metric": "auc_q7x",
    "param": "alpha_q7x",
    "tag": "team_q7x",
    "exp_tag": "exp_note_q7x",
    "file": "report-q7x.txt",
    "folder": "reports",
    "logged": "clf_q7x",
    "lm_tag": "lm_note_q7x",
    "lm_param": "lm_depth_q7x",
    "model": "churn-model-q7x",
    "rm_tag": "rm_note_q7x",
    "mv_tag": "mv_note_q7x",
    "alias": "champ_q7x",
}
# Values only A ever sends: no request of B's or the viewer's carries them.
SECRETS = {
    "secret_param": "zz-param-secret",
    "secret_tag": "zz-run-tag-secret",
    "secret_exp_tag": "zz-exp-tag-secret",
    "secret_file": "zz-file-secret",
    "secret_lm_tag": "zz-lm-tag-secret",
    "secret_lm_param": "zz-lm-param-secret",
    "secret_model_desc": "zz-model-desc-secret",
    "secret_rm_tag": "zz-rm-tag-secret",
    "secret_version_desc": "zz-version-desc-secret",
    "secret_mv_tag": "zz-mv-tag-secret",
    "secret_dataset": "zz-dataset-secret",
    "secret_lm_file": "zz-lm-file-secret.json",
    "secret_tenant": "zz-tenant-description-secret",
}
# A's metric values (as JSON shows them): B's requests log other values.
METRIC_STEPS = 5
METRIC_VALUES = [271828.5 + s for s in range(METRIC_STEPS)]
SECRET_TEXTS = [*SECRETS.values(), *(repr(v) for v in METRIC_VALUES)]

# ---------------------------------------------------------------- MLflow's route table


@dataclass(frozen=True, order=True)
class Route:
    """One rule of MLflow's url_map with one of its methods."""

    path: str
    method: str
    endpoint: str


def mlflow_routes() -> list[Route]:
    """Every (rule, method) of MLflow's Flask app."""
    return sorted(
        Route(rule.rule, method, rule.endpoint)
        for rule in mlflow_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def routed_to_door(path: str) -> bool:
    """Whether routes.py sends ``path`` (a rule's template) to the door."""
    return path.startswith(routes.PREFIXES) or path in routes.EXACT


def door_routes() -> list[Route]:
    """The routes the door serves (MLflow's pages and files are not the protocol)."""
    return [
        r
        for r in mlflow_routes()
        if r.endpoint not in access.NOT_PROTOCOL and routed_to_door(r.path)
    ]


# What a request puts in a rule's path arguments, by argument name. Unknown ones (of
# endpoints the door refuses whatever they name) get "1".
PATH_ARGS = {
    "model_id": "{model_id}",
    "tag_key": "{lm_tag}",
    "artifact_path": "{artifact}",
    "workspace_name": A,
}


def url_of(path: str, ids: dict[str, str], args: dict[str, str] | None = None) -> str:
    def arg(m: re.Match) -> str:
        name = m.group(1)
        return fill((args or {}).get(name) or PATH_ARGS.get(name, "1"), ids)

    return re.sub(r"<(?:\w+:)?(\w+)>", arg, path)


def fill(obj: Any, ids: dict[str, str]) -> Any:
    """``obj`` with ``{name}`` replaced by A's ids and names (other braces are kept)."""
    if isinstance(obj, str):
        for k, v in ids.items():
            obj = obj.replace("{" + k + "}", v)
        return obj
    if isinstance(obj, dict):
        return {k: fill(v, ids) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fill(v, ids) for v in obj]
    return obj


# ---------------------------------------------------------------- A's requests, per endpoint

# For every endpoint the door lets someone call: the requests A itself would send to
# reach A's objects ("query" for GET, "json" or "content" otherwise, "args" for path
# arguments). Every variant is sent on every path and method of the endpoint.
_RUN = {"run_id": "{run}"}
_MV = {"name": "{model}", "version": "1"}
_GQL_RUN = (
    'query { mlflowGetRun(input: {runId: "{run}"}) { run { info { runId runName '
    "experimentId artifactUri } data { params { key value } tags { key value } metrics "
    "{ key value } } experiment { name tags { key value } } modelVersions { name version "
    "description } } } }"
)
SPECS: dict[str, list[dict[str, Any]]] = {
    # Reads.
    "_get_experiment_by_name": [{"query": {"experiment_name": "{experiment}"}}],
    "_search_experiments": [
        {"query": {"max_results": "100", "view_type": "ALL"}},
        {"json": {"max_results": 100, "view_type": "ALL"}},
    ],
    "_get_experiment": [{"query": {"experiment_id": "{exp}"}}],
    "_get_run": [{"query": _RUN}],
    "_search_runs": [{"json": {"experiment_ids": ["{exp}"], "run_view_type": "ALL"}}],
    "_list_artifacts": [{"query": _RUN}, {"query": {**_RUN, "path": "{folder}"}}],
    "_get_metric_history": [{"query": {**_RUN, "metric_key": "{metric}"}}],
    "get_metric_history_bulk_interval_handler": [
        {"query": {"run_ids": "{run}", "metric_key": "{metric}"}}
    ],
    "serve_get_metric_history_bulk_interval": [
        {"query": {"run_ids": "{run}", "metric_key": "{metric}"}}
    ],
    "serve_get_metric_history_bulk": [{"query": {"run_id": "{run}", "metric_key": "{metric}"}}],
    "_get_logged_model": [{}],
    "_search_logged_models": [{"json": {"experiment_ids": ["{exp}"]}}],
    "_list_logged_model_artifacts": [{}],
    "serve_get_logged_model_artifact": [{"query": {"artifact_file_path": "MLmodel"}}],
    "_get_registered_model": [{"query": {"name": "{model}"}}],
    "_search_registered_models": [{"query": {"max_results": "100"}}],
    "_get_latest_versions": [{"query": {"name": "{model}"}}, {"json": {"name": "{model}"}}],
    "_get_model_version": [{"query": _MV}],
    "_search_model_versions": [
        {"query": {"filter": "name='{model}'"}},
        {"query": {"filter": "run_id='{run}'"}},
    ],
    "_get_model_version_download_uri": [{"query": _MV}],
    "_get_model_version_by_alias": [{"query": {"name": "{model}", "alias": "{alias}"}}],
    "_download_artifact": [
        {},
        {"args": {"artifact_path": "{exp}/models/{model_id}/artifacts/MLmodel"}},
        {"args": {"artifact_path": "models/{model}/1/MLmodel"}},  # the registry's copy
    ],
    "_list_artifacts_mlflow_artifacts": [
        {"query": {"path": "{exp}/{run}/artifacts/{folder}"}},
        {"query": {"path": "{exp}/models/{model_id}/artifacts"}},
        {"query": {"path": "{exp}"}},
        {"query": {"path": "models/{model}/1"}},
        {},
    ],
    "serve_artifacts": [{"query": {**_RUN, "path": "{folder}/{file}"}}],
    "serve_model_version_artifact": [{"query": {**_MV, "path": "MLmodel"}}],
    "_get_server_info": [{}],
    "_list_workspaces_handler": [{}],
    "_get_workspace_handler": [{}],
    "serve_get_ui_telemetry": [{}],
    "serve_post_ui_telemetry": [{"json": {"records": []}}],
    "_graphql": [
        {"json": {"query": _GQL_RUN}},
        {
            "json": {
                "query": 'query { mlflowGetExperiment(input: {experimentId: "{exp}"}) '
                "{ experiment { name tags { key value } } } }"
            }
        },
        {
            "json": {
                "query": "query { mlflowSearchModelVersions(input: {filter: \"name='{model}'\"}) "
                "{ modelVersions { name version description } } }"
            }
        },
        {
            "json": {
                "query": 'query { mlflowListArtifacts(input: {runId: "{run}"}) { files { path } } }'
            }
        },
        {
            "json": {
                "query": "query { mlflowGetMetricHistoryBulkInterval(input: "
                '{runIds: ["{run}"], metricKey: "{metric}"}) { metrics { key value step } } }'
            }
        },
        {
            "json": {
                "query": 'mutation { mlflowSearchRuns(input: {experimentIds: ["{exp}"]}) '
                "{ runs { info { runId runName } data { params { key value } } } } }"
            }
        },
        {
            "json": {
                "query": 'mutation { mlflowSearchDatasets(input: {experimentIds: ["{exp}"]}) '
                "{ datasetSummaries { experimentId name digest context } } }"
            }
        },
    ],
    "serve_search_datasets": [{"json": {"experiment_ids": ["{exp}"]}}],
    "serve_gateway_proxy": [{"query": {"gateway_path": "api/2.0/endpoints/"}}],
    # Writes.
    "_create_experiment": [{"json": {"name": "{experiment}"}}],
    "_delete_experiment": [{"json": {"experiment_id": "{exp}"}}],
    "_restore_experiment": [{"json": {"experiment_id": "{exp}"}}],
    "_update_experiment": [{"json": {"experiment_id": "{exp}", "new_name": "renamed-by-x"}}],
    "_set_experiment_tag": [
        {"json": {"experiment_id": "{exp}", "key": "{exp_tag}", "value": "overwritten"}}
    ],
    "_delete_experiment_tag": [{"json": {"experiment_id": "{exp}", "key": "{exp_tag}"}}],
    "_create_run": [{"json": {"experiment_id": "{exp}", "run_name": "intruder-run"}}],
    "_update_run": [
        {"json": {**_RUN, "status": "KILLED", "end_time": 1}},
        {"json": {**_RUN, "run_name": "renamed-by-x"}},
    ],
    "_delete_run": [{"json": _RUN}],
    "_restore_run": [{"json": _RUN}],
    "_log_metric": [
        {"json": {**_RUN, "key": "{metric}", "value": 0.0, "timestamp": 1, "step": 99}},
        {"json": {**_RUN, "key": "{metric}", "value": "NaN", "timestamp": 1, "step": 98}},
    ],
    "_log_param": [{"json": {**_RUN, "key": "new_param", "value": "x"}}],
    "_log_batch": [
        # Metrics alone (the door's own parse), then with params and tags (MLflow's).
        {
            "json": {
                **_RUN,
                "metrics": [{"key": "{metric}", "value": 0.0, "timestamp": 1, "step": 97}],
            }
        },
        {
            "json": {
                **_RUN,
                "metrics": [{"key": "{metric}", "value": 0.0, "timestamp": 1, "step": 99}],
                "params": [{"key": "new_param", "value": "x"}],
                "tags": [{"key": "{tag}", "value": "overwritten"}],
            }
        },
    ],
    "_log_model": [
        {
            "json": {
                **_RUN,
                "model_json": json.dumps(
                    {
                        "artifact_path": "intruder",
                        "flavors": {},
                        "utc_time_created": "2026-01-01 00:00:00.000000",
                        "run_id": "{run}",
                    }
                ),
            }
        }
    ],
    "_log_inputs": [
        {
            "json": {
                **_RUN,
                "datasets": [
                    {
                        "dataset": {
                            "name": "intruder-data",
                            "digest": "abc",
                            "source_type": "local",
                            "source": '{"uri": "x"}',
                        }
                    }
                ],
            }
        }
    ],
    "_log_outputs": [{"json": {**_RUN, "models": [{"model_id": "{model_id}", "step": 0}]}}],
    "_set_tag": [{"json": {**_RUN, "key": "{tag}", "value": "overwritten"}}],
    "_delete_tag": [{"json": {**_RUN, "key": "{tag}"}}],
    "_create_logged_model": [
        {"json": {"experiment_id": "{exp}", "name": "intruder", "source_run_id": "{run}"}}
    ],
    "_finalize_logged_model": [
        {"json": {"model_id": "{model_id}", "status": "LOGGED_MODEL_UPLOAD_FAILED"}}
    ],
    "_delete_logged_model": [{}],
    "_set_logged_model_tags": [{"json": {"tags": [{"key": "{lm_tag}", "value": "overwritten"}]}}],
    "_delete_logged_model_tag": [{}],
    "_log_logged_model_params": [
        {"json": {"model_id": "{model_id}", "params": [{"key": "new_param", "value": "x"}]}}
    ],
    "_create_registered_model": [{"json": {"name": "{model}"}}],
    "_update_registered_model": [{"json": {"name": "{model}", "description": "overwritten"}}],
    "_create_model_version": [
        {
            "json": {
                "name": "{model}",
                "source": "models:/{model_id}",
                "run_id": "{run}",
                "model_id": "{model_id}",
            }
        },
        {"json": {"name": "{model}", "source": "runs:/{run}/{logged}", "run_id": "{run}"}},
    ],
    "_update_model_version": [{"json": {**_MV, "description": "overwritten"}}],
    "_transition_stage": [
        {"json": {**_MV, "stage": stage, "archive_existing_versions": False}}
        for stage in ("Staging", "Production", "Archived", "None")
    ],
    "_set_registered_model_tag": [
        {"json": {"name": "{model}", "key": "{rm_tag}", "value": "overwritten"}}
    ],
    "_set_model_version_tag": [{"json": {**_MV, "key": "{mv_tag}", "value": "overwritten"}}],
    "_delete_registered_model_tag": [{"json": {"name": "{model}", "key": "{rm_tag}"}}],
    "_delete_model_version_tag": [{"json": {**_MV, "key": "{mv_tag}"}}],
    "_set_registered_model_alias": [
        {"json": {**_MV, "alias": alias}} for alias in ("{alias}", "other_alias", "production")
    ],
    "_delete_registered_model_alias": [
        {"json": {"name": "{model}", "alias": alias}} for alias in ("{alias}", "staging")
    ],
    "_upload_artifact": [
        {"content": b"overwritten"},
        {"content": b"new", "args": {"artifact_path": "{exp}/{run}/artifacts/intruder.txt"}},
        {"content": b"new", "args": {"artifact_path": "{exp}/models/{model_id}/artifacts/MLmodel"}},
    ],
    "_delete_artifact_mlflow_artifacts": [
        {},
        {"args": {"artifact_path": "{exp}/{run}/artifacts/{folder}"}},
    ],
    # Admin.
    "_delete_registered_model": [{"json": {"name": "{model}"}}],
    "_delete_model_version": [{"json": _MV}],
}

# A's own reads that are not answered 200, and why.
READ_STATUS = {
    # The UI's gateway proxy lists no endpoints (GET) and proxies nothing (POST).
    ("POST", "serve_gateway_proxy"): 400,
    # GraphQL takes a POSTed JSON query (MLflow's own view answered a GET with a 500).
    ("GET", "_graphql"): 400,
}

# What B's admin gets for A's requests: an answer of its own (200) or "not found" (404),
# as if A did not exist, never "forbidden" (which would tell that something is there).
# Writes to A's objects are 404 (so each request was well formed and reached the lookup);
# the door's refusals are their own status, whoever asks.
B_STATUS: dict[str, set[int]] = {
    # Reserved aliases are refused before any lookup, whichever model is named.
    "_delete_registered_model_alias": {404, 409},
    "serve_gateway_proxy": {200, 400},
    "_graphql": {200, 400},
    # B's own objects under A's names (and again, on the second path of the route).
    "_create_experiment": {200, 400},
    "_create_registered_model": {200, 400},
}


def b_status(endpoint: str) -> set[int]:
    rule = access.rule_of(endpoint)
    if isinstance(rule, access.Refusal):
        return {rule.status}
    if endpoint in B_STATUS:
        return B_STATUS[endpoint]
    return {200, 404} if rule is Permission.READ else {404}


# Requests that only name things (no object of A's): B gets its own, so they go last.
CREATES = {"_create_experiment", "_create_registered_model"}


def _phase(endpoint: str) -> int:
    """Reads, then refusals, then writes to A's objects, deletes, and creates last."""
    rule = access.rule_of(endpoint)
    if isinstance(rule, access.Refusal):
        return 1
    if rule is Permission.READ:
        return 0
    if endpoint in CREATES:
        return 4
    if rule is Permission.ADMIN or "delete" in endpoint:
        return 3
    return 2


@dataclass(frozen=True)
class Call:
    """One request: a route, and one of its variants filled with A's ids."""

    route: Route
    endpoint: str  # the endpoint the door dispatches the path to
    url: str
    kwargs: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.route.method} {self.url} {self.kwargs} ({self.endpoint})"

    @property
    def text(self) -> str:
        """The request as text (to tell echoes of it from leaks)."""
        return f"{self.url} {self.kwargs}"


def calls(ids: dict[str, str], routes_: list[Route] | None = None) -> list[Call]:
    """Every door route with every variant of A's requests, in phase order."""
    urls = mlflow_app.url_map.bind("localhost")
    out = []
    for route in routes_ if routes_ is not None else door_routes():
        # A shadowed rule is dispatched to the one that matches first.
        endpoint = urls.match(url_of(route.path, ids), route.method)[0]
        for spec in SPECS.get(endpoint, [{}]):
            url = url_of(route.path, ids, spec.get("args"))
            kwargs: dict[str, Any] = {}
            if "content" in spec:
                kwargs["content"] = spec["content"]
            elif route.method == "GET":
                kwargs["params"] = fill(spec.get("query") or spec.get("json") or {}, ids)
            else:
                kwargs["json"] = fill(spec.get("json") or spec.get("query") or {}, ids)
            out.append(Call(route, endpoint, url, kwargs))
    return sorted(out, key=lambda c: (_phase(c.endpoint), c.route))


# ---------------------------------------------------------------- the deployment


@dataclass
class Deployment:
    server: ServeProcess
    keys: dict[tuple[str, str], str]
    ids: dict[str, str] = field(default_factory=dict)
    clients: dict[tuple[str, str], httpx.Client] = field(default_factory=dict)
    b_names: set[str] = field(default_factory=set)  # A's names B has used for its own
    a_root: str = ""  # where A's artifacts are on the server (for B to aim at)

    def client(self, tenant: str = "", role: str = "") -> httpx.Client:
        """A client with the key of ``role`` in ``tenant`` (none for the defaults)."""
        if (tenant, role) not in self.clients:
            key = self.keys.get((tenant, role))
            self.clients[tenant, role] = httpx.Client(
                base_url=self.server.url,
                timeout=60,
                headers={"Authorization": f"Bearer {key}"} if key else None,
            )
        return self.clients[tenant, role]

    @property
    def anonymous(self) -> httpx.Client:
        return self.client()

    def send(self, client: httpx.Client, call: Call, **extra: Any) -> httpx.Response:
        return client.request(call.route.method, call.url, **call.kwargs, **extra)


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (response.request.url, response.text)
    return response.json() if response.content else {}


def _write_a(d: Deployment, model_dir: Path) -> dict[str, str]:
    """A's objects, sent as MLflow's client sends them (log_model, register, alias)."""
    c = d.client(A, "editor")
    n = {**NAMES, **SECRETS}
    api = "/api/2.0/mlflow"
    art = "/api/2.0/mlflow-artifacts/artifacts"
    exp = ok(c.post(f"{api}/experiments/create", json={"name": n["experiment"]}))["experiment_id"]
    tag = {"experiment_id": exp, "key": n["exp_tag"], "value": n["secret_exp_tag"]}
    ok(c.post(f"{api}/experiments/set-experiment-tag", json=tag))
    run = ok(
        c.post(
            f"{api}/runs/create",
            json={"experiment_id": exp, "run_name": n["run_name"], "start_time": 1_700_000_000_000},
        )
    )["run"]["info"]
    run_id = run["run_id"]
    assert run["artifact_uri"] == f"mlflow-artifacts:/{exp}/{run_id}/artifacts"
    metrics = [
        {"key": n["metric"], "value": v, "timestamp": 1_700_000_000_000 + s, "step": s}
        for s, v in enumerate(METRIC_VALUES)
    ]
    ok(
        c.post(
            f"{api}/runs/log-batch",
            json={
                "run_id": run_id,
                "metrics": metrics,
                "params": [{"key": n["param"], "value": n["secret_param"]}],
                "tags": [{"key": n["tag"], "value": n["secret_tag"]}],
            },
        )
    )
    path = f"{exp}/{run_id}/artifacts/{n['folder']}/{n['file']}"
    ok(c.put(f"{art}/{path}", content=n["secret_file"].encode()))
    logged = ok(
        c.post(
            f"{api}/logged-models",
            json={"experiment_id": exp, "name": n["logged"], "source_run_id": run_id},
        )
    )["model"]["info"]
    model_id = logged["model_id"]
    assert logged["artifact_uri"] == f"mlflow-artifacts:/{exp}/models/{model_id}/artifacts"
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            rel = f.relative_to(model_dir).as_posix()
            ok(c.put(f"{art}/{exp}/models/{model_id}/artifacts/{rel}", content=f.read_bytes()))
    extra = f"{art}/{exp}/models/{model_id}/artifacts/{n['secret_lm_file']}"
    ok(c.put(extra, content=b"{}"))
    ok(
        c.patch(
            f"{api}/logged-models/{model_id}",
            json={"model_id": model_id, "status": "LOGGED_MODEL_READY"},
        )
    )
    ok(c.post(f"{api}/runs/outputs", json={"run_id": run_id, "models": [{"model_id": model_id}]}))
    dataset = {
        "name": n["secret_dataset"],
        "digest": "d1g3st",
        "source_type": "local",
        "source": '{"uri": "/data/train.csv"}',
    }
    context = [{"key": "mlflow.data.context", "value": "training"}]
    inputs = {"run_id": run_id, "datasets": [{"dataset": dataset, "tags": context}]}
    ok(c.post(f"{api}/runs/log-inputs", json=inputs))
    ok(
        c.post(
            f"{api}/logged-models/{model_id}/params",
            json={
                "model_id": model_id,
                "params": [{"key": n["lm_param"], "value": n["secret_lm_param"]}],
            },
        )
    )
    ok(
        c.patch(
            f"{api}/logged-models/{model_id}/tags",
            json={"tags": [{"key": n["lm_tag"], "value": n["secret_lm_tag"]}]},
        )
    )
    ok(
        c.post(
            f"{api}/runs/update",
            json={"run_id": run_id, "status": "FINISHED", "end_time": 1_700_000_100_000},
        )
    )
    ok(
        c.post(
            f"{api}/registered-models/create",
            json={
                "name": n["model"],
                "description": n["secret_model_desc"],
                "tags": [{"key": n["rm_tag"], "value": n["secret_rm_tag"]}],
            },
        )
    )
    mv = ok(
        c.post(
            f"{api}/model-versions/create",
            json={
                "name": n["model"],
                "source": f"models:/{model_id}",
                "run_id": run_id,
                "model_id": model_id,
                "description": n["secret_version_desc"],
                "tags": [{"key": n["mv_tag"], "value": n["secret_mv_tag"]}],
            },
        )
    )["model_version"]
    assert (mv["version"], mv["status"]) == ("1", "READY"), mv
    alias = {"name": n["model"], "alias": n["alias"], "version": "1"}
    ok(c.post(f"{api}/registered-models/alias", json=alias))
    return {
        **n,
        "exp": exp,
        "run": run_id,
        "model_id": model_id,
        "artifact": path,
        "tenant": A,
    }


@pytest.fixture(scope="module")
def door(tmp_path_factory, saved_sklearn_model: Path) -> Iterator[Deployment]:

    from matih_ml.services import build_services

    tmp = tmp_path_factory.mktemp("door-isolation")
    data = tmp / "data"
    server = ServeProcess(tmp / "serve.log", {"MATIH_DATA_DIR": str(data)})
    services = build_services(embedded_settings(data))
    d = Deployment(server, {})
    try:
        for tenant in (A, B):
            secret = SECRETS["secret_tenant"] if tenant == A else "B"
            services.tenants.create_tenant(tenant, description=secret)
            for role in ("viewer", "editor", "admin"):
                d.keys[tenant, role] = services.api_keys.create(tenant, role, f"{role}-key").secret
        d.ids = _write_a(d, saved_sklearn_model)
        d.a_root = services.tenants.tenant_artifact_root(A)
        yield d
    finally:
        for c in d.clients.values():
            c.close()
        server.stop()
        services.db.dispose()


# ---------------------------------------------------------------- A's state


def _tree(c: httpx.Client, path: str = "") -> list:
    """Every file and folder under A's artifact prefix, with sizes."""
    files = ok(c.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": path})).get("files", [])
    out = []
    for f in files:
        full = f"{path}/{f['path']}".strip("/")
        out.append((full, f.get("is_dir", False), f.get("file_size")))
        if f.get("is_dir"):
            out.extend(_tree(c, full))
    return out


def snapshot(d: Deployment) -> dict:
    """A's state, as A's admin sees it through the door and our API."""
    c = d.client(A, "admin")
    i = d.ids
    api = "/api/2.0/mlflow"
    return {
        "experiments": ok(
            c.get(f"{api}/experiments/search", params={"max_results": 1000, "view_type": "ALL"})
        ),
        "runs": ok(
            c.post(
                f"{api}/runs/search", json={"experiment_ids": [i["exp"]], "run_view_type": "ALL"}
            )
        ),
        "history": ok(
            c.get(
                f"{api}/metrics/get-history", params={"run_id": i["run"], "metric_key": i["metric"]}
            )
        ),
        "logged_models": ok(
            c.post(f"{api}/logged-models/search", json={"experiment_ids": [i["exp"]]})
        ),
        "models": ok(c.get(f"{api}/registered-models/search", params={"max_results": 1000})),
        "versions": ok(
            c.get(f"{api}/model-versions/search", params={"filter": f"name='{i['model']}'"})
        ),
        "alias": ok(
            c.get(
                f"{api}/registered-models/alias", params={"name": i["model"], "alias": i["alias"]}
            )
        ),
        "files": _tree(c),
        "file": c.get(f"/api/2.0/mlflow-artifacts/artifacts/{i['artifact']}").content,
        "stage_history": ok(c.get(f"/api/v1/models/{i['model']}/history")),
        "events": ok(c.get("/api/v1/events", params={"limit": 1000})),
    }


def test_a_is_as_a_stock_client_left_it(door: Deployment) -> None:
    """The setup itself: A's objects are all there, so the checks below check something."""
    s = snapshot(door)
    i = door.ids
    assert [e["name"] for e in s["experiments"]["experiments"]] == [i["experiment"]]
    (run,) = s["runs"]["runs"]
    assert run["info"]["run_name"] == i["run_name"]
    assert {"key": i["param"], "value": i["secret_param"]} in run["data"]["params"]
    assert len(s["history"]["metrics"]) == METRIC_STEPS
    (lm,) = s["logged_models"]["models"]
    assert lm["info"]["model_id"] == i["model_id"]
    (rm,) = s["models"]["registered_models"]
    assert rm["description"] == i["secret_model_desc"]
    assert rm["aliases"] == [{"alias": i["alias"], "version": "1"}]
    assert s["alias"]["model_version"]["version"] == "1"
    assert s["file"] == i["secret_file"].encode()
    files = {f for f, _, _ in s["files"]}
    assert i["artifact"] in files and f"models/{i['model']}/1/MLmodel" in files, files
    assert {"MODEL_REGISTERED", "MODEL_TRAINING_STARTED"} <= {
        e["type"] for e in s["events"]["items"]
    }, s["events"]


# ---------------------------------------------------------------- 1. the route table


def test_every_mlflow_route_is_classified_and_routed_to_the_door() -> None:
    endpoints = {r.endpoint for r in mlflow_routes()}
    problems = []
    unclassified = sorted(endpoints - set(access.TABLE) - access.NOT_PROTOCOL)
    if unclassified:
        problems.append(f"MLflow endpoints access.TABLE does not classify: {unclassified}")
    # A name MLflow renamed or dropped must go from the table too.
    stale = sorted((set(access.TABLE) | access.NOT_PROTOCOL) - endpoints)
    if stale:
        problems.append(f"access.TABLE names endpoints MLflow no longer has: {stale}")
    unrouted = sorted(
        f"{r.method} {r.path} ({r.endpoint})"
        for r in mlflow_routes()
        if r.endpoint not in access.NOT_PROTOCOL and not routed_to_door(r.path)
    )
    if unrouted:
        problems.append(f"MLflow routes that routes.py does not send to the door: {unrouted}")
    assert problems == [], "\n".join(problems)


def test_every_endpoint_a_key_may_call_has_requests_here() -> None:
    """The cross-tenant and viewer tests send A's requests to each endpoint a key may call;
    a new one needs its line in SPECS."""
    allowed = {n for n, rule in access.TABLE.items() if isinstance(rule, Permission)}
    missing = sorted(allowed - set(SPECS))
    assert missing == [], f"no request in SPECS for: {missing}"
    stale = sorted(set(SPECS) - {r.endpoint for r in mlflow_routes()})
    assert stale == [], f"SPECS names endpoints MLflow no longer has: {stale}"


def door_ops() -> dict[str, Any]:
    """The operations the door answers itself (every module of the package with OPS)."""
    import importlib
    import pkgutil

    import matih_ml.api.mlflow as package

    ops: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__):
        ops.update(getattr(importlib.import_module(f"{package.__name__}.{info.name}"), "OPS", {}))
    return ops


# ---------------------------------------------------------------- 2. tenant B


def _strings(obj: Any) -> Iterator[tuple[str | None, Any]]:
    """(key, value) of every leaf of a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict | list):
                yield from _strings(v)
            else:
                yield k, v
            if isinstance(v, list) and all(not isinstance(x, dict | list) for x in v):
                for x in v:
                    yield k, x
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


@dataclass
class Leaks:
    """What B saw of A's, route by route."""

    ids: dict[str, str]
    taken: set[str]  # A's names B has used for objects of its own
    found: list[str] = field(default_factory=list)

    def markers(self) -> set[str]:
        """A's ids and names (B's answers may echo them only when B sent them)."""
        keys = [*NAMES, "run", "model_id", "tenant"]
        return {self.ids[k] for k in keys} - self.taken

    def check(self, call: Call, r: httpx.Response) -> None:
        where = f"{r.status_code} for {call}: {r.text[:500]}"
        body = r.text
        secrets = [s for s in SECRET_TEXTS if s in body]
        if secrets:
            self.found.append(f"A's secret values {secrets} in the answer to {where}")
        if r.status_code >= 500 and r.status_code != 501:
            self.found.append(f"server error (not an answer) to {where}")
            return
        if r.status_code >= 400:
            return
        if r.status_code != 200:
            self.found.append(f"unexpected status to {where}")
            return
        # A's tenant name is never in B's answers, whatever B asked.
        names = sorted(m for m in self.markers() if m in body and (m not in call.text or m == A))
        if names:
            self.found.append(f"A's names {names} in the answer to {where}")
        try:
            data = r.json()
        except ValueError:
            data = None
            if body and call.endpoint not in ("_download_artifact",):
                self.found.append(f"non-JSON 200 to {where}")
            if call.endpoint == "_download_artifact" and r.content:
                self.found.append(f"a file of A's to {where}")
        # A's experiment, as a field or as a folder of artifacts.
        for k, v in _strings(data):
            if (
                k in ("experiment_id", "experimentId", "experiment_ids", "path")
                and v == self.ids["exp"]
            ):
                self.found.append(f"A's experiment id in the answer to {where}")
                break


def _assert_unchanged(d: Deployment, before: dict, what: str) -> None:
    after = snapshot(d)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == [], f"{what} changed A's {changed}: " + "; ".join(
        f"{k}: {before[k]!r:.600} -> {after[k]!r:.600}" for k in changed
    )


def test_another_tenants_admin_gets_nothing_of_a_on_any_route(door: Deployment) -> None:
    before = snapshot(door)
    b = door.client(B, "admin")
    leaks = Leaks(door.ids, door.b_names)
    all_calls = calls(door.ids)
    for call in all_calls:
        r = door.send(b, call)
        leaks.check(call, r)
        if r.status_code not in b_status(call.endpoint):
            leaks.found.append(f"B got {r.status_code} for {call}: {r.text[:300]}")
        if call.endpoint in CREATES:
            # A's name is free for B (no tenant learns what another has named); B then
            # has an object of that name of its own, which its answers may show.
            name = call.kwargs["json"]["name"]
            again = name in door.b_names and r.json().get("error_code") == "RESOURCE_ALREADY_EXISTS"
            assert r.status_code == 200 or again, f"B cannot use a name A uses: {call}: {r.text}"
            door.b_names.add(name)
    assert leaks.found == [], "\n".join(leaks.found)
    _assert_unchanged(door, before, "B's requests")


def test_basic_auth_with_another_tenants_key_sees_nothing_of_a(door: Deployment) -> None:
    before = snapshot(door)
    leaks = Leaks(door.ids, door.b_names)
    reads = [c for c in calls(door.ids) if access.rule_of(c.endpoint) is Permission.READ]
    with httpx.Client(base_url=door.server.url, timeout=60) as c:
        for call in reads:
            for auth in (("someone", door.keys[B, "admin"]), (door.keys[B, "viewer"], "")):
                leaks.check(call, door.send(c, call, auth=auth))
    assert leaks.found == [], "\n".join(leaks.found)
    _assert_unchanged(door, before, "B's Basic-auth requests")


def test_a_workspace_header_naming_a_is_refused_to_b(door: Deployment) -> None:
    before = snapshot(door)
    b = door.client(B, "admin")
    wrong = []
    for call in calls(door.ids):
        r = door.send(b, call, headers={"X-MLflow-Workspace": A})
        if r.status_code != 403 or r.json().get("error_code") != "PERMISSION_DENIED":
            wrong.append(f"{r.status_code} {call}: {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)
    _assert_unchanged(door, before, "B's requests naming A's workspace")
    # A naming its own workspace is served; naming B's is refused.
    a = door.client(A, "viewer")
    url = "/api/2.0/mlflow/experiments/get"
    params = {"experiment_id": door.ids["exp"]}
    assert a.get(url, params=params, headers={"X-MLflow-Workspace": A}).status_code == 200
    r = a.get(url, params=params, headers={"X-MLflow-Workspace": B})
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"


def test_graphql_with_another_tenants_key_sees_nothing_of_a(door: Deployment) -> None:
    """MLflow's GraphQL (the UI's run page) reads through the same stores."""
    url = next(
        (u for u in ("/graphql", "/mlflow/graphql") if door.anonymous.post(u).status_code == 401),
        None,
    )
    if url is None:
        pytest.skip("MLflow's GraphQL endpoint is not served")
    leaks = Leaks(door.ids, door.b_names)
    route = Route("/graphql", "POST", "_graphql")
    for call in calls(door.ids, [route]):
        call = Call(route, call.endpoint, url, call.kwargs)
        for who in ((A, "viewer"), (B, "admin")):
            r = door.send(door.client(*who), call)
            assert r.status_code == 200, r.text
            assert "errors" in r.json()
            if who[0] == B:
                leaks.check(call, r)
            elif "mlflowGetRun" in call.kwargs["json"]["query"]:
                assert door.ids["secret_param"] in r.text, r.text  # the query does read
    assert leaks.found == [], "\n".join(leaks.found)


def test_another_tenant_cannot_reach_as_files_through_paths_or_sources(door: Deployment) -> None:
    """B aims its own run, experiment and registrations at A's files: paths that climb out
    of B's prefix, A's physical location as a source. Each is refused, never a 500."""
    before = snapshot(door)
    i = door.ids
    b = door.client(B, "admin")
    api = "/api/2.0/mlflow"
    art = "/api/2.0/mlflow-artifacts/artifacts"
    exp = ok(b.post(f"{api}/experiments/create", json={"name": "b-own-exp"}))["experiment_id"]
    run = ok(b.post(f"{api}/runs/create", json={"experiment_id": exp}))["run"]["info"]["run_id"]
    ok(b.post(f"{api}/registered-models/create", json={"name": "b-own-model"}))
    a_file = i["artifact"]
    a_model = f"{i['exp']}/models/{i['model_id']}/artifacts"
    climbs = [f"%2e%2e/{A}/{a_file}", f"..%2f{A}%2f{a_file}", f".%2e/{A}/{a_file}"]
    climbs += [f"x/..%5c..%5c{A}/{a_file}", f"/{A}/{a_file}", f"%2F{A}/{a_file}"]
    climbs += [f"{exp}/%2e%2e/{a_file}"]
    attempts: list[tuple[str, str, dict]] = []
    for path in climbs:
        attempts += [("GET", f"{art}/{path}", {}), ("DELETE", f"{art}/{path}", {})]
        attempts += [("PUT", f"{art}/{path}", {"content": b"x"})]
    for path in (f"../{A}", "..", f"../{A}/{i['exp']}", f"..\\{A}"):
        attempts.append(("GET", art, {"params": {"path": path}}))
    for path in (f"../../../{A}/{a_file}", f"../../{i['exp']}", f"../../../../{A}"):
        params = {"run_id": run, "path": path}
        attempts += [("GET", "/get-artifact", {"params": params})]
        attempts += [("GET", f"{api}/artifacts/list", {"params": params})]
    sources = [
        f"{door.a_root}/{a_model}",
        f"file://{door.a_root}/{a_model}",
        f"mlflow-artifacts:/../{A}/{a_model}",
        f"mlflow-artifacts:/{a_model}",
        f"runs:/{run}/../../{i['run']}/artifacts",
    ]
    for source in sources:
        body = {"name": "b-own-model", "source": source, "run_id": run}
        attempts.append(("POST", f"{api}/model-versions/create", {"json": body}))
    location = {"name": "b-aimed", "artifact_location": f"{door.a_root}/{i['exp']}"}
    attempts.append(("POST", f"{api}/experiments/create", {"json": location}))
    # A logged model of B's whose source run is A's: registering it registers nothing.
    lm = {"experiment_id": exp, "name": "b-lm", "source_run_id": i["run"]}
    r = b.post(f"{api}/logged-models", json=lm)
    if r.status_code == 200:
        model_id = r.json()["model"]["info"]["model_id"]
        body = {"name": "b-own-model", "source": f"models:/{model_id}", "model_id": model_id}
        attempts.append(("POST", f"{api}/model-versions/create", {"json": body}))
    wrong = []
    for method, url, kwargs in attempts:
        r = b.request(method, url, **kwargs)
        secrets = [s for s in SECRET_TEXTS if s in r.text]
        if not 400 <= r.status_code < 500 or secrets or "error_code" not in r.text:
            wrong.append(f"{r.status_code} {method} {url} {kwargs}: {r.text[:300]}")
    assert wrong == [], "\n".join(wrong)
    versions = ok(b.get(f"{api}/model-versions/search", params={"filter": "name='b-own-model'"}))
    assert versions.get("model_versions", []) == []
    _assert_unchanged(door, before, "B's aimed paths")


# ---------------------------------------------------------------- 3. A's viewer


def test_a_viewer_can_write_nothing_and_reads_everything(door: Deployment) -> None:
    before = snapshot(door)
    viewer = door.client(A, "viewer")
    all_calls = calls(door.ids)
    writes = [
        c for c in all_calls if access.rule_of(c.endpoint) in (Permission.WRITE, Permission.ADMIN)
    ]
    # Every operation the door answers itself that writes is among them.
    door_writes = {
        n for n in door_ops() if access.rule_of(n) in (Permission.WRITE, Permission.ADMIN)
    }
    assert door_writes <= {c.endpoint for c in writes}, door_writes
    wrong = []
    for call in writes:
        r = door.send(viewer, call)
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 403 or body.get("error_code") != "PERMISSION_DENIED":
            wrong.append(f"{r.status_code} {call}: {r.text[:300]}")
        elif set(body) != {"error_code", "message"}:
            wrong.append(f"not MLflow's error format: {call}: {r.text[:300]}")
    assert wrong == [], "a viewer was not refused:\n" + "\n".join(wrong)
    _assert_unchanged(door, before, "A's viewer")
    # The same viewer reads: A's requests to every read route are answered.
    not_ok = []
    for call in (c for c in all_calls if access.rule_of(c.endpoint) is Permission.READ):
        r = door.send(viewer, call)
        if r.status_code != READ_STATUS.get((call.route.method, call.endpoint), 200):
            not_ok.append(f"{r.status_code} {call}: {r.text[:300]}")
    assert not_ok == [], "a viewer could not read:\n" + "\n".join(not_ok)
    i = door.ids
    run = ok(viewer.get("/api/2.0/mlflow/runs/get", params={"run_id": i["run"]}))
    assert {"key": i["tag"], "value": i["secret_tag"]} in run["run"]["data"]["tags"]
    got = viewer.get(f"/api/2.0/mlflow-artifacts/artifacts/{i['artifact']}")
    assert got.content == i["secret_file"].encode()
    mv = ok(
        viewer.get(
            "/api/2.0/mlflow/registered-models/alias",
            params={"name": i["model"], "alias": i["alias"]},
        )
    )
    assert mv["model_version"]["description"] == i["secret_version_desc"]
    _assert_unchanged(door, before, "A's viewer's reads")


# ---------------------------------------------------------------- 4. no credential


def _challenged(r: httpx.Response) -> bool:
    try:
        body = r.json()
    except ValueError:
        return False
    return (
        r.status_code == 401
        and body.get("error_code") == "UNAUTHENTICATED"
        and bool(body.get("message"))
        and r.headers.get("www-authenticate", "").startswith("Basic ")
    )


def test_no_credential_is_401_in_mlflows_format_on_every_route(door: Deployment) -> None:
    wrong = []
    all_calls = calls(door.ids)
    for call in all_calls:
        r = door.send(door.anonymous, call)
        if not _challenged(r):
            wrong.append(f"{r.status_code} {call} {r.headers}: {r.text[:200]}")
    # A key that is not one, as Bearer or as Basic: the same answer (on a sample).
    for call in all_calls[::7]:
        for auth in (
            {"auth": ("someone", "mk_0000000000000000_not-a-key")},
            {"headers": {"Authorization": "Bearer mk_0000000000000000_not-a-key"}},
            {"headers": {"Authorization": "Basic !!not-base64"}},
        ):
            r = door.send(door.anonymous, call, **auth)
            if not _challenged(r):
                wrong.append(f"{r.status_code} {call} {auth}: {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)

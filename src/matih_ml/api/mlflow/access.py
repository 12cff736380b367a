"""Who may call which of MLflow's operations: one table, keyed by MLflow's own endpoint.

MLflow's server registers one Flask view per request class (``_create_run`` serves
``CreateRun``, at ``/api/2.0/...`` and ``/ajax-api/2.0/...`` alike), so the view's name is
the key, as ``mlflow.server.auth`` keys its ``BEFORE_REQUEST_HANDLERS`` by request class.
An endpoint that is not in :data:`TABLE` is refused: when MLflow adds one, the door
refuses it until someone classifies it here (and a test names it).

The permissions are those of our REST API (:data:`matih_ml.auth.principal.GRANTS`):
viewers read; editors write runs, experiments, models and versions; deletes of models
and versions need an admin, as ``DELETE /api/v1/models/...`` does; stage moves and the
reserved aliases go through the lifecycle, whose gates and approvals decide the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from matih_ml.auth.principal import Permission

READ = Permission.READ
WRITE = Permission.WRITE
ADMIN = Permission.ADMIN


@dataclass(frozen=True)
class Refusal:
    """An operation the door does not offer, and why (shown to the caller)."""

    reason: str
    status: int = 501


_TRACES = Refusal(
    "GenAI traces, assessments, scorers and evaluation datasets are not supported by "
    "matih-ml; log runs, metrics, artifacts and models."
)
_GATEWAY = Refusal("MLflow's AI gateway is not part of matih-ml.")
_PRESIGNED = Refusal(
    "Artifacts travel through the service (/api/2.0/mlflow-artifacts); matih-ml hands out "
    "no direct storage URLs."
)
_WORKSPACES = Refusal(
    "A key's tenant is its only workspace; tenants are created and deleted by the "
    "operator (matih-ml tenants).",
    status=403,
)
_WEBHOOKS = Refusal(
    "matih-ml's webhooks are signed and tenant-scoped: use /api/v1/webhooks.", status=403
)
_RENAME = Refusal(
    "Renaming a registered model is not supported: its history, approvals and serving "
    "are kept under its name. Register the versions under a new name instead.",
    status=409,
)

# Reads: what a viewer may do.
_READS = {
    "_get_experiment_by_name",
    "_search_experiments",
    "_get_experiment",
    "_get_run",
    "_search_runs",
    "_list_artifacts",
    "_get_metric_history",
    "get_metric_history_bulk_interval_handler",
    "serve_get_metric_history_bulk_interval",
    "serve_get_metric_history_bulk",
    "_get_logged_model",
    "_search_logged_models",
    "_list_logged_model_artifacts",
    "serve_get_logged_model_artifact",
    "_get_registered_model",
    "_search_registered_models",
    "_get_latest_versions",
    "_get_model_version",
    "_search_model_versions",
    "_get_model_version_download_uri",
    "_get_model_version_by_alias",
    "_download_artifact",
    "_list_artifacts_mlflow_artifacts",
    "serve_artifacts",
    "serve_model_version_artifact",
    "_get_server_info",
    "_list_workspaces_handler",
    "_get_workspace_handler",
    "serve_get_ui_telemetry",
    # The UI's telemetry post does nothing: the service turns MLflow's telemetry off.
    "serve_post_ui_telemetry",
    # Read-only in MLflow 3.17 (its "mutations" are searches), on the bound stores.
    "_graphql",
    # Dataset summaries of the runs' log_inputs; the workspace store filters by tenant.
    "serve_search_datasets",
    # Answered by the door with no endpoints: nothing is proxied to a gateway.
    "serve_gateway_proxy",
}

# Writes: what an editor may do. Several are answered by the door itself (see ops).
_WRITES = {
    "_create_experiment",
    "_delete_experiment",
    "_restore_experiment",
    "_update_experiment",
    "_set_experiment_tag",
    "_delete_experiment_tag",
    "_create_run",
    "_update_run",
    "_delete_run",
    "_restore_run",
    "_log_metric",
    "_log_param",
    "_log_batch",
    "_log_model",
    "_log_inputs",
    "_log_outputs",
    "_set_tag",
    "_delete_tag",
    "_create_logged_model",
    "_finalize_logged_model",
    "_delete_logged_model",
    "_set_logged_model_tags",
    "_delete_logged_model_tag",
    "_log_logged_model_params",
    "_create_registered_model",
    "_update_registered_model",
    "_create_model_version",
    "_update_model_version",
    "_transition_stage",
    "_set_registered_model_tag",
    "_set_model_version_tag",
    "_delete_registered_model_tag",
    "_delete_model_version_tag",
    "_set_registered_model_alias",
    "_delete_registered_model_alias",
    "_upload_artifact",
    "_delete_artifact_mlflow_artifacts",
}

# Deletes of registry objects need an admin, as on our REST API.
_ADMIN = {"_delete_registered_model", "_delete_model_version"}

_REFUSED: dict[str, Refusal] = {
    "_not_implemented": Refusal("This MLflow operation is not implemented."),
    "_rename_registered_model": _RENAME,
    "_create_workspace_handler": _WORKSPACES,
    "_update_workspace_handler": _WORKSPACES,
    "_delete_workspace_handler": _WORKSPACES,
    "_create_presigned_upload_url": _PRESIGNED,
    "_create_presigned_download_url": _PRESIGNED,
    "_get_presigned_download_url": _PRESIGNED,
    "_create_multipart_upload_artifact": _PRESIGNED,
    "_complete_multipart_upload_artifact": _PRESIGNED,
    "_abort_multipart_upload_artifact": _PRESIGNED,
    "serve_upload_artifact": Refusal(
        "Upload artifacts with the MLflow client (log_artifact) or /api/v1/runs/{id}/artifacts."
    ),
    "_create_webhook": _WEBHOOKS,
    "_list_webhooks": _WEBHOOKS,
    "_get_webhook": _WEBHOOKS,
    "_update_webhook": _WEBHOOKS,
    "_delete_webhook": _WEBHOOKS,
    "_test_webhook": _WEBHOOKS,
    "_generate_demo": Refusal("MLflow's demo data is not available in matih-ml.", status=403),
    "_delete_demo": Refusal("MLflow's demo data is not available in matih-ml.", status=403),
    "_cancel_job": Refusal("MLflow server jobs are not run by matih-ml; see /api/v1/jobs."),
    "_get_job": Refusal("MLflow server jobs are not run by matih-ml; see /api/v1/jobs."),
    "serve_create_promptlab_run": _GATEWAY,
}

for _name in [
    "_set_trace_tag",
    "_set_trace_tag_v3",
    "_delete_trace_tag",
    "_delete_trace_tag_v3",
    "_deprecated_start_trace_v2",
    "_deprecated_end_trace_v2",
    "_deprecated_get_trace_info_v2",
    "_get_trace_info_v3",
    "_get_trace",
    "_batch_get_traces",
    "_batch_get_trace_infos",
    "_deprecated_search_traces_v2",
    "_search_traces_v3",
    "_start_trace_v3",
    "_link_traces_to_run",
    "_link_prompts_to_trace",
    "_delete_traces",
    "_calculate_trace_filter_correlation",
    "_query_trace_metrics",
    "_get_assessment",
    "_create_assessment",
    "_update_assessment",
    "_delete_assessment",
    "_create_issue",
    "_update_issue",
    "_get_issue",
    "_search_issues",
    "_create_label_schema",
    "_get_label_schema",
    "_get_label_schema_by_name",
    "_list_label_schemas",
    "_update_label_schema",
    "_delete_label_schema",
    "_create_dataset_handler",
    "_get_dataset_handler",
    "_delete_dataset_handler",
    "_search_evaluation_datasets_handler",
    "_set_dataset_tags_handler",
    "_delete_dataset_tag_handler",
    "_upsert_dataset_records_handler",
    "_get_dataset_experiment_ids_handler",
    "_register_scorer",
    "_list_scorers",
    "_list_scorer_versions",
    "_get_scorer",
    "_delete_scorer",
    "_get_dataset_records_handler",
    "_delete_dataset_records_handler",
    "_add_dataset_to_experiments_handler",
    "_remove_dataset_from_experiments_handler",
    "serve_get_trace_artifact",
    "_invoke_scorer_handler",
    "_invoke_issue_detection_handler",
    "_invoke_genai_evaluate_handler",
    "_get_online_scoring_configs",
    "_upsert_online_scoring_config",
    "_create_prompt_optimization_job",
    "_get_prompt_optimization_job",
    "_search_prompt_optimization_jobs",
    "_cancel_prompt_optimization_job",
    "_delete_prompt_optimization_job",
    "_create_review_queue",
    "_get_or_create_user_queue",
    "_get_review_queue",
    "_get_review_queue_by_name",
    "_list_review_queues",
    "_update_review_queue",
    "_delete_review_queue",
    "_add_items_to_review_queue",
    "_remove_items_from_review_queue",
    "_list_review_queue_items",
    "_set_review_queue_item_status",
]:
    _REFUSED[_name] = _TRACES

for _name in [
    "_create_gateway_secret",
    "_get_gateway_secret_info",
    "_update_gateway_secret",
    "_delete_gateway_secret",
    "_list_gateway_secrets",
    "_create_gateway_endpoint",
    "_get_gateway_endpoint",
    "_update_gateway_endpoint",
    "_delete_gateway_endpoint",
    "_list_gateway_endpoints",
    "_create_gateway_model_definition",
    "_get_gateway_model_definition",
    "_list_gateway_model_definitions",
    "_update_gateway_model_definition",
    "_delete_gateway_model_definition",
    "_attach_model_to_gateway_endpoint",
    "_detach_model_from_gateway_endpoint",
    "_create_gateway_endpoint_binding",
    "_delete_gateway_endpoint_binding",
    "_list_gateway_endpoint_bindings",
    "_set_gateway_endpoint_tag",
    "_delete_gateway_endpoint_tag",
    "_create_budget_policy",
    "_get_budget_policy",
    "_update_budget_policy",
    "_delete_budget_policy",
    "_list_budget_policies",
    "_list_budget_windows",
    "_create_gateway_guardrail",
    "_get_gateway_guardrail",
    "_delete_gateway_guardrail",
    "_list_gateway_guardrails",
    "_add_guardrail_to_endpoint",
    "_remove_guardrail_from_endpoint",
    "_list_endpoint_guardrail_configs",
    "_update_endpoint_guardrail_config",
    "_list_supported_providers",
    "_list_supported_models",
    "_get_provider_config",
    "_get_secrets_config",
]:
    _REFUSED[_name] = _GATEWAY

# MLflow's own pages and files: the web UI is served under /mlflow/ (api.mlflow_ui),
# never through the protocol door.
NOT_PROTOCOL = frozenset({"static", "serve", "serve_static_file", "health", "version"})


TABLE: dict[str, Permission | Refusal] = {
    **{name: READ for name in _READS},
    **{name: WRITE for name in _WRITES},
    **{name: ADMIN for name in _ADMIN},
    **_REFUSED,
}


def rule_of(endpoint: str) -> Permission | Refusal:
    """What ``endpoint`` needs; a :class:`Refusal` for anything not classified."""
    return TABLE.get(
        endpoint,
        Refusal(f"The MLflow operation {endpoint!r} is not offered by matih-ml.", status=403),
    )

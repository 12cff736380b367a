"""The model card written beside every registered version."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def _table(rows: Mapping[str, Any], header: tuple[str, str]) -> str:
    if not rows:
        return "_none recorded_\n"
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    for key in sorted(rows):
        value = str(rows[key]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {value} |")
    return "\n".join(lines) + "\n"


def render_model_card(
    *,
    tenant_id: str,
    name: str,
    version: str,
    framework: str,
    model_type: str,
    description: str,
    metrics: Mapping[str, float],
    parameters: Mapping[str, Any],
    run_id: str | None,
    experiment_id: str | None,
    created_by: str,
    requirements: list[str],
    created_at: datetime | None = None,
    serving: str | None = None,
) -> str:
    """Return the Markdown model card of a version: metrics, parameters, framework, lineage,
    and (``serving``) which runtime serves it."""
    when = (created_at or datetime.now(UTC)).isoformat(timespec="seconds")
    reqs = "\n".join(requirements) or "(none)"
    served = f"## Serving\n\n{serving}\n\n" if serving else ""
    return (
        f"# Model card: {name} v{version}\n\n"
        f"{description or '_No description._'}\n\n"
        "## Summary\n\n"
        f"| | |\n| --- | --- |\n"
        f"| Tenant | `{tenant_id}` |\n| Framework | {framework} |\n"
        f"| Model type | {model_type} |\n| Created by | {created_by or 'unknown'} |\n"
        f"| Registered at | {when} |\n\n"
        "## Metrics\n\n" + _table(metrics, ("metric", "value")) + "\n"
        "## Parameters\n\n" + _table(parameters, ("parameter", "value")) + "\n"
        "## Lineage\n\n"
        f"- Training run: `{run_id or 'none'}` (experiment `{experiment_id or 'none'}`)\n"
        f'- Load it: `mlflow.pyfunc.load_model("models:/{name}/{version}")` in workspace '
        f"`{tenant_id}`\n\n" + served + f"## Requirements\n\n```\n{reqs}\n```\n"
    )


_RUNTIMES = {
    "onnxruntime": "onnxruntime, in the service",
    "pyfunc": "its MLflow pyfunc, in the service",
    "sandbox": "its MLflow pyfunc, in the tenant's sandbox (it carries code)",
}


def serving_line(runtime: str, twin: Any | None) -> str:
    """The card's serving section: the runtime, and the ONNX twin's check if any
    (a :class:`~matih_ml.registry.onnx_twin.TwinCheck`)."""
    line = f"Served by {_RUNTIMES.get(runtime, runtime)} (`serving_runtime: {runtime}`)."
    if twin is None:
        return line
    via = f" by {twin.converter}" if twin.converter else ""
    return f"{line}\n\nONNX twin{via}: {twin.status}: {twin.reason}."

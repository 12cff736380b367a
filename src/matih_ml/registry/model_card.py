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
) -> str:
    """Return the Markdown model card of a version: metrics, parameters, framework, lineage."""
    when = (created_at or datetime.now(UTC)).isoformat(timespec="seconds")
    reqs = "\n".join(requirements) or "(none)"
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
        f"`{tenant_id}`\n\n"
        f"## Requirements\n\n```\n{reqs}\n```\n"
    )

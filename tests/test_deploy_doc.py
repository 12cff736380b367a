"""docs/deploy.md stays true: its variables are the ones the service reads, its
`matih-ml` commands exist with the options it shows, and its Compose file parses.
(tests/production/ runs the set-up itself.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.config import Settings

DOC = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
runner = CliRunner()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def _settings_variables() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


def test_the_table_lists_exactly_the_variables_the_service_reads() -> None:
    table = {
        name
        for row in DOC.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    read = _settings_variables()
    assert read, "no variables found on Settings"
    assert read <= table, f"undocumented: {sorted(read - table)}"
    ours = {n for n in table if n.startswith("MATIH_")}
    assert ours <= read, f"documented but not read: {sorted(ours - read)}"


COMMANDS = sorted(
    {
        line.split("#", 1)[0].strip()
        for block in _blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith("matih-ml ")
    }
)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_shown_exists_with_its_options(command: str) -> None:
    args = shlex.split(command)[1:]
    # --help is eager: it checks that the command and every option shown exist,
    # and runs nothing.
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, (command, result.output)


def test_the_commands_cover_migrations_and_gc() -> None:
    assert {"matih-ml db upgrade", "matih-ml gc"} <= set(COMMANDS)


def test_the_compose_sketch_parses_and_runs_migrations_before_serving() -> None:
    [compose] = [b for b in _blocks("yaml") if b.startswith("services:")]
    services = yaml.safe_load(compose)["services"]
    assert services["migrate"]["command"] == "matih-ml db upgrade"
    assert services["matih"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    env = services["matih"]["environment"]
    assert env["MLFLOW_ARTIFACT_ROOT"].startswith("s3://")
    assert set(env) <= _settings_variables() | {
        "MLFLOW_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


def test_the_kubernetes_sketch_parses() -> None:
    [k8s] = [b for b in _blocks("yaml") if b.startswith("apiVersion")]
    kinds = [doc["kind"] for doc in yaml.safe_load_all(k8s)]
    assert kinds == ["Job", "Deployment"]

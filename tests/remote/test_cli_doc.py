"""docs/cli.md and docs/dvc.md stay true: every `matih-ml` command they show exists with
the options shown, and cli.md's profile file is one the client reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matih_ml.cli import app
from matih_ml.client.config import ClientConfig

DOCS = Path(__file__).parent.parent.parent / "docs"
CLI_DOC = (DOCS / "cli.md").read_text()
DVC_DOC = (DOCS / "dvc.md").read_text()
runner = CliRunner()


def _blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", doc, flags=re.S)


def _commands() -> list[str]:
    """Each `matih-ml ...` line of a shell block, or a DVC stage's `cmd:`."""
    found = set()
    for doc in (CLI_DOC, DVC_DOC):
        for block in _blocks(doc, "bash") + _blocks(doc, "sh") + _blocks(doc, "yaml"):
            for raw in block.splitlines():
                line = raw.split("  #", 1)[0].strip().removeprefix("cmd: ")
                if line.startswith("matih-ml "):
                    found.add(line)
    return sorted(found)


COMMANDS = _commands()


def test_the_docs_show_the_remote_commands() -> None:
    shown = {" ".join(shlex.split(c)[1:3]) for c in COMMANDS}
    assert {
        "models register",
        "models promote",
        "models rollback",
        "approvals approve",
        "jobs submit",
    } <= shown
    assert any("--local" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_shown_exists_with_its_options(command: str) -> None:
    # --help is eager: it checks that the command and every option shown exist, and runs
    # nothing.
    result = runner.invoke(app, [*shlex.split(command)[1:], "--help"])
    assert result.exit_code == 0, (command, result.output)


def test_the_profile_file_shown_is_read_as_documented(tmp_path) -> None:
    [toml] = _blocks(CLI_DOC, "toml")
    path = tmp_path / "config.toml"
    path.write_text(toml)
    env = {"MATIH_CONFIG_FILE": str(path)}
    default = ClientConfig.resolve(environ=env)
    assert default.url == "http://127.0.0.1:8080"
    staging = ClientConfig.resolve(profile="staging", environ=env)
    assert staging.url == "https://ml.staging.example.com"
    # The environment wins over a named profile; the flags over both.
    mixed = ClientConfig.resolve(
        profile="staging", environ={**env, "MATIH_URL": "http://env.example.com"}
    )
    assert (mixed.url, mixed.api_key) == ("http://env.example.com", "mk_...")
    flag = ClientConfig.resolve(
        "http://flag.example.com", profile="staging", environ={**env, "MATIH_URL": "http://x"}
    )
    assert flag.url == "http://flag.example.com"

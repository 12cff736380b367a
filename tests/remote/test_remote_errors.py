"""A wrong URL, a dead server, or nothing configured: the CLI and the SDK, each in a
fresh process and folder, say so in one clear line, exit non-zero, and create no file
(issue 19, "Done when")."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote.served import client_env, closed_port_url, files_in, fresh_folder, matih

KEY = "mk_0123456789abcdef_notarealkeynotarealkeynotarealkey0"


def _one_line(stderr: str) -> str:
    assert stderr.endswith("\n") and stderr.count("\n") == 1, repr(stderr)
    return stderr.rstrip("\n")


@pytest.fixture(scope="module")
def not_matih() -> Iterator[str]:
    """An HTTP server that is not a matih-ml server (Python's file server)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_cli_against_a_dead_server_names_it_in_one_line(tmp_path) -> None:
    url = closed_port_url()
    folder = fresh_folder(tmp_path, "laptop")
    done = matih(folder, client_env(folder, url, KEY), "models", "list")
    assert done.rc == 1 and done.stdout == ""
    line = _one_line(done.stderr)
    assert line.startswith("error (UNAVAILABLE): ")
    assert f"The matih-ml server at {url} cannot be reached" in line
    assert files_in(folder) == []
    # With --json the same error is JSON on stdout.
    done = matih(folder, client_env(folder, url, KEY), "models", "list", "--json")
    assert done.rc == 1 and done.error["code"] == "UNAVAILABLE" and url in done.error["message"]
    assert files_in(folder) == []


def test_the_cli_against_a_server_that_is_not_matih_ml_says_so(tmp_path, not_matih) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    done = matih(folder, client_env(folder, not_matih, KEY), "models", "list")
    assert done.rc == 1 and done.stdout == ""
    line = _one_line(done.stderr)
    assert line.startswith("error (UNAVAILABLE): ")
    assert not_matih in line and "may not be a matih-ml server" in line
    assert files_in(folder) == []


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://127.0.0.1/ml", "http://no-such-host.invalid:8080"]
)
def test_the_cli_with_a_malformed_or_unknown_url_names_it(tmp_path, url) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    done = matih(folder, client_env(folder, url, KEY), "models", "list")
    assert done.rc == 1 and done.stdout == ""
    line = _one_line(done.stderr)
    assert line.startswith(("error (VALIDATION_ERROR): ", "error (UNAVAILABLE): "))
    assert repr(url) in line or url in line
    assert files_in(folder) == []


def test_the_cli_with_nothing_configured_says_what_to_set(tmp_path) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    done = matih(folder, client_env(folder, None, None), "models", "list")
    assert done.rc == 1 and done.stdout == ""
    line = _one_line(done.stderr)
    assert line.startswith("error (VALIDATION_ERROR): ")
    assert "MATIH_URL" in line and "MATIH_API_KEY" in line
    assert "--local" in line  # the operator's other way
    assert files_in(folder) == []  # no profile file, no .matih


def test_the_cli_with_a_url_and_no_key_names_the_key(tmp_path) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    done = matih(folder, client_env(folder, closed_port_url(), None), "models", "list")
    assert done.rc == 1
    line = _one_line(done.stderr)
    assert "MATIH_API_KEY" in line and "No matih-ml server URL" not in line
    assert files_in(folder) == []


# ------------------------------------------------------------------ the SDK

SDK = textwrap.dedent(
    """
    import asyncio, json, sys
    from matih_ml.errors import MatihError
    from matih_ml.sdk import ModelRegistry, TrainingJobs
    from matih_ml.tracking.tracker import ExperimentTracker, RunConfig

    def tracker():
        config = RunConfig(tenant_id="acme")
        with ExperimentTracker().start_run("exp", run_config=config) as run:
            run.log_metric("loss", 1.0)

    calls = {
        "ModelRegistry": lambda: asyncio.run(ModelRegistry().list_models("acme")),
        "TrainingJobs": lambda: asyncio.run(TrainingJobs().list("acme")),
        "ExperimentTracker": tracker,
    }
    out = {}
    for what in sys.argv[1:]:
        try:
            calls[what]()
            out[what] = "no error"
        except MatihError as exc:
            out[what] = [type(exc).__name__, exc.code, exc.message]
    print("RESULT " + json.dumps(out))
    """
)
CLASSES = ("ModelRegistry", "ExperimentTracker", "TrainingJobs")


def _sdk(folder: Path, env: dict[str, str], *classes: str) -> dict[str, list[str]]:
    """Each class's first call, in one fresh process: the error each raised."""
    done = subprocess.run(
        [sys.executable, "-c", SDK, *classes],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_the_sdk_against_a_dead_server_names_it_and_creates_nothing(tmp_path) -> None:
    url = closed_port_url()
    folder = fresh_folder(tmp_path, "laptop")
    errors = _sdk(folder, client_env(folder, url, KEY), *CLASSES)
    for what in CLASSES:
        name, code, message = errors[what]
        assert (name, code) == ("UnavailableError", "UNAVAILABLE"), what
        assert f"The matih-ml server at {url} cannot be reached" in message, what
    assert files_in(folder) == []


def test_the_sdk_with_nothing_configured_says_what_to_set(tmp_path) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    errors = _sdk(folder, client_env(folder, None, None), *CLASSES)
    for what in CLASSES:
        name, code, message = errors[what]
        assert (name, code) == ("ValidationError", "VALIDATION_ERROR"), what
        assert message.startswith(
            f"{what} needs a matih-ml server: set MATIH_URL and MATIH_API_KEY"
        )
    assert files_in(folder) == []


def test_the_tracker_with_a_url_and_no_key_names_the_key_and_creates_nothing(
    tmp_path, not_matih
) -> None:
    folder = fresh_folder(tmp_path, "laptop")
    errors = _sdk(folder, client_env(folder, not_matih, None), "ExperimentTracker")
    assert "MATIH_API_KEY" in errors["ExperimentTracker"][2]
    assert files_in(folder) == []

"""What a serving fleet loads with the stock MLflow client is what was signed.

``mlflow.pyfunc.load_model("models:/NAME@staging")``, in a process of its own with only
the URL and a key, fetches the registry's copy of the version (written by registration
alone, signed), and the service checks each file against the signature before it sends
it: a changed byte makes the load fail, with one ``MODEL_INTEGRITY_FAILED`` event; the
same file through ``GET .../files/<path>`` is refused too. Restored, both work again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from api.helpers import error, ok, register
from matih_ml.registry.metadata import TAG_ARTIFACT_URI

STAGE = "/api/v1/models/churn/stage"

LOAD = textwrap.dedent(
    """
    import json, sys
    import mlflow.pyfunc
    import pandas as pd

    try:
        model = mlflow.pyfunc.load_model(sys.argv[1])
        x = pd.DataFrame([[0.1, 0.2, 0.3, 0.4]], columns=["0", "1", "2", "3"])
        out = {"n": len(model.predict(x))}
    except Exception as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
    print("RESULT " + json.dumps(out))
    """
)


def _load(url: str, key: str, uri: str, folder: Path) -> dict:
    """The stock client's load, from a fresh folder with only the URL and a key."""
    folder.mkdir(parents=True, exist_ok=True)
    home = folder.with_name(folder.name + "-home")  # the client's own caches go there
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_TOKEN": key,
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD, uri],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (done.returncode, done.stdout[-2000:], done.stderr[-4000:])
    return json.loads(lines[-1][len("RESULT ") :])


def _integrity_events(client) -> list[dict]:
    feed = ok(client.get("/api/v1/events", params={"types": "MODEL_INTEGRITY_FAILED"}))
    return feed["items"]


def test_the_stock_client_loads_the_signed_copy_and_a_changed_byte_is_refused(
    api, acme, globex, services, saved_sklearn_model, tmp_path
) -> None:
    register(acme.editor, saved_sklearn_model)
    ok(acme.editor.put(STAGE, json={"version": "1", "stage": "staging"}))
    # The download URI is the registry's copy, in the client's form.
    uri = ok(
        acme.viewer.get(
            "/api/2.0/mlflow/model-versions/get-download-uri",
            params={"name": "churn", "version": "1"},
        )
    )["artifact_uri"]
    assert uri == "mlflow-artifacts:/models/churn/1"
    # Another tenant's key does not learn it.
    other = globex.viewer.get(
        "/api/2.0/mlflow/model-versions/get-download-uri",
        params={"name": "churn", "version": "1"},
    )
    assert other.status_code == 404 and other.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    loaded = _load(api.url, acme.keys["viewer"], "models:/churn@staging", tmp_path / "a")
    assert loaded == {"n": 1}, loaded

    folder = Path(services.registry.version_tags(acme.tenant_id, "churn", "1")[TAG_ARTIFACT_URI])
    stored = next(folder / n for n in ("model.pkl", "model.skops") if (folder / n).is_file())
    original = stored.read_bytes()
    middle = len(original) // 2
    stored.write_bytes(
        original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
    )

    refused = _load(api.url, acme.keys["viewer"], "models:/churn@staging", tmp_path / "b")
    assert "error" in refused, refused
    assert "failed verification" in refused["message"] and stored.name in refused["message"]
    # The same file over REST: refused; the others, and the signature, are sent.
    files = "/api/v1/models/churn/versions/1/files"
    err = error(acme.viewer.get(f"{files}/{stored.name}"), 409, "MODEL_INTEGRITY_FAILED")
    assert err["details"]["where"] == "download" and err["details"]["files"] == [stored.name]
    assert acme.viewer.get(f"{files}/MLmodel").status_code == 200
    assert acme.viewer.get(f"{files}/model.sig").status_code == 200
    # Through the MLflow door's artifact route too, in MLflow's error format.
    door = acme.viewer.get(f"/api/2.0/mlflow-artifacts/artifacts/models/churn/1/{stored.name}")
    assert door.status_code == 409, door.text
    assert door.json()["error_code"] == "RESOURCE_CONFLICT"
    events = _integrity_events(acme.viewer)
    assert len(events) == 1, events
    assert (events[0]["data"]["where"], events[0]["data"]["files"]) == ("download", [stored.name])

    stored.write_bytes(original)
    again = _load(api.url, acme.keys["viewer"], "models:/churn@staging", tmp_path / "c")
    assert again == {"n": 1}, again
    assert acme.viewer.get(f"{files}/{stored.name}").content == original
    # Each load ran in its own fresh folder, and left nothing there.
    for name in ("a", "b", "c"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [], name

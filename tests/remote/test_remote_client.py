"""The SDK and the CLI as a data scientist runs them on another machine: processes of
their own, in fresh folders, with only the server's URL and a key, against `matih-ml
serve` (issue 19, "Done when": the story, the role and tenant rules, and one version
for sixteen racing registrations).

One server per profile (the embedded default; PostgreSQL with S3 over moto's server,
slow and skipped where PostgreSQL is not running, except under CI=true), with keys made
by the operator's CLI before it starts (:mod:`served`).

1. The story (:mod:`remote_client`, one process): a run with 10,000 buffered points and
   a model, registered by `matih-ml models register --run-id-file`, a policy, an
   approval by another person, promotion, a prediction, a second version, a rollback,
   the history and the events, a training job. The tests assert on what each step
   printed, and that the folder holds only what the script wrote.
2. Role and tenant rules through the CLI and the SDK: a viewer cannot write, tenant B
   sees nothing of A's, and --force needs an admin.
3. Sixteen callers register the same run at once through the SDK, the CLI and REST: one
   version, the same answer for everyone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import remote_client

from remote.served import (
    PROFILES,
    TENANT_A,
    TENANT_B,
    Done,
    Served,
    client_env,
    files_in,
    fresh_folder,
    matih,
    serve,
    write_training_table,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

MODEL = remote_client.MODEL


@pytest.fixture(scope="module", params=PROFILES)
def served(request, tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"remote-{request.param}")
    with serve(request.param, tmp) as s:
        # The job's table, where the operator's MATIH_TRAINING_DATA_ROOT puts it.
        write_training_table(s, TENANT_A)
        yield s


def rest(served: Served, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=served.url, timeout=120, headers={"Authorization": f"Bearer {served.keys[key]}"}
    )


# ------------------------------------------------------------------ 1. the story


@dataclass
class Story:
    steps: dict[str, Any]
    files: list[str]

    def cli(self, step: str) -> Any:
        """What a CLI step printed; fails with its output unless it exited 0."""
        seen = self.steps[step]
        assert seen["rc"] == 0, f"{step}: {json.dumps(seen)[:3000]}"
        return seen["out"]

    def sdk(self, step: str) -> Any:
        seen = self.steps[step]
        assert "ok" in seen, f"{step}: {json.dumps(seen)[:3000]}"
        return seen["ok"]


@pytest.fixture(scope="module")
def story(served: Served, tmp_path_factory) -> Story:
    tmp = tmp_path_factory.mktemp("story")
    home = fresh_folder(tmp, "laptop")
    out = tmp / "steps.json"  # outside the folder
    env = client_env(
        home,
        served.url,
        served.keys["editor"],
        MATIH_APPROVER_KEY=served.keys["approver"],
        MATIH_ADMIN_KEY=served.keys["admin"],
    )
    done = subprocess.run(
        [sys.executable, remote_client.__file__, str(out)],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-5000:]
    return Story(json.loads(out.read_text()), files_in(home))


def test_a_run_with_10000_buffered_points_and_a_model_through_the_sdk(story: Story) -> None:
    me = story.sdk("whoami")
    assert (me["tenant_id"], me["roles"], me["owner"]) == (TENANT_A, ["editor"], "ana")
    run_id = story.sdk("train_v1")
    assert story.steps["points"] == {
        "loss": remote_client.LOSS_STEPS,
        "acc": remote_client.PAIR_STEPS,
        "val_loss": remote_client.PAIR_STEPS,
    }
    run = story.steps["run"]
    assert run["status"] == "FINISHED" and run["params"] == {"C": "1.0"}
    assert run["tags"]["matih.tenant_id"] == TENANT_A and run["tags"]["matih.user_id"] == "ana"
    assert "model/MLmodel" in story.steps["run_artifacts"]
    assert story.cli("register_v1")["run_id"] == run_id


def test_the_cli_registers_the_run_id_file_into_staging(story: Story) -> None:
    for v in ("1", "2"):
        assert story.cli(f"register_v{v}") == {
            "model_id": MODEL,
            "version": v,
            "stage": "staging",
            "run_id": story.sdk(f"train_v{v}"),
            "created": True,
        }


def test_production_needs_the_policys_approval_by_another_person(story: Story) -> None:
    policy = story.cli("policy")
    assert policy["source"] == "tenant" and policy["policy"]["production"]["require_approval"]
    refused = story.steps["promote_unapproved"]
    assert refused["rc"] == 1 and refused["out"]["error"]["code"] == "GATE_FAILED", refused
    assert "approv" in refused["out"]["error"]["message"]
    for v in ("1", "2"):
        asked = story.cli(f"request_v{v}")
        assert (asked["version"], asked["status"], asked["requested_by"]) == (v, "pending", "ana")
        granted = story.cli(f"approve_v{v}")
        assert (granted["id"], granted["status"], granted["decided_by"]) == (
            asked["id"],
            "approved",
            "bob",
        )
    promoted = story.cli("promote_v1")
    assert (promoted["stage"], promoted["current_version"]) == ("production", "1")
    promoted = story.cli("promote_v2")
    assert (promoted["stage"], promoted["current_version"]) == ("production", "2")


def test_the_client_predicts_with_the_version_in_production(story: Story) -> None:
    for v in ("1", "2"):
        answer = story.sdk(f"predict_v{v}")
        assert (answer["version"], answer["target"]) == (v, "production")
        assert answer["predictions"] == story.steps[f"local_predictions_v{v}"]
    assert story.sdk("predict_after_rollback") == "1"


def test_rollback_history_and_events(story: Story) -> None:
    back = story.cli("rollback")
    assert (back["stage"], back["current_version"]) == ("production", "1")
    moves = [(m["version"], m["from_stage"], m["to_stage"]) for m in story.cli("history")]
    assert moves == [
        ("1", "development", "staging"),
        ("1", "staging", "production"),
        ("2", "development", "staging"),
        ("1", "production", "archived"),
        ("2", "staging", "production"),
        ("2", "production", "development"),
        ("1", "archived", "production"),
    ]
    assert [m["reason"] for m in story.cli("history")][-2:] == ["v2 regressed"] * 2
    # The key's subject (its name) is the actor; approvals compare owners.
    assert {m["actor"] for m in story.cli("history")} == {story.sdk("whoami")["subject"]}

    events = story.cli("events")
    mine = [e for e in events if e["subject"] == MODEL]
    changed = [
        (e["data"]["version"], e["data"]["from_stage"], e["data"]["to_stage"])
        for e in mine
        if e["type"] == "MODEL_STAGE_CHANGED"
    ]
    assert changed == moves
    assert Counter(e["data"]["version"] for e in mine if e["type"] == "MODEL_REGISTERED") == {
        "1": 1,
        "2": 1,
    }
    assert [e["type"] for e in mine if e["type"].startswith("APPROVAL_")] == [
        "APPROVAL_REQUESTED",
        "APPROVAL_APPROVED",
    ] * 2
    runs = {story.sdk("train_v1"), story.sdk("train_v2")}
    training = Counter(
        (e["type"], e["data"]["run_id"]) for e in events if e["type"].startswith("MODEL_TRAINING")
    )
    assert training == {
        (t, r): 1 for r in runs for t in ("MODEL_TRAINING_STARTED", "MODEL_TRAINING_COMPLETED")
    }
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)


def test_the_sdk_registry_reads_what_the_cli_did(story: Story) -> None:
    assert story.sdk("sdk_get_model") == {
        "stage": "production",
        "current_version": "1",
        "versions": ["1", "2"],
    }


def test_a_training_job_submitted_and_followed_by_the_cli(story: Story) -> None:
    job = story.cli("job")
    assert (job["status"], job["outcome"], job["model_name"]) == (
        "succeeded",
        "registered",
        remote_client.JOB_MODEL,
    )
    result = job["result"]
    assert (result["registered_version"], result["stage"], result["rows"]) == ("1", "staging", 400)
    assert job["reason"].startswith("registered v1: accuracy ")
    assert story.sdk("sdk_job") == "succeeded"


def test_the_folder_holds_only_what_the_script_wrote(story: Story) -> None:
    """No .matih, no mlruns, no profile or cache of ours: the script's own files only."""
    top = sorted({f.split("/")[0] for f in story.files})
    assert top == sorted(remote_client.WRITES), story.files


# ------------------------------------------------------------------ a run to register


@pytest.fixture(scope="module")
def a_run(story: Story) -> str:
    """A run of tenant A with a model under model/: the story's first."""
    return story.sdk("train_v1")


# ------------------------------------------------------------------ 2. roles and tenants


class As:
    """The CLI in a fresh folder with one key of the server's (or none)."""

    def __init__(self, served: Served, tmp: Path, who: str) -> None:
        self.folder = fresh_folder(tmp, who)
        self.env = client_env(self.folder, served.url, served.keys[who])

    def __call__(self, *args: str) -> Done:
        return matih(self.folder, self.env, *args)


@pytest.fixture(scope="module")
def people(served: Served, tmp_path_factory) -> dict[str, As]:
    tmp = tmp_path_factory.mktemp("people")
    return {who: As(served, tmp, who) for who in served.keys}


@pytest.fixture(scope="module")
def rules_model(people, a_run) -> str:
    """Tenant A's model "rules", version 1 in staging (registered by the editor)."""
    done = people["editor"](
        "models", "register", "--run-id", a_run, "--name", "rules", "--stage", "staging", "--json"
    )
    assert done.rc == 0 and done.out["stage"] == "staging", done
    return "rules"


def test_a_viewer_key_reads_but_cannot_write(people, rules_model, a_run) -> None:
    viewer = people["viewer"]
    assert rules_model in [m["name"] for m in viewer("models", "list", "--json").out]
    policy_before = people["admin"]("policy", "show", "--json").out

    refused = viewer("models", "register", "--run-id", a_run, "--name", "by-viewer", "--json")
    assert refused.error["code"] == "FORBIDDEN", refused
    assert "viewer" in refused.error["message"]
    # Without --json: one line on stderr, nothing on stdout.
    plain = viewer("models", "register", "--run-id", a_run, "--name", "by-viewer")
    assert plain.rc == 1 and plain.stdout == ""
    assert plain.stderr.startswith("error (FORBIDDEN): ") and plain.stderr.count("\n") == 1

    policy = viewer.folder / "policy.json"
    policy.write_text(json.dumps({"production": {"require_approval": False}}))
    refused = viewer("policy", "set", "-f", str(policy), "--json")
    assert refused.error["code"] == "FORBIDDEN", refused
    refused = viewer("models", "promote", rules_model, "1", "--stage", "production", "--json")
    assert refused.error["code"] == "FORBIDDEN", refused

    # Nothing was written: no model "by-viewer", the same policy.
    assert "by-viewer" not in [m["name"] for m in people["admin"]("models", "list", "--json").out]
    assert people["admin"]("policy", "show", "--json").out == policy_before


def test_tenant_bs_key_sees_nothing_of_as(people, rules_model, a_run) -> None:
    b = people["b_admin"]
    assert b("models", "list", "--json").out == []
    missing = b("models", "show", rules_model, "--json")
    assert missing.error["code"] == "NOT_FOUND", missing
    assert rules_model in missing.error["message"]
    # A's run cannot be registered into a model of B's.
    stolen = b("models", "register", "--run-id", a_run, "--name", "stolen", "--json")
    assert stolen.error["code"] == "NOT_FOUND", stolen
    assert b("models", "list", "--json").out == []
    assert b("approvals", "list", "--json").out == []
    events = b("events", "list", "--limit", "1000", "--json").out
    assert all(e["tenant_id"] == TENANT_B for e in events), events
    assert not [e for e in events if e["subject"] == rules_model or a_run in e["subject"]]
    # Asking for A by name is refused, naming both tenants.
    other = b("models", "show", rules_model, "--tenant", TENANT_A, "--json")
    assert other.error["code"] == "VALIDATION_ERROR", other
    assert f"'{TENANT_A}'" in other.error["message"]
    assert f"'{TENANT_B}'" in other.error["message"]


def test_force_needs_an_admin_and_a_reason(people, rules_model) -> None:
    editor, admin = people["editor"], people["admin"]
    promote = ("models", "promote", rules_model, "1", "--stage", "production")
    gated = editor(*promote, "--json")
    assert gated.error["code"] == "GATE_FAILED", gated  # no approval
    refused = editor(*promote, "--force", "--reason", "hotfix", "--json")
    assert refused.error["code"] == "FORBIDDEN", refused
    assert "admin" in refused.error["message"]
    unexplained = admin(*promote, "--force", "--json")
    assert unexplained.error["code"] == "VALIDATION_ERROR", unexplained
    assert "reason" in unexplained.error["message"]

    forced = admin(*promote, "--force", "--reason", "hotfix", "--json")
    assert forced.rc == 0, forced
    assert (forced.out["stage"], forced.out["current_version"]) == ("production", "1")
    last = admin("models", "history", rules_model, "--json").out[-1]
    assert (last["to_stage"], last["forced"], last["reason"]) == ("production", True, "hotfix")
    assert last["actor"].startswith("admin-key-")


def test_verify_and_bom_with_only_a_url_and_a_key(people, rules_model) -> None:
    """Issue 22's reports from another machine: a viewer verifies and reads the BOM of
    A's version; B's key gets NOT_FOUND for both."""
    viewer, b = people["viewer"], people["b_admin"]
    checked = viewer("models", "verify", rules_model, "1", "--json")
    assert checked.rc == 0, checked
    assert (checked.out["status"], checked.out["promotable"]) == ("verified", True), checked
    assert checked.out["key_id"], checked
    plain = viewer("models", "bom", rules_model, "1")
    assert plain.rc == 0, plain
    doc = json.loads(plain.stdout)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    component = doc["metadata"]["component"]
    assert (component["type"], component["name"], component["version"]) == (
        "machine-learning-model",
        rules_model,
        "1",
    )
    props = {p["name"]: p["value"] for p in component["properties"]}
    assert props["matih:signature"] == "signed"
    assert props["matih:signature.key_id"] == checked.out["key_id"]
    assert any(c["type"] == "library" for c in doc["components"]), doc["components"]
    for command in ("verify", "bom"):
        refused = b("models", command, rules_model, "1", "--json")
        assert refused.error["code"] == "NOT_FOUND", (command, refused)


def test_the_cli_wrote_nothing_in_the_folders_it_ran_in(people) -> None:
    """No profile, no .matih, no cache: only the policy file the viewer's test wrote."""
    written = {who: files_in(person.folder) for who, person in people.items()}
    ours = {"viewer": ["policy.json"]}
    assert all(files in ([], ours.get(who)) for who, files in written.items()), written


def test_the_sdk_refuses_a_tenant_id_other_than_the_keys(served: Served) -> None:
    from matih_ml.errors import ValidationError
    from matih_ml.sdk import ModelRegistry, TrainingJobs

    registry = ModelRegistry(url=served.url, api_key=served.keys["editor"])
    assert registry.remote
    with pytest.raises(ValidationError) as caught:
        asyncio.run(registry.list_models(TENANT_B))
    message = caught.value.message
    assert f"'{TENANT_B}'" in message and f"'{TENANT_A}'" in message and served.url in message
    jobs = TrainingJobs(url=served.url, api_key=served.keys["b_admin"])
    with pytest.raises(ValidationError) as caught:
        asyncio.run(jobs.list(TENANT_A))
    assert f"'{TENANT_A}'" in caught.value.message and f"'{TENANT_B}'" in caught.value.message
    # Its own tenant works.
    assert [m.name for m in asyncio.run(registry.list_models(TENANT_A))]


# ------------------------------------------------------------------ 3. sixteen at once

RACE_MODEL = "race"
SDK_CALLERS, CLI_CALLERS, REST_CALLERS = 6, 5, 5

# The CLI's own entry point (what the `matih-ml` script calls), in a process that has
# imported it and waits at a start line, so that its request races the others instead of
# arriving after a second of Python start-up.
HELD_CLI = """
import sys, time
from pathlib import Path
import matih_ml.client, matih_ml.cli.models
from matih_ml.cli import app
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.argv = ["matih-ml", *sys.argv[3:]]
app()
"""


def test_sixteen_callers_register_the_same_run_at_once_one_version(
    served: Served, a_run: str, tmp_path
) -> None:
    from matih_ml.sdk import ModelRegistry

    total = SDK_CALLERS + CLI_CALLERS + REST_CALLERS
    barrier = threading.Barrier(total)
    go = tmp_path / "go"
    keys = [served.keys["editor"], served.keys["admin"]]

    def sdk(i: int) -> dict:
        registry = ModelRegistry(url=served.url, api_key=keys[i % 2])
        asyncio.run(registry.list_models(TENANT_A))  # connected and checked first
        barrier.wait()
        v = asyncio.run(registry.create_version(TENANT_A, RACE_MODEL, a_run))
        return {"via": "sdk", "version": v.version, "created": None}

    def cli(i: int) -> dict:
        folder = fresh_folder(tmp_path, f"cli-{i}")
        ready = tmp_path / f"ready-{i}"
        args = ["models", "register", "--run-id", a_run, "--name", RACE_MODEL, "--json"]
        proc = subprocess.Popen(
            [sys.executable, "-c", HELD_CLI, str(ready), str(go), *args],
            cwd=folder,
            env=client_env(folder, served.url, keys[i % 2]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        barrier.wait()
        go.touch()
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        out = json.loads(stdout)
        assert files_in(folder) == [], files_in(folder)
        return {"via": "cli", "version": out["version"], "created": out["created"]}

    def via_rest(i: int) -> dict:
        with httpx.Client(
            base_url=served.url, timeout=120, headers={"Authorization": f"Bearer {keys[i % 2]}"}
        ) as c:
            c.get("/api/v1/whoami").raise_for_status()  # connected first
            barrier.wait()
            if i % 2:
                r = c.post(f"/api/v1/models/{RACE_MODEL}/versions", json={"run_id": a_run})
                assert r.status_code in (200, 201), r.text
                return {
                    "via": "rest",
                    "version": r.json()["version"],
                    "created": r.json()["created"],
                }
            r = c.post("/api/v1/models", json={"name": RACE_MODEL, "run_id": a_run})
            assert r.status_code in (200, 201), r.text
            body = r.json()
            return {
                "via": "rest",
                "version": body["registered_version"],
                "created": body["created"],
            }

    callers = (
        [lambda i=i: sdk(i) for i in range(SDK_CALLERS)]
        + [lambda i=i: cli(i) for i in range(CLI_CALLERS)]
        + [lambda i=i: via_rest(i) for i in range(REST_CALLERS)]
    )
    results: list[Any] = [None] * total
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = callers[n]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(total)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert Counter(r["via"] for r in results) == {
        "sdk": SDK_CALLERS,
        "cli": CLI_CALLERS,
        "rest": REST_CALLERS,
    }
    # Everyone got the same version, and it is the only one.
    assert {r["version"] for r in results} == {"1"}, results
    assert sum(1 for r in results if r["created"]) <= 1, results
    with rest(served, "viewer") as viewer:
        versions = viewer.get(f"/api/v1/models/{RACE_MODEL}/versions").json()["items"]
        assert [(v["version"], v["run_id"]) for v in versions] == [("1", a_run)]
        events = viewer.get("/api/v1/events", params={"after": 0, "limit": 1000}).json()["items"]
    registered = [
        e for e in events if e["type"] == "MODEL_REGISTERED" and e["subject"] == RACE_MODEL
    ]
    assert [e["data"]["version"] for e in registered] == ["1"]

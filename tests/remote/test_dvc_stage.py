"""docs/dvc.md's pipeline with real DVC (from PyPI) against `matih-ml serve`: a training
stage logs a run through the SDK, the documented `register_model` stage registers it
into staging; `dvc repro` twice gives one version, and the second changes nothing
(issue 19, "Done when"). The registration records the data stage's output hash from
dvc.lock on the run, and the lineage query by that hash answers the run and the
version, for the tenant only (issue 22, "Done when")."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from remote.served import (
    TENANT_A,
    TENANT_B,
    Served,
    client_env,
    files_in,
    fresh_folder,
    matih,
    serve,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HERE = Path(__file__).parent
DOC = (HERE.parent.parent / "docs" / "dvc.md").read_text()
[PIPELINE] = [b for b in re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S) if "stages:" in b]
REGISTER = "matih-ml models register --run-id-file data/models/run_id.json --stage staging"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("dvc-server")
    keys = {"editor": (TENANT_A, "editor", "ana"), "b_viewer": (TENANT_B, "viewer", "gus")}
    with serve("embedded", tmp, keys) as s:
        yield s


def _run(folder: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        list(argv), cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (argv, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def _versions(served: Served, model: str) -> list[tuple[str, str]]:
    answer = httpx.get(
        f"{served.url}/api/v1/models/{model}/versions",
        headers={"Authorization": f"Bearer {served.keys['editor']}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return [(v["version"], v["stage"]) for v in answer.json()["items"]]


def _lineage(served: Served, key: str, dataset: str) -> dict:
    answer = httpx.get(
        f"{served.url}/api/v1/lineage",
        params={"dataset": dataset},
        headers={"Authorization": f"Bearer {served.keys[key]}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_documented_stage_is_the_last_and_registers_into_staging() -> None:
    stages = yaml.safe_load(PIPELINE)["stages"]
    assert list(stages) == ["prepare", "train", "register_model"]
    assert stages["register_model"] == {
        "cmd": REGISTER,
        "deps": ["data/models/run_id.json"],
    }
    assert stages["prepare"]["outs"] == ["data/prepared.csv"]
    assert "data/prepared.csv" in stages["train"]["deps"]
    assert stages["train"]["outs"] == ["data/models/run_id.json"]


def test_dvc_repro_twice_registers_one_version_in_staging(served: Served, tmp_path) -> None:
    repo = fresh_folder(tmp_path, "pipeline")
    env = client_env(repo, served.url, served.keys["editor"])
    _run(repo, env, "git", "init", "-q", ".")
    _run(repo, env, "dvc", "init", "-q")
    # DVC keeps a per-repository cache under /var/tmp by default; this one's stays here.
    _run(repo, env, "dvc", "config", "--local", "core.site_cache_dir", str(tmp_path / "site"))
    shutil.copy(HERE / "prepare_stage.py", repo / "prepare.py")
    shutil.copy(HERE / "train_stage.py", repo / "train.py")
    (repo / "dvc.yaml").write_text(PIPELINE)
    before = set(files_in(repo))

    first = _output(_run(repo, env, "dvc", "repro"))
    assert "Running stage 'train'" in first and "Running stage 'register_model'" in first
    assert "Registered: churn version 1 (staging)." in first
    run_id = json.loads((repo / "data/models/run_id.json").read_text())["run_id"]
    assert _versions(served, "churn") == [("1", "staging")]

    # The registration recorded the data stage's output from dvc.lock on the run: the
    # lineage query by its md5 answers the run and the version; another tenant, nothing.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    [prepared] = lock["prepare"]["outs"]
    md5 = prepared["md5"]
    assert "Recorded 1 data input(s) from dvc.lock." in first
    found = _lineage(served, "editor", md5)
    assert found["dataset"] == f"md5:{md5}"
    assert [
        (
            r["run_id"],
            r["datasets"],
            [(v["model_id"], v["version"], v["stage"]) for v in r["versions"]],
        )
        for r in found["runs"]
    ] == [
        (
            run_id,
            [
                {
                    "name": "data/prepared.csv",
                    "digest": f"md5:{md5}",
                    "uri": "data/prepared.csv",
                    "source_type": "dvc",
                }
            ],
            [("churn", "1", "staging")],
        )
    ]
    assert _lineage(served, "editor", "data/prepared.csv")["runs"][0]["run_id"] == run_id
    assert _lineage(served, "b_viewer", f"md5:{md5}")["runs"] == []
    assert _lineage(served, "b_viewer", "data/prepared.csv")["runs"] == []

    second = _output(_run(repo, env, "dvc", "repro"))
    assert "Stage 'train' didn't change, skipping" in second
    assert "Stage 'register_model' didn't change, skipping" in second
    assert "Data and pipelines are up to date." in second
    assert json.loads((repo / "data/models/run_id.json").read_text())["run_id"] == run_id
    assert _versions(served, "churn") == [("1", "staging")]

    # Forced, the registration stage runs again and changes nothing; so does its command
    # run by hand, twice.
    forced = _output(_run(repo, env, "dvc", "repro", "--force", "--single-item", "register_model"))
    assert "Already registered: churn version 1 (staging)." in forced
    for _ in range(2):
        again = matih(repo, env, *REGISTER.split()[1:])
        assert again.rc == 0, again
        assert again.stderr.strip() == "Already registered: churn version 1 (staging)."
    assert _versions(served, "churn") == [("1", "staging")]

    # Only the stages' outputs (and DVC's .gitignores and lock for them) are new besides
    # git's and DVC's own folders: no mlruns/, no .matih/.
    ours = sorted(f for f in set(files_in(repo)) - before if not f.startswith((".git/", ".dvc/")))
    assert ours == [
        "data",
        "data/.gitignore",
        "data/models",
        "data/models/.gitignore",
        "data/models/run_id.json",
        "data/prepared.csv",
        "dvc.lock",
    ]

"""Data lineage over REST: a run's inputs recorded by URI and digest (MLflow dataset
inputs and the tenant's index), and ``GET /api/v1/lineage`` from a dataset to the runs,
the versions registered from them, and when those served production (issue 22, item 4)."""

from __future__ import annotations

import json

from api.helpers import error, ok, run_with_model
from matih_ml.tenancy import tenant_scope

MD5 = "0f343b0931126a20f133d67c2b018a3b"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PREPARED = {
    "name": "data/prepared.csv",
    "digest": f"md5:{MD5}",
    "uri": "data/prepared.csv",
    "source_type": "dvc",
}
TABLE = {"name": "events", "digest": f"sha256:{SHA256}", "uri": "s3://lake/events.parquet"}


def _inputs(client, run_id: str, *datasets: dict):
    return client.post(f"/api/v1/runs/{run_id}/inputs", json={"datasets": list(datasets)})


def _lineage(client, dataset: str | None):
    return client.get("/api/v1/lineage", params={} if dataset is None else {"dataset": dataset})


def test_recorded_inputs_lead_to_the_run_its_version_and_its_production_spell(
    acme, globex, services, saved_sklearn_model
) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    recorded = ok(_inputs(acme.editor, run_id, PREPARED, TABLE))
    assert recorded["run_id"] == run_id
    assert [d["name"] for d in recorded["datasets"]] == ["data/prepared.csv", "events"]
    # Recording again (a re-run of the pipeline's stage) changes nothing.
    assert ok(_inputs(acme.editor, run_id, {**PREPARED, "digest": MD5.upper()})) == recorded

    # MLflow holds them as the run's dataset inputs: the digest as far as its 36
    # characters go, the whole one in the profile.
    with tenant_scope(acme.tenant_id):
        found = services.backend.client.get_run(run_id).inputs.dataset_inputs
    by_name = {d.dataset.name: d.dataset for d in found}
    assert by_name["data/prepared.csv"].digest == f"md5:{MD5}"
    assert by_name["data/prepared.csv"].source_type == "dvc"
    assert json.loads(by_name["events"].source) == {"uri": "s3://lake/events.parquet"}
    assert json.loads(by_name["events"].profile) == {"digest": f"sha256:{SHA256}"}

    # Read before any version: the run, no versions.
    before = ok(_lineage(acme.viewer, f"md5:{MD5}"))
    assert before["matched_by"] == "digest"
    assert [(r["run_id"], r["versions"]) for r in before["runs"]] == [(run_id, [])]

    ok(acme.editor.post("/api/v1/models", json={"name": "churn", "run_id": run_id}), 201)
    for stage in ("staging", "production"):
        move = {"version": "1", "stage": stage, "force": True, "reason": "lineage test"}
        ok(acme.admin.put("/api/v1/models/churn/stage", json=move))

    answer = ok(_lineage(acme.viewer, MD5))  # bare hex: an md5 by its length
    assert answer["dataset"] == f"md5:{MD5}"
    [run] = answer["runs"]
    assert run["run_id"] == run_id and run["datasets"] == [PREPARED]
    [version] = run["versions"]
    assert (version["model_id"], version["version"], version["stage"]) == (
        "churn",
        "1",
        "production",
    )
    [spell] = version["production"]
    assert spell["until"] is None and spell["since"]

    by_uri = ok(_lineage(acme.viewer, "s3://lake/events.parquet"))
    assert by_uri["matched_by"] == "uri"
    assert [r["run_id"] for r in by_uri["runs"]] == [run_id]
    assert ok(_lineage(acme.viewer, f"sha256:{SHA256}"))["runs"][0]["run_id"] == run_id
    assert ok(_lineage(acme.viewer, "md5:" + "0" * 32))["runs"] == []

    # Another tenant's query by the same digest or URI finds nothing.
    assert ok(_lineage(globex.viewer, f"md5:{MD5}"))["runs"] == []
    assert ok(_lineage(globex.viewer, "s3://lake/events.parquet"))["runs"] == []


def test_another_tenants_key_cannot_add_inputs_nor_see_them(
    acme, globex, saved_sklearn_model
) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    ok(_inputs(acme.editor, run_id, PREPARED))
    error(_inputs(globex.admin, run_id, TABLE), 404)
    for key in (globex.viewer, globex.admin):
        assert ok(_lineage(key, f"md5:{MD5}"))["runs"] == []
    # Nothing of A's changed: still one input.
    assert [r["datasets"] for r in ok(_lineage(acme.viewer, f"md5:{MD5}"))["runs"]] == [[PREPARED]]
    assert ok(_lineage(acme.viewer, f"sha256:{SHA256}"))["runs"] == []


def test_a_viewer_may_query_but_not_add_inputs(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    err = error(_inputs(acme.viewer, run_id, PREPARED), 403, "FORBIDDEN")
    assert err["details"]["permission"] == "write"
    assert ok(_lineage(acme.viewer, f"md5:{MD5}"))["runs"] == []


def test_bad_input_is_a_4xx_json_error(acme, saved_sklearn_model) -> None:
    run_id = run_with_model(acme.editor, saved_sklearn_model)
    error(_lineage(acme.viewer, None), 422)
    for bad in ("md5:xyz", "sha256:abcd", "sha1:" + "g" * 40, "crc:1234", "md5:"):
        err = error(_lineage(acme.viewer, bad), 422, "VALIDATION_ERROR")
        assert err["details"]["field"] == "dataset", bad
    error(_inputs(acme.editor, run_id, {**PREPARED, "digest": "md5:nothex"}), 422)
    error(_inputs(acme.editor, run_id, {**PREPARED, "uri": ""}), 422)
    error(_inputs(acme.editor, run_id, {**PREPARED, "source_type": "Not A Type"}), 422)
    error(_inputs(acme.editor, run_id, {k: v for k, v in PREPARED.items() if k != "digest"}), 422)
    error(acme.editor.post(f"/api/v1/runs/{run_id}/inputs", json={"datasets": []}), 422)
    error(_inputs(acme.editor, "f" * 32, PREPARED), 404)
    error(_inputs(acme.editor, "not-a-run", PREPARED), 422)

import pytest

from api.helpers import error, new_run, ok


def test_run_lifecycle_and_metric_history(acme) -> None:
    run_id = new_run(acme.editor, "exp-a", run_name="r1", tags={"k": "v"}, job_id="job-1")
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["status"] == "RUNNING" and run["run_name"] == "r1"
    assert run["tags"]["matih.tenant_id"] == acme.tenant_id
    assert run["tags"]["matih.user_id"] == "editor-key"
    assert run["tags"]["matih.job_id"] == "job-1" and run["tags"]["k"] == "v"
    points = [{"key": "loss", "value": 1.0 / (s + 1), "step": s} for s in range(2500)]
    assert (
        ok(
            acme.editor.post(
                f"/api/v1/runs/{run_id}/log-batch", json={"metrics": points, "params": {"lr": 0.1}}
            )
        )["metrics_written"]
        == 2500
    )
    steps = []
    token = None
    while True:
        page = ok(
            acme.viewer.get(
                f"/api/v1/runs/{run_id}/metrics/loss/history",
                params={"max_results": 1000, **({"page_token": token} if token else {})},
            )
        )
        steps += [p["step"] for p in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert sorted(steps) == list(range(2500))
    ended = ok(acme.editor.post(f"/api/v1/runs/{run_id}/end", json={"status": "FAILED"}))
    assert ended["status"] == "FAILED" and ended["params"] == {"lr": "0.1"}


def test_a_metric_key_with_slashes_has_a_history(acme) -> None:
    run_id = new_run(acme.editor, "exp-slash")
    points = [{"key": "train/loss", "value": 1.0 / (s + 1), "step": s} for s in range(50)]
    ok(acme.editor.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": points}))
    for key in ("train/loss", "train%2Floss"):
        page = ok(acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/{key}/history"))
        assert [p["step"] for p in page["items"]] == list(range(50))
        assert page["items"][0]["key"] == "train/loss"
        chart = ok(
            acme.viewer.get(
                f"/api/v1/runs/{run_id}/metrics/{key}/history", params={"max_points": 10}
            )
        )
        assert chart["key"] == "train/loss" and chart["total"] == 50
    bad = error(acme.viewer.get(f"/api/v1/runs/{run_id}/metrics/train%2F..%2Fx/history"), 422)
    assert bad["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "body",
    [
        {"metrics": [{"key": "bad key!", "value": 1}]},
        {"metrics": [{"key": "loss", "value": "x"}]},
        {"metrics": [{"key": "loss", "value": 1, "step": -1}]},
        {"metrics": [{"key": "loss", "value": 1, "step": 2**64}]},
        {"metrics": [{"key": "ok", "value": 1}, {"key": "../x", "value": 2}]},
        {"metrics": [{"key": "loss", "value": 1}] * 10_001},
        {"params": {"p": "x" * 7000}},
        {"tags": {"matih.tenant_id": "other"}},
        {"metrics": "nope"},
    ],
)
def test_bad_batches_are_422_and_write_nothing(acme, body) -> None:
    run_id = new_run(acme.editor)
    error(acme.editor.post(f"/api/v1/runs/{run_id}/log-batch", json=body), 422)
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["metrics"] == {} and run["params"] == {}
    assert run["tags"]["matih.tenant_id"] == acme.tenant_id


def test_nan_and_infinity_are_refused(acme) -> None:
    run_id = new_run(acme.editor)
    for raw in (
        b'{"metrics":[{"key":"l","value":NaN}]}',
        b'{"metrics":[{"key":"l","value":Infinity}]}',
    ):
        r = acme.editor.post(
            f"/api/v1/runs/{run_id}/log-batch",
            content=raw,
            headers={"content-type": "application/json"},
        )
        error(r, 422)
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))["metrics"] == {}


def test_experiments_runs_and_compare(acme) -> None:
    ids = []
    for i in range(3):
        rid = new_run(acme.editor, "exp-cmp")
        ok(
            acme.editor.post(
                f"/api/v1/runs/{rid}/log-batch",
                json={"metrics": [{"key": "loss", "value": i}], "params": {"i": i}},
            )
        )
        ids.append(rid)
    exps = ok(acme.viewer.get("/api/v1/experiments"))["items"]
    assert [e["name"] for e in exps] == ["exp-cmp"]
    exp_id = exps[0]["experiment_id"]
    assert ok(acme.viewer.get(f"/api/v1/experiments/{exp_id}"))["name"] == "exp-cmp"
    runs = ok(acme.viewer.get(f"/api/v1/experiments/{exp_id}/runs", params={"max_results": 2}))
    assert len(runs["items"]) == 2 and runs["next_page_token"]
    rest = ok(
        acme.viewer.get(
            f"/api/v1/experiments/{exp_id}/runs", params={"page_token": runs["next_page_token"]}
        )
    )
    assert {r["run_id"] for r in runs["items"] + rest["items"]} == set(ids)
    cmp = ok(
        acme.viewer.get(
            "/api/v1/experiments/compare",
            params={"run_ids": ",".join(ids), "metrics": "loss,absent"},
        )
    )
    assert [c["run_id"] for c in cmp] == ids
    assert cmp[2]["metrics"] == {"loss": 2.0, "absent": None} and cmp[2]["parameters"] == {"i": "2"}
    error(acme.viewer.get("/api/v1/experiments/compare", params={"run_ids": "zz"}), 422)
    error(acme.viewer.get("/api/v1/experiments/999999/runs"), 404)
    error(acme.viewer.get("/api/v1/experiments/abc"), 422)


def test_artifacts_upload_list_download(acme) -> None:
    run_id = new_run(acme.editor)
    ok(acme.editor.put(f"/api/v1/runs/{run_id}/artifacts/plots/loss.csv", content=b"1,2\n"), 201)
    listing = ok(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts"))
    assert listing == [{"path": "plots", "is_dir": True, "file_size": None}]
    inner = ok(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts", params={"path": "plots"}))
    assert [a["path"] for a in inner] == ["plots/loss.csv"]
    got = acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts/plots/loss.csv")
    assert got.status_code == 200 and got.content == b"1,2\n"
    error(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts/plots/none.csv"), 404)
    error(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts/plots"), 422)


@pytest.mark.parametrize(
    "path",
    ["../escape.txt", "a/../../b", "..%2F..%2Fetc", "%2Fetc%2Fpasswd", "n" * 300, "a%00b"],
)
def test_artifact_path_traversal_is_refused(acme, path) -> None:
    run_id = new_run(acme.editor)
    r = acme.editor.put(f"/api/v1/runs/{run_id}/artifacts/{path}", content=b"x")
    assert r.status_code in (404, 422), r.text
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts")) == []
    r = acme.viewer.get(f"/api/v1/runs/{run_id}/artifacts", params={"path": "../.."})
    error(r, 422)


def test_bad_run_ids_are_422_and_unknown_runs_404(acme) -> None:
    error(acme.viewer.get("/api/v1/runs/xyz"), 422)
    error(acme.viewer.get(f"/api/v1/runs/{'a' * 32}"), 404)
    error(acme.editor.post(f"/api/v1/runs/{'a' * 32}/end", json={}), 404)
    error(acme.editor.post(f"/api/v1/runs/{'a' * 32}/end", json={"status": "DONE"}), 422)


def test_health_endpoints_need_no_credential(api) -> None:
    import httpx

    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok", "checks": {}}
    ready = httpx.get(f"{api.url}/readyz").json()
    assert ready == {
        "status": "ok",
        "checks": {"database": "ok", "mlflow": "ok", "artifacts": "ok", "models": "ok"},
    }
    assert httpx.get(f"{api.url}/openapi.json").json()["info"]["title"] == "matih-ml"

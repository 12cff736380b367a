"""The smaller gaps of issue 16: input that was taken although it should not be.

Non-finite policy thresholds, booleans as metrics, control characters in webhook URLs,
names and values, and invalid UTF-8, each refused with a 422 naming the problem."""

from __future__ import annotations

import pytest

from api.helpers import error, new_run, ok
from matih_ml import validation
from matih_ml.errors import ValidationError

JSON = {"content-type": "application/json"}


# ------------------------------------------------------------------ policies


@pytest.mark.parametrize(
    "body",
    [
        b'{"staging": {"required_metrics": [{"metric": "accuracy", "value": NaN}]}}',
        b'{"staging": {"required_metrics": [{"metric": "accuracy", "value": Infinity}]}}',
        b'{"staging": {"required_metrics": [{"metric": "accuracy", "value": -Infinity}]}}',
        b'{"staging": {"required_metrics": [{"metric": "accuracy", "value": 1e999}]}}',
        b'{"staging": {"max_regression": Infinity}}',
        b'{"staging": {"max_regression": NaN}}',
    ],
)
def test_non_finite_policy_numbers_are_refused(acme, body) -> None:
    found = error(acme.admin.put("/api/v1/policy", content=body, headers=JSON), 422)
    assert "finite" in found["message"], found
    assert ok(acme.viewer.get("/api/v1/policy"))["source"] == "default"


def test_a_finite_threshold_is_still_taken_and_echoed(acme) -> None:
    body = {"staging": {"required_metrics": [{"metric": "accuracy", "value": 0.9}]}}
    got = ok(acme.admin.put("/api/v1/policy", json=body))
    assert got["policy"]["staging"]["required_metrics"][0]["value"] == 0.9


# ------------------------------------------------------------------ metrics


@pytest.mark.parametrize("value", [True, False, "0.5", None])
def test_log_batch_refuses_a_metric_that_is_not_a_number(acme, value) -> None:
    run_id = new_run(acme.editor)
    body = {"metrics": [{"key": "loss", "value": value}]}
    error(acme.editor.post(f"/api/v1/runs/{run_id}/log-batch", json=body), 422)
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))["metrics"] == {}


def test_log_batch_still_takes_whole_numbers_as_metrics(acme) -> None:
    run_id = new_run(acme.editor)
    body = {"metrics": [{"key": "epochs", "value": 3}]}
    assert ok(acme.editor.post(f"/api/v1/runs/{run_id}/log-batch", json=body))
    assert ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))["metrics"] == {"epochs": 3.0}


def test_log_batch_refuses_non_finite_metrics(acme) -> None:
    run_id = new_run(acme.editor)
    body = b'{"metrics": [{"key": "loss", "value": NaN}]}'
    url = f"/api/v1/runs/{run_id}/log-batch"
    error(acme.editor.post(url, content=body, headers=JSON), 422, "VALIDATION_ERROR")


def test_bulk_ingest_refuses_booleans_too(acme) -> None:
    run_id = new_run(acme.editor)
    body = {"keys": ["loss"], "values": [True]}
    error(acme.editor.post(f"/api/v1/runs/{run_id}/metrics:batch", json=body), 422)


# ------------------------------------------------------------------ webhooks


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com/a\nb",
        "http://exa\tmple.com/",
        "http://example.com/\x00",
        "http://example.com/ a",
        "http://example.com/\x7f",
    ],
)
def test_webhook_url_with_a_control_character_is_refused(acme, url) -> None:
    found = error(acme.admin.post("/api/v1/webhooks", json={"url": url}), 422)
    assert found["details"].get("field") == "url", found
    assert ok(acme.admin.get("/api/v1/webhooks"))["items"] == []


# ------------------------------------------------------------------ names and values


@pytest.mark.parametrize("bad", ["loss\n", "lo\x00ss", "lo\rss", "loss\t", "\x1bloss"])
def test_control_characters_in_keys_are_refused(acme, bad) -> None:
    run_id = new_run(acme.editor)
    url = f"/api/v1/runs/{run_id}/log-batch"
    for body in (
        {"metrics": [{"key": bad, "value": 1.0}]},
        {"params": {bad: "1"}},
        {"tags": {bad: "1"}},
    ):
        error(acme.editor.post(url, json=body), 422, "VALIDATION_ERROR")
    columns = {"keys": [bad], "values": [1.0]}
    error(acme.editor.post(f"/api/v1/runs/{run_id}/metrics:batch", json=columns), 422)
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["metrics"] == {} and run["params"] == {}


@pytest.mark.parametrize("bad", ["nightly\n", "night\x00ly", "night\x1bly", "\r"])
def test_control_characters_in_run_and_experiment_names_are_refused(acme, bad) -> None:
    for body in ({"experiment_name": "exp", "run_name": bad}, {"experiment_name": bad}):
        found = error(acme.editor.post("/api/v1/runs", json=body), 422, "VALIDATION_ERROR")
        assert found["details"].get("field") in ("run_name", "experiment_name"), found


@pytest.mark.parametrize("bad", ["churn\n", "ch\x00urn", "churn\r\n"])
def test_control_characters_in_model_names_are_refused(acme, bad) -> None:
    body = {"name": bad, "run_id": "0" * 32}
    error(acme.editor.post("/api/v1/models", json=body), 422, "VALIDATION_ERROR")
    with pytest.raises(ValidationError):
        validation.model_name(bad)


@pytest.mark.parametrize("bad", ["a\x00b", "bell\x07", "esc\x1b[31m", "del\x7f"])
def test_nul_and_control_characters_in_tag_and_param_values_are_refused(acme, bad) -> None:
    run_id = new_run(acme.editor)
    url = f"/api/v1/runs/{run_id}/log-batch"
    for body in ({"tags": {"note": bad}}, {"params": {"p": bad}}):
        found = error(acme.editor.post(url, json=body), 422, "VALIDATION_ERROR")
        assert found["details"]["key"] in ("note", "p"), found
    error(acme.editor.post("/api/v1/runs", json={"experiment_name": "e", "tags": {"t": bad}}), 422)


def test_tabs_and_line_breaks_stay_allowed_in_tag_and_param_values(acme) -> None:
    # MLflow's own mlflow.note.content tag holds Markdown, line breaks and all.
    note = "# Notes\r\n\n- tried\tC=1\n"
    run_id = new_run(acme.editor, tags={"mlflow.note.content": note})
    body = {"params": {"grid": "C=1\nC=2"}, "tags": {"why": "line one\nline two"}}
    ok(acme.editor.post(f"/api/v1/runs/{run_id}/log-batch", json=body))
    run = ok(acme.viewer.get(f"/api/v1/runs/{run_id}"))
    assert run["tags"]["mlflow.note.content"] == note and run["tags"]["why"].count("\n") == 1
    assert run["params"]["grid"] == "C=1\nC=2"


def test_names_keep_their_other_characters() -> None:
    assert validation.key("train/loss: top-1 accuracy_5.x") == "train/loss: top-1 accuracy_5.x"
    assert validation.key("précision") == "précision"
    assert validation.run_name("run 1 — ünïcode") == "run 1 — ünïcode"
    assert validation.run_name(None) is None
    for bad in ("a" * 251, "x\n", 5):
        with pytest.raises(ValidationError):
            validation.run_name(bad)


# ------------------------------------------------------------------ invalid UTF-8


@pytest.mark.parametrize(
    "route",
    [
        "runs",  # parsed by FastAPI
        "runs/{run}/log-batch",
        "runs/{run}/metrics:batch",  # parsed by the route itself
        "models/churn/predict",
        "models/churn/predict:batch",
        "policy",
    ],
)
def test_invalid_utf8_is_422_as_documented(acme, route) -> None:
    run_id = new_run(acme.editor)
    url = "/api/v1/" + route.format(run=run_id)
    body = b'{"experiment_name": "\xff\xfe"}'
    send = acme.admin.put if route == "policy" else acme.admin.post
    found = error(send(url, content=body, headers=JSON), 422, "VALIDATION_ERROR")
    assert "UTF-8" in found["message"], found

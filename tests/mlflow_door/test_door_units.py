"""The door's own fast paths, in process (end to end: test_stock_client.py and
test_door_isolation.py):

- it reads a batch of plain metric points itself and leaves every other shape to MLflow's
  protobuf parse;
- it sends a file of a local artifact root from where it is stored, never through a link
  that leads out of the tenant's folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from matih_ml.api.mlflow.tracking_ops import _plain_columns

POINT = {"key": "loss", "value": 0.5, "timestamp": 1_700_000_000_000, "step": 3}


def test_plain_points_become_columns() -> None:
    body = {"run_id": "r1", "metrics": [POINT, {**POINT, "value": 1, "step": 4}], "params": []}
    assert _plain_columns(body) == (
        "r1",
        (["loss", "loss"], [0.5, 1.0], [3, 4], [1_700_000_000_000] * 2),
    )
    # A point without a step is step 0, as in MLflow's proto.
    no_step = {k: v for k, v in POINT.items() if k != "step"}
    assert _plain_columns({"run_id": "r1", "metrics": [no_step]}) == (
        "r1",
        (["loss"], [0.5], [0], [1_700_000_000_000]),
    )


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"run_id": "r1"},
        {"run_id": "r1", "metrics": []},
        {"run_id": "", "metrics": [POINT]},
        {"run_uuid": "r1", "metrics": [POINT]},
        {"run_id": "r1", "metrics": [POINT], "params": [{"key": "a", "value": "1"}]},
        {"run_id": "r1", "metrics": [POINT], "tags": [{"key": "a", "value": "1"}]},
        {"run_id": "r1", "metrics": [POINT], "unknown": 1},
        {"run_id": "r1", "metrics": [{**POINT, "value": "NaN"}]},
        {"run_id": "r1", "metrics": [{**POINT, "value": "0.5"}]},
        {"run_id": "r1", "metrics": [{**POINT, "value": True}]},
        {"run_id": "r1", "metrics": [{**POINT, "value": float("inf")}]},
        {"run_id": "r1", "metrics": [{**POINT, "timestamp": "1700000000000"}]},
        {"run_id": "r1", "metrics": [{**POINT, "step": 1.5}]},
        {"run_id": "r1", "metrics": [{k: v for k, v in POINT.items() if k != "timestamp"}]},
        {"run_id": "r1", "metrics": [{**POINT, "model_id": "m-1"}]},
        {"run_id": "r1", "metrics": [{**POINT, "dataset_name": "train"}]},
        {"run_id": "r1", "metrics": [POINT, "loss"]},
        {"run_id": "r1", "metrics": [{**POINT, "key": 7}]},
    ],
)
def test_every_other_shape_goes_to_mlflows_parse(body: object) -> None:
    assert _plain_columns(body) is None


def test_a_local_download_never_follows_a_link_out_of_the_tenants_folder(tmp_path) -> None:
    from matih_ml.api.mlflow.artifact_ops import _local_file
    from matih_ml.errors import NotFoundError, ValidationError

    acme, globex = tmp_path / "acme", tmp_path / "globex"
    (acme / "1" / "run").mkdir(parents=True)
    globex.mkdir()
    (acme / "1" / "run" / "model.pkl").write_bytes(b"acme")
    (globex / "secret.txt").write_bytes(b"globex")
    (acme / "1" / "run" / "escape.txt").symlink_to(globex / "secret.txt")
    (acme / "1" / "run" / "escape-dir").symlink_to(globex)

    got = _local_file(str(acme), "1/run/model.pkl")
    assert Path(got.path).read_bytes() == b"acme" and got.filename == "model.pkl"
    for rel in ("1/run/escape.txt", "1/run/escape-dir/secret.txt", "1/run/missing"):
        with pytest.raises(NotFoundError):
            _local_file(str(acme), rel)
    with pytest.raises(ValidationError, match="folder"):
        _local_file(str(acme), "1/run")


def test_every_error_of_ours_has_an_mlflow_code_and_no_500() -> None:
    """An error class missing from the door's table became a 500 INTERNAL_ERROR (the
    signature check's IntegrityError did, at a transition through the door)."""
    import json

    from matih_ml import errors
    from matih_ml.api.mlflow.door import error_of

    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    ours = [c for c in classes if issubclass(c, errors.MatihError) and c is not errors.MatihError]
    assert errors.IntegrityError in ours
    for cls in ours:
        answer = error_of(cls("boom"))
        body = json.loads(answer.body)
        assert answer.status_code == errors.STATUS[cls] or (
            cls is errors.ValidationError and answer.status_code == 400
        ), cls
        assert body["error_code"] != "INTERNAL_ERROR" and body["message"] == "boom", cls

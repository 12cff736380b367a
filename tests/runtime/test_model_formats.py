"""What the runtime decides about model folders: data or code, inside or outside, and
what it answers as JSON. Real models of each framework, saved by MLflow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mlflow.onnx
import mlflow.pytorch
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from matih_ml.runtime.files import UntrustedModelError, check_folder, source_inside
from matih_ml.runtime.formats import ModelKind, classify
from matih_ml.runtime.loader import ModelRuntime
from matih_ml.runtime.sandbox import SandboxLimits
from matih_ml.runtime.worker import to_json
from runtime import payloads

X = pd.DataFrame(np.random.default_rng(1).normal(size=(30, 3)), columns=["a", "b", "c"])
Y = (X.a > 0).astype(int)
REQS = {"pip_requirements": ["scikit-learn"]}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    from skl2onnx import to_onnx

    root = tmp_path_factory.mktemp("formats")
    est = LogisticRegression().fit(X, Y)
    out = {}
    mlflow.sklearn.save_model(est, str(root / "skops"), serialization_format="skops", **REQS)
    mlflow.sklearn.save_model(est, str(root / "pickle"), serialization_format="pickle", **REQS)
    mlflow.sklearn.save_model(FunctionTransformer(np.log1p), str(root / "skops_function"), **REQS)
    onnx_model = to_onnx(est, X.to_numpy(np.float32))
    mlflow.onnx.save_model(onnx_model, str(root / "onnx"), **REQS)
    net = torch.nn.Linear(3, 1)
    example = X.to_numpy(np.float32)[:4]
    mlflow.pytorch.save_model(
        net, str(root / "pt2"), serialization_format="pt2", input_example=example, **REQS
    )
    mlflow.pytorch.save_model(net, str(root / "pt_pickle"), serialization_format="pickle", **REQS)
    cfg = {"marker": str(root / "never"), "port": 9, "other": "/nonexistent", "db": "/x"}
    payloads.loader_module_model(root / "loader", cfg)
    payloads.python_model(root / "python_model", cfg)
    for name in (
        "skops",
        "pickle",
        "skops_function",
        "onnx",
        "pt2",
        "pt_pickle",
        "loader",
        "python_model",
    ):
        out[name] = root / name
    return out


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("skops", ModelKind.DATA),
        ("onnx", ModelKind.DATA),
        ("pt2", ModelKind.DATA),
        ("pickle", ModelKind.CODE),
        ("pt_pickle", ModelKind.CODE),
        ("loader", ModelKind.CODE),
        ("python_model", ModelKind.CODE),
        # skops can hold a function (np.log1p): not a class, so not data.
        ("skops_function", ModelKind.CODE),
    ],
)
def test_each_format_is_data_or_code(saved, name, kind) -> None:
    found = classify(saved[name])
    assert found.kind is kind, found
    assert found.in_process is (kind is ModelKind.DATA)
    if kind is ModelKind.CODE:
        assert found.reasons


def _edit(saved: dict[str, Path], tmp_path: Path, name: str, edit) -> Path:
    return payloads.with_mlmodel(saved[name], tmp_path / f"{name}-edited", edit)


@pytest.mark.parametrize(
    ("estimator", "held"),
    [
        ("sklearn.ensemble.RandomForestClassifier", "sklearn.tree._tree.Tree"),
        ("sklearn.ensemble.HistGradientBoostingClassifier", "TreePredictor"),
        ("sklearn.neighbors.KNeighborsClassifier", "sklearn.neighbors._kd_tree.KDTree"),
    ],
)
def test_sklearn_classes_that_skops_does_not_trust_are_code(tmp_path, estimator, held) -> None:
    """Node storage that sklearn's compiled code indexes unchecked: a crafted file could
    crash or read memory in whatever loads it (tests/runtime/test_trust_boundary.py)."""
    import importlib

    import skops.io

    module, name = estimator.rsplit(".", 1)
    est = getattr(importlib.import_module(module), name)().fit(X, Y)
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(est))
    folder = tmp_path / "m"
    mlflow.sklearn.save_model(est, str(folder), skops_trusted_types=trusted, **REQS)
    found = classify(folder)
    assert found.kind is ModelKind.CODE
    assert held in found.reasons[0]


def test_onnx_options_that_write_files_make_it_code(saved, tmp_path) -> None:
    folder = _edit(
        saved,
        tmp_path,
        "onnx",
        lambda m: m["flavors"]["onnx"].update(
            {"onnx_session_options": {"extra_session_config": {"a": "b"}}}
        ),
    )
    assert classify(folder).kind is ModelKind.CODE


def test_a_skops_file_named_by_the_mlmodel_as_trusted_is_not_trusted_for_it(
    saved, tmp_path
) -> None:
    # MLflow trusts the types the MLmodel lists; the runtime reads the file instead.
    folder = _edit(
        saved,
        tmp_path,
        "skops_function",
        lambda m: m["flavors"]["sklearn"].update({"skops_trusted_types": ["numpy.log1p"]}),
    )
    assert classify(folder).kind is ModelKind.CODE


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_path", "../outside/model.skops"),
        ("model_path", "/etc/passwd"),
        ("model_path", "data/../../x"),
        ("code", ".."),
        ("data", "~root"),
    ],
)
def test_paths_that_leave_the_folder_are_refused(saved, tmp_path, key, value) -> None:
    folder = _edit(
        saved, tmp_path, "skops", lambda m: m["flavors"]["python_function"].update({key: value})
    )
    with pytest.raises(UntrustedModelError) as err:
        check_folder(folder)
    assert err.value.details["field"] == f"MLmodel.flavors.python_function.{key}"


def test_a_symlink_out_of_the_folder_is_refused(saved, tmp_path) -> None:
    outside = tmp_path / "elsewhere.skops"
    outside.write_bytes((saved["skops"] / "model.skops").read_bytes())
    folder = _edit(saved, tmp_path, "skops", lambda m: None)
    (folder / "model.skops").unlink()
    (folder / "model.skops").symlink_to(outside)
    with pytest.raises(UntrustedModelError) as err:
        check_folder(folder)
    assert err.value.details["field"] == "files.model.skops"
    # A link that stays inside is only a file.
    (folder / "model.skops").unlink()
    (folder / "real.skops").write_bytes(outside.read_bytes())
    (folder / "model.skops").symlink_to("real.skops")
    check_folder(folder)


def test_onnx_external_data_stays_inside(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("float_data")
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../secret.bin"
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [weights],
    )
    folder = tmp_path / "m"
    folder.mkdir()
    onnx.save_model(helper.make_model(graph), str(folder / "model.onnx"))
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function: {loader_module: mlflow.onnx, data: model.onnx}\n"
    )
    with pytest.raises(UntrustedModelError) as err:
        check_folder(folder)
    assert err.value.details["field"] == "files.model.onnx.external_data"


def test_an_artifact_uri_outside_the_tenant_prefix_is_refused(tmp_path) -> None:
    root = tmp_path / "artifacts"
    source_inside(f"{root}/acme/1/abc/artifacts/model", f"{root}/acme")
    source_inside(f"file://{root}/acme/x", f"{root}/acme")
    source_inside("s3://b/root/acme/1/x", "s3://b/root/acme")
    for bad, top in [
        (f"{root}/globex/1/x", f"{root}/acme"),
        (f"{root}/acme/../globex/x", f"{root}/acme"),
        (f"{root}/acme-2/x", f"{root}/acme"),
        ("s3://b/root/acme/../globex/x", "s3://b/root/acme"),
        ("s3://b/root/acmeX/x", "s3://b/root/acme"),
        ("s3://other/root/acme/x", "s3://b/root/acme"),
        ("file:///etc", f"{root}/acme"),
    ]:
        with pytest.raises(UntrustedModelError):
            source_inside(bad, top)


def test_loading_never_touches_the_service_sys_path(saved, tmp_path) -> None:
    runtime = ModelRuntime(tmp_path / "serving", SandboxLimits(timeout_s=120))
    before = list(sys.path)
    frame = X.iloc[:3]
    try:
        with runtime.open("acme", "m", saved["skops"]) as m:
            assert m.classification.in_process and m.raw is not None
            assert (
                m.predict(frame).tolist() == LogisticRegression().fit(X, Y).predict(frame).tolist()
            )
        with runtime.open("acme", "m", saved["loader"]) as m:
            assert not m.classification.in_process and m.raw is None
            answer = m.predict(frame)
            assert [row["y"] for row in answer] == pytest.approx(frame.sum(axis=1).tolist())
            assert json.loads(answer[0]["probe"])["pid"] != os.getpid()
    finally:
        runtime.close()
    assert sys.path == before
    assert "probe_loader" not in sys.modules


def test_onnx_classifier_output_is_json(saved, tmp_path) -> None:
    # skl2onnx's classifier answers an int64 label and a ZipMap (a list of dicts).
    runtime = ModelRuntime(tmp_path / "serving", SandboxLimits())
    with runtime.open("acme", "m", saved["onnx"]) as m:
        out = to_json(m.predict(X.iloc[:3].to_numpy(np.float32)))
    text = json.dumps(out, allow_nan=False)
    assert len(out) == 3 and isinstance(json.loads(text)[0], dict)


def test_to_json_takes_every_kind_of_output() -> None:
    assert to_json(np.array([np.int64(1), np.int64(2)])) == [1, 2]
    assert to_json(np.float32(0.5)) == [0.5]
    assert to_json(pd.Series(["a", "b"])) == ["a", "b"]
    assert to_json(pd.DataFrame({"p": [0.1, np.nan]})) == [0.1, None]
    assert to_json(pd.DataFrame({"a": [1, 2], "b": [3, 4]})) == [[1, 3], [2, 4]]
    assert to_json({"label": np.array([1, 0]), "proba": [{0: 0.2, 1: 0.8}, {0: 0.9, 1: 0.1}]}) == [
        {"label": 1, "proba": {"0": 0.2, "1": 0.8}},
        {"label": 0, "proba": {"0": 0.9, "1": 0.1}},
    ]
    assert to_json([np.inf, "x", b"y", None]) == [None, "x", "y", None]
    assert to_json("one") == ["one"]


def test_a_model_that_raises_while_loading_is_a_422_not_a_crash(tmp_path) -> None:
    from matih_ml.runtime.loader import ModelLoadFailedError

    folder = tmp_path / "serving" / "acme" / "broken" / "1"
    folder.mkdir(parents=True)
    (folder / "code").mkdir()
    (folder / "code" / "broken_loader.py").write_text(
        "def _load_pyfunc(path):\n    raise RuntimeError('no weights here')\n"
    )
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function: {loader_module: broken_loader, code: code}\n"
    )
    runtime = ModelRuntime(tmp_path / "serving", SandboxLimits())
    try:
        with pytest.raises(ModelLoadFailedError, match="no weights here"):
            runtime.open_served("acme", "broken", folder, "broken/1")
    finally:
        runtime.close()

"""The ONNX Runtime fast path (issue 21): ONNX versions and the checked ONNX twins of sklearn
classifiers are scored by onnxruntime, and answer as their MLflow pyfunc does.

The oracle is the path that served them before: ``mlflow.pyfunc.load_model`` on the
version's own files, given the DataFrame (``records``) or the array (``inputs``) the
service built, its output converted by ``to_json``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import mlflow.onnx
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from api.helpers import error, ok, run_with_model
from matih_ml.registry.onnx_twin import TWIN_DIR, TWIN_MODEL
from matih_ml.runtime.onnx_session import OnnxGraphRefusedError, check_graph
from matih_ml.runtime.worker import to_json
from matih_ml.serving.resolver import Target

FEATURES = ["f0", "f1", "f2", "f3"]
RNG = np.random.default_rng(21)
X = pd.DataFrame(RNG.normal(size=(300, 4)), columns=FEATURES)
Y = ((X.f0 + 0.5 * X.f1 - 0.3 * X.f3) > 0).astype(int)


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict(orient="records")


def _version_files(services, tenant: str, model: str, version: str, tmp_path: Path) -> Path:
    return services.registry.download_version(tenant, model, version, tmp_path / "v")


def _pyfunc_answer(folder: Path, data) -> list:
    """What the pyfunc path answered for this version before the fast path."""
    return to_json(mlflow.pyfunc.load_model(str(folder)).predict(data))


def _served(services, tenant: str, model: str, version: str):
    return services.serving.cache.peek(tenant, model, version)


def _predict(services, tenant: str, model: str, version: str, payload: dict) -> list:
    return services.serving.predict(
        tenant, model, payload, Target.parse(version=version)
    ).predictions


# ------------------------------------------------------------------ sklearn twins


@pytest.mark.parametrize(
    "estimator",
    [LogisticRegression(), RandomForestClassifier(n_estimators=25, random_state=0)],
    ids=["logistic", "forest"],
)
def test_an_sklearn_classifier_is_served_by_its_twin_as_by_its_pyfunc(
    services, tenant, estimator, tmp_path
) -> None:
    est = estimator.fit(X, Y)
    _, v = services.registry.register_model_version(
        tenant, "clf", est, "sklearn", {}, {}, input_example=X.head(20)
    )
    assert v.serving_runtime == "onnxruntime"
    assert v.onnx_twin["status"] == "passed" and v.onnx_twin["rows"] == 20
    assert v.onnx_twin["max_probability_diff"] <= 1e-5

    frame = pd.DataFrame(RNG.normal(size=(200, 4)), columns=FEATURES)
    answer = _predict(services, tenant, "clf", v.version, {"records": _records(frame)})
    assert _served(services, tenant, "clf", v.version).serving_runtime == "onnxruntime"
    folder = _version_files(services, tenant, "clf", v.version, tmp_path)
    assert (folder / TWIN_DIR / TWIN_MODEL).is_file()
    assert answer == _pyfunc_answer(folder, frame) == est.predict(frame).tolist()
    # One record at a time, as the hot path sees it.
    for row in _records(frame.head(20)):
        assert _predict(services, tenant, "clf", v.version, {"records": [row]}) == _pyfunc_answer(
            folder, pd.DataFrame([row])
        )


def test_a_record_missing_an_optional_field_goes_to_the_estimator(services, tenant) -> None:
    est = LogisticRegression().fit(X, Y)
    _, v = services.registry.register_model_version(
        tenant, "optional", est, "sklearn", {}, {}, input_example=X.head(10)
    )
    assert v.serving_runtime == "onnxruntime", v.onnx_twin
    loaded = services.serving.cache.get(tenant, "optional", v.version)
    # f3 made optional, as a signature can say (a copy: the cache's is untouched).
    loaded = replace(loaded, columns=[replace(c, required=c.name != "f3") for c in loaded.columns])
    row = {"f0": 0.4, "f1": -0.2, "f2": 1.0}
    full = loaded.frame([{**row, "f3": 0.5}])
    assert not isinstance(full, pd.DataFrame)  # the twin's feeds
    assert loaded.predict(full) == est.predict(pd.DataFrame([{**row, "f3": 0.5}])).tolist()
    data = loaded.frame([row])
    assert isinstance(data, pd.DataFrame)
    # The estimator, not the twin (which would answer), meets the missing value.
    with pytest.raises(ValueError, match="NaN"):
        loaded.predict(data)


def test_a_twin_that_disagrees_keeps_the_pyfunc_and_says_why(services, tenant, tmp_path) -> None:
    # Features near 10,000 lose their last digits in float32: the twin's probabilities
    # drift from the estimator's by far more than 1e-5.
    big = X * 0.01 + 10_000.0
    est = LogisticRegression(C=1e4, max_iter=5000).fit(big, Y)
    _, v = services.registry.register_model_version(
        tenant, "drifty", est, "sklearn", {}, {}, input_example=big.head(20)
    )
    assert v.serving_runtime == "pyfunc"
    assert v.onnx_twin["status"] == "failed"
    assert "differ from the estimator's" in v.onnx_twin["reason"]
    folder = _version_files(services, tenant, "drifty", v.version, tmp_path)
    assert not (folder / TWIN_DIR / TWIN_MODEL).exists()
    answer = _predict(services, tenant, "drifty", v.version, {"records": _records(big)})
    assert _served(services, tenant, "drifty", v.version).serving_runtime == "pyfunc"
    assert answer == est.predict(big).tolist()
    card = services.registry.model_card(tenant, "drifty", v.version)
    assert "`serving_runtime: pyfunc`" in card and "ONNX twin by skl2onnx" in card
    assert "failed" in card.split("## Serving")[1]


def test_a_twin_whose_labels_differ_is_not_used(services, tenant, monkeypatch) -> None:
    from matih_ml.registry import onnx_twin

    real = onnx_twin.sklearn_twin
    flipped = LogisticRegression().fit(X, 1 - Y)

    def wrong_graph(model, inputs, example):
        answer = real(model, inputs, example)
        answer["onnx"] = real(flipped, inputs, example)["onnx"]  # another model's graph
        return answer

    monkeypatch.setattr(onnx_twin, "sklearn_twin", wrong_graph)
    est = LogisticRegression().fit(X, Y)
    _, v = services.registry.register_model_version(
        tenant, "flipped", est, "sklearn", {}, {}, input_example=X.head(20)
    )
    assert v.serving_runtime == "pyfunc"
    assert v.onnx_twin["status"] == "failed" and "labels differ" in v.onnx_twin["reason"]
    answer = _predict(services, tenant, "flipped", v.version, {"records": _records(X)})
    assert answer == est.predict(X).tolist()


def test_no_twin_for_a_regressor_or_without_an_example(services, tenant) -> None:
    reg = LinearRegression().fit(X, X.f0 * 2.0)
    _, v = services.registry.register_model_version(
        tenant, "reg", reg, "sklearn", {}, {}, input_example=X.head(5)
    )
    assert v.serving_runtime == "pyfunc" and v.onnx_twin["status"] == "skipped"
    assert "not a classifier" in v.onnx_twin["reason"]
    clf = LogisticRegression().fit(X, Y)
    _, v2 = services.registry.register_model_version(tenant, "bare", clf, "sklearn", {}, {})
    assert v2.serving_runtime == "pyfunc" and v2.onnx_twin["status"] == "skipped"


# ------------------------------------------------------------------ ONNX versions


def test_a_skl2onnx_version_is_scored_by_onnxruntime_as_by_its_pyfunc(
    services, tenant, tmp_path
) -> None:
    from skl2onnx import to_onnx

    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y)
    graph = to_onnx(est, X.to_numpy(np.float32)[:1])  # label and a ZipMap of probabilities
    x32 = X.to_numpy(np.float32)
    _, v = services.registry.register_model_version(
        tenant, "onx", graph, "onnx", {}, {}, input_example=x32[:5]
    )
    assert v.serving_runtime == "onnxruntime" and v.onnx_twin is None
    inputs = x32[:50]
    answer = _predict(services, tenant, "onx", v.version, {"inputs": inputs.tolist()})
    folder = _version_files(services, tenant, "onx", v.version, tmp_path)
    assert _served(services, tenant, "onx", v.version).serving_runtime == "onnxruntime"
    assert answer == _pyfunc_answer(folder, inputs)
    assert [r["output_label"] for r in answer] == est.predict(inputs).tolist()
    assert set(answer[0]["output_probability"]) == {"0", "1"}

    # The same graph with a column signature: one list per row, as MLflow's frame gave.
    _, v2 = services.registry.register_model_version(
        tenant, "onx", graph, "onnx", {}, {}, input_example=X.head(5)
    )
    rows = _predict(services, tenant, "onx", v2.version, {"records": _records(X.head(30))})
    assert rows == _pyfunc_answer(
        _version_files(services, tenant, "onx", v2.version, tmp_path / "b"), X.head(30)
    )
    assert [r[0] for r in rows] == est.predict(X.head(30)).tolist()


def test_a_per_column_onnx_graph_takes_records(services, tenant) -> None:
    # skl2onnx's graph of a DataFrame pipeline: one [N, 1] input per column, which
    # MLflow's pyfunc fed as [N] (and onnxruntime refused).
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = X.assign(city=np.where(X.f2 > 0, "north", "south"))
    pipe = make_pipeline(
        ColumnTransformer(
            [("num", StandardScaler(), FEATURES), ("cat", OneHotEncoder(), ["city"])]
        ),
        LogisticRegression(),
    ).fit(frame, Y)
    types = [(c, FloatTensorType([None, 1])) for c in FEATURES]
    graph = convert_sklearn(pipe, initial_types=[*types, ("city", StringTensorType([None, 1]))])
    example = frame.head(5).astype({c: np.float32 for c in FEATURES})
    _, v = services.registry.register_model_version(
        tenant, "cols", graph, "onnx", {}, {}, input_example=example
    )
    rows = _predict(services, tenant, "cols", v.version, {"records": _records(frame.head(40))})
    assert [r[0] for r in rows] == pipe.predict(frame.head(40)).tolist()


def test_a_torch_model_exported_to_onnx_answers_as_its_pyfunc(services, tenant, tmp_path) -> None:
    import io

    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.zeros(1, 4),),
        buffer,
        dynamo=False,
        input_names=["x"],
        output_names=["scores"],
        dynamic_axes={"x": {0: "n"}, "scores": {0: "n"}},
    )
    x32 = X.to_numpy(np.float32)
    _, v = services.registry.register_model_version(
        tenant,
        "net",
        onnx.load_from_string(buffer.getvalue()),
        "onnx",
        {},
        {},
        input_example=x32[:4],
    )
    assert v.serving_runtime == "onnxruntime"
    answer = _predict(services, tenant, "net", v.version, {"inputs": x32[:25].tolist()})
    folder = _version_files(services, tenant, "net", v.version, tmp_path)
    assert answer == _pyfunc_answer(folder, x32[:25])
    with torch.no_grad():
        want = net(torch.from_numpy(x32[:25])).numpy()
    assert np.allclose([r["scores"] for r in answer], want, atol=1e-5)
    # A shape the graph refuses is the model's 422, as through the pyfunc.
    from matih_ml.serving.service import PredictionFailedError

    with pytest.raises(PredictionFailedError, match="invalid dimensions"):
        _predict(services, tenant, "net", v.version, {"inputs": [[1.0, 2.0, 3.0]]})


# ------------------------------------------------------------------ trust boundary


def _graph_with(node_domain: str) -> bytes:
    from onnx import helper

    node = helper.make_node("Relu", ["x"], ["y"], domain=node_domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2])],
    )
    opsets = [helper.make_opsetid("", 17)]
    if node_domain:
        opsets.append(helper.make_opsetid(node_domain, 1))
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_a_twin_must_be_plain_onnx() -> None:
    check_graph(_graph_with(""))
    with pytest.raises(OnnxGraphRefusedError, match="operator sets"):
        check_graph(_graph_with("com.microsoft"))
    with pytest.raises(OnnxGraphRefusedError, match="not an ONNX model"):
        check_graph(b"\x00not a protobuf at all")


def _by_value(model, path: Path, sample: pd.DataFrame) -> Path:
    """A code-bearing model, as a tenant ships one: cloudpickled, with a function of this
    module inside (the sandbox cannot import this module)."""
    import cloudpickle
    from mlflow.models import infer_signature

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=infer_signature(sample, model.predict(sample)),
            input_example=sample.head(20),
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    return path


def test_a_pickled_model_is_converted_in_the_sandbox_and_served_by_its_twin(
    acme, services, tmp_path, monkeypatch
) -> None:
    # Its conversion must not run in the service: the in-process converter fails here.
    from matih_ml.registry import onnx_twin

    def never(*_args, **_kwargs):
        raise AssertionError("a pickled model was converted in the service")

    monkeypatch.setattr(onnx_twin, "sklearn_twin", never)
    plain = LogisticRegression().fit(X, Y)
    folder2 = _by_value(plain, tmp_path / "pickled2", X)
    run_id = run_with_model(acme.editor, folder2)
    v = ok(acme.editor.post("/api/v1/models", json={"name": "pickled", "run_id": run_id}), 201)
    v["version"] = v["registered_version"]
    read = ok(acme.viewer.get(f"/api/v1/models/pickled/versions/{v['version']}"))
    assert read["serving_runtime"] == "onnxruntime", read["onnx_twin"]
    assert read["onnx_twin"]["status"] == "passed"
    answer = ok(
        acme.editor.post(
            "/api/v1/models/pickled/predict",
            params={"version": v["version"]},
            json={"records": _records(X.head(60))},
        )
    )
    assert answer["predictions"] == plain.predict(X.head(60)).tolist()
    loaded = services.serving.cache.peek(acme.tenant_id, "pickled", v["version"])
    assert loaded.serving_runtime == "onnxruntime"
    assert not loaded.in_process_for(X.head(1))  # a frame would go to the sandbox
    assert loaded.in_process_for(loaded.frame(_records(X.head(1))))


# ------------------------------------------------------------------ the version's read


def test_the_version_read_and_card_name_the_runtime_and_stay_the_tenants(
    acme, globex, tmp_path
) -> None:
    est = LogisticRegression().fit(X, Y)
    folder = tmp_path / "skops"
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        est,
        str(folder),
        signature=infer_signature(X, est.predict(X)),
        input_example=X.head(10),
        serialization_format="skops",
        pip_requirements=["scikit-learn"],
    )
    run_id = run_with_model(acme.editor, folder)
    number = ok(acme.editor.post("/api/v1/models", json={"name": "card", "run_id": run_id}), 201)[
        "registered_version"
    ]
    read = ok(
        acme.viewer.get(f"/api/v1/models/card/versions/{number}", params={"with_card": "true"})
    )
    assert read["serving_runtime"] == "onnxruntime"
    assert read["onnx_twin"]["status"] == "passed" and read["onnx_twin"]["converter"]
    assert "## Serving" in read["model_card"]
    assert "`serving_runtime: onnxruntime`" in read["model_card"]
    listed = ok(acme.viewer.get("/api/v1/models/card/versions"))["items"]
    assert [i["serving_runtime"] for i in listed] == ["onnxruntime"]
    # The tags behind it are the service's: a tenant's key cannot set them.
    error(
        acme.editor.post(
            "/api/v1/models",
            json={"name": "card2", "run_id": run_id, "tags": {"matih.serving_runtime": "x"}},
        ),
        422,
    )
    # Another tenant sees neither the version nor its runtime.
    error(globex.viewer.get(f"/api/v1/models/card/versions/{number}"), 404)
    error(
        globex.viewer.post("/api/v1/models/card/predict", json={"records": _records(X.head(1))}),
        404,
    )


def test_the_client_reads_the_runtime(acme, api, tmp_path) -> None:
    from skl2onnx import to_onnx

    from matih_ml.client import MatihClient

    est = LogisticRegression().fit(X, Y)
    folder = tmp_path / "m"
    mlflow.onnx.save_model(
        to_onnx(est, X.to_numpy(np.float32)[:1]), str(folder), pip_requirements=["onnxruntime"]
    )
    run_id = run_with_model(acme.editor, folder)
    client = MatihClient(api.url, acme.keys["editor"])
    try:
        client.models.register("viaclient", run_id)
        v = client.models.get_version("viaclient", 1)
    finally:
        client.close()
    assert v.serving_runtime == "onnxruntime" and v.onnx_twin is None


def test_onnxruntime_refuses_a_crafted_tree_graph(services) -> None:
    # A twin comes back from a sandbox the tenant's code ran in: a tree whose node ids
    # point outside it must be refused when the session opens, not read past its end.
    from skl2onnx import to_onnx
    from sklearn.tree import DecisionTreeClassifier

    x = X.to_numpy(np.float32)
    graph = to_onnx(DecisionTreeClassifier(max_depth=3).fit(x, Y), x[:1], options={"zipmap": False})
    tree = next(n for n in graph.graph.node if n.op_type == "TreeEnsembleClassifier")
    for attr in tree.attribute:
        if attr.name == "nodes_truenodeids":
            attr.ints[0] = 10**9
    data = graph.SerializeToString()
    check_graph(data)  # plain ONNX: the checker does not read a tree's ids
    with pytest.raises(Exception, match="node_id"):
        services.runtime.onnx_scorer(data, labels_only=True)

"""Real models of each framework, registered and loaded back through MLflow."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from matih_ml.errors import ValidationError
from matih_ml.tenancy import tenant_scope


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_pytorch_model_round_trips(registry, tenant) -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    md = registry.register_model(tenant, "net", net, "pytorch", {"loss": 0.1}, {"lr": 0.01})
    assert md.framework == "pytorch"
    assert "torch==2.13.0" in (Path(md.artifact_uri) / "requirements.txt").read_text()
    expected = net(torch.from_numpy(x)).detach().numpy()
    for uri in (md.artifact_uri, "models:/net/1"):
        with tenant_scope(tenant):
            loaded = mlflow.pytorch.load_model(uri)
        got = loaded(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_onnx_model_round_trips(registry, tenant, sk_model, xy) -> None:
    import onnxruntime
    from skl2onnx import to_onnx

    x = xy[0][:5].astype(np.float32)
    onnx_model = to_onnx(sk_model, x[:1])
    md = registry.register_model(tenant, "onx", onnx_model, "onnx", {"accuracy": 0.9}, {})
    assert md.framework == "onnx"
    with tenant_scope(tenant):
        pyfunc = mlflow.pyfunc.load_model("models:/onx/1")
    out = pyfunc.predict({"X": x})
    labels = next(iter(out.values())) if isinstance(out, dict) else out.iloc[:, 0]
    assert list(np.asarray(labels).ravel()) == list(sk_model.predict(x))
    sess = onnxruntime.InferenceSession(str(Path(md.artifact_uri) / "model.onnx"))
    assert list(sess.run(None, {"X": x})[0]) == list(sk_model.predict(x))


def test_sklearn_model_loads_by_stage_uri(registry, move, tenant, sk_model, xy) -> None:
    registry.register_model(tenant, "clf", sk_model, "sklearn", {"accuracy": 0.9}, {})
    move(tenant, "clf", 1, "staging")
    with tenant_scope(tenant):
        loaded = mlflow.sklearn.load_model("models:/clf/Staging")
    assert list(loaded.predict(xy[0][:4])) == list(sk_model.predict(xy[0][:4]))


def test_tensorflow_says_clearly_that_it_is_not_installed(registry, tenant) -> None:
    pytest.importorskip("numpy")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorflow is installed here")
    with pytest.raises(ValidationError, match=r"tensorflow.*not installed"):
        registry.register_model(tenant, "tf", object(), "tensorflow", {}, {})


@pytest.mark.parametrize(
    ("model", "framework"),
    [({"not": "a model"}, "sklearn"), ("weights.pt", "pytorch"), (b"bytes", "onnx")],
)
def test_wrong_object_for_framework_is_refused(registry, tenant, model, framework) -> None:
    with pytest.raises(ValidationError, match="not a"):
        registry.register_model(tenant, "m", model, framework, {}, {})
    assert registry.list_models(tenant) == []


def _uses_this_module(x):
    return x


def test_tree_ensembles_register_and_a_callers_own_class_is_refused(registry, tenant, xy):
    # skops (MLflow's sklearn format) refuses a forest's Tree type unless trusted;
    # sklearn's own types are, a caller's own function is not.
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = xy
    for i, est in enumerate([RandomForestClassifier(n_estimators=5), GradientBoostingClassifier()]):
        model = est.fit(x, y)
        registry.register_model(tenant, "forest", model, "sklearn", {}, {})
        with tenant_scope(tenant):
            loaded = mlflow.pyfunc.load_model(f"models:/forest/{i + 1}")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    custom = make_pipeline(FunctionTransformer(_uses_this_module), est).fit(x, y)
    with pytest.raises(ValidationError, match="could not be saved"):
        registry.register_model(tenant, "forest", custom, "sklearn", {}, {})

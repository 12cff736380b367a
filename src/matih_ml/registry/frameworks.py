"""Saving and recognising models of each supported framework."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

from matih_ml.errors import ValidationError
from matih_ml.registry.metadata import Framework

# The packages whose exact versions a framework's model needs to load again.
_RUNTIME_PACKAGES: dict[Framework, tuple[str, ...]] = {
    Framework.SKLEARN: ("scikit-learn", "skops", "cloudpickle", "numpy"),
    Framework.PYTORCH: ("torch", "cloudpickle", "numpy"),
    Framework.ONNX: ("onnx", "onnxruntime", "numpy"),
    Framework.TENSORFLOW: ("tensorflow",),
}
_IMPORT_NAME = {
    Framework.TENSORFLOW: "tensorflow",
    Framework.PYTORCH: "torch",
    Framework.ONNX: "onnx",
}


def parse_framework(value: Any) -> Framework:
    """Return the :class:`Framework` named by ``value``.

    Raises:
        ValidationError: If it names no supported framework.
    """
    try:
        return Framework(value)
    except ValueError:
        allowed = ", ".join(f.value for f in Framework)
        raise ValidationError(
            f"framework {value!r} is not supported; use one of: {allowed}.",
            details={"field": "framework"},
        ) from None


def require_installed(framework: Framework) -> None:
    """Raise a clear error when the framework's library is not installed here."""
    module = _IMPORT_NAME.get(framework)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValidationError(
            f"framework {framework.value!r} needs the {module!r} package, which is not "
            "installed in this service.",
            details={"field": "framework"},
        ) from None


def requirements(framework: Framework) -> list[str]:
    """Pinned pip requirements for loading a model of ``framework``."""
    pins = [f"mlflow=={importlib.metadata.version('mlflow')}"]
    for dist in _RUNTIME_PACKAGES[framework]:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def check_model(framework: Framework, model: Any) -> None:
    """Check that ``model`` is an object of ``framework``.

    Raises:
        ValidationError: If it is not (a dict passed as an sklearn model, say).
    """
    ok: bool
    if framework is Framework.SKLEARN:
        ok = hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "transform"))
    elif framework is Framework.PYTORCH:
        import torch

        ok = isinstance(model, torch.nn.Module)
    elif framework is Framework.ONNX:
        import onnx

        ok = isinstance(model, onnx.ModelProto)
    else:
        ok = True
    if not ok:
        raise ValidationError(
            f"model is a {type(model).__name__}, not a {framework.value} model.",
            details={"field": "model"},
        )


def infer_model_type(framework: Framework, model: Any) -> str:
    """Guess classification, regression or clustering from an sklearn estimator."""
    if framework is not Framework.SKLEARN:
        return "unknown"
    from sklearn.base import ClusterMixin, is_classifier, is_regressor

    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    if isinstance(model, ClusterMixin):
        return "clustering"
    return "unknown"


# skops (MLflow's sklearn format) loads only the types it is told to trust. These
# libraries' own types are what fitted estimators hold (a forest's trees, for one);
# anything else, such as a class of the caller's, is still refused.
_TRUSTED_MODULES = frozenset({"sklearn", "numpy", "scipy"})


def _sklearn_trusted_types(model: Any) -> list[str]:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return [t for t in untrusted if t.split(".", 1)[0] in _TRUSTED_MODULES]


def save_model(
    framework: Framework, model: Any, path: Path, input_example: Any | None = None
) -> list[str]:
    """Save ``model`` as an MLflow model folder at ``path``.

    Requirements are pinned from this environment instead of inferred, because
    MLflow's inference loads the model in a subprocess (seconds per model).

    Returns:
        The pip requirements written to ``requirements.txt``.
    """
    reqs = requirements(framework)
    kwargs: dict[str, Any] = {"pip_requirements": reqs}
    if input_example is not None:
        kwargs["input_example"] = input_example
    try:
        if framework is Framework.SKLEARN:
            import mlflow.sklearn

            trusted = _sklearn_trusted_types(model)
            if trusted:
                kwargs["skops_trusted_types"] = trusted
            mlflow.sklearn.save_model(model, str(path), **kwargs)
        elif framework is Framework.PYTORCH:
            import mlflow.pytorch

            # MLflow 3 defaults to the traced 'pt2' format, which needs an example to
            # trace; without one, the module is pickled (MLflow's pre-3 format).
            fmt = "pt2" if input_example is not None else "pickle"
            mlflow.pytorch.save_model(model, str(path), serialization_format=fmt, **kwargs)
        elif framework is Framework.ONNX:
            import mlflow.onnx

            mlflow.onnx.save_model(model, str(path), **kwargs)
        else:
            import mlflow.tensorflow

            mlflow.tensorflow.save_model(model, str(path), **kwargs)
    except ValidationError:
        raise
    except Exception as exc:
        raise ValidationError(
            f"The {framework.value} model could not be saved: {exc}",
            details={"field": "model"},
        ) from exc
    return reqs

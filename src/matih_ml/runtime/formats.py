"""Data formats and code-bearing formats.

A model is *data* when loading and scoring it runs no Python of the tenant's:
- sklearn saved with skops, every type in the file one that skops trusts by default
  (skops then constructs nothing else, whatever the MLmodel lists). Classes of sklearn
  that skops does not trust by default are not data: a tree's node storage
  (``sklearn.tree._tree.Tree``, a histogram-boosting ``TreePredictor``, a ``KDTree``)
  holds indices that sklearn's compiled code follows without bounds checks, so a
  crafted file can crash the process or read memory outside the model (skops's own
  warning). Forests, boosted trees and neighbours therefore score in the sandbox;
- ONNX through onnxruntime, with session options limited to thread counts, execution
  mode and optimisation level (others can make onnxruntime write files);
- PyTorch in MLflow 3's ``pt2`` format whose archive holds no pickle payload (MLflow's
  own check; ``torch.export.load`` would otherwise unpickle).

Everything else is *code-bearing*: pickle, joblib and cloudpickle files, a
``PythonModel``, a ``loader_module`` of the tenant's, any flavour with ``code``, and any
format this module does not know. Those load only in the sandbox. Unknown is code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from matih_ml.runtime.files import check_folder, inside

# Libraries whose classes an uploaded pickle may hold to be saved as skops (in the
# sandbox: registry.uploads). Whether the skops file then loads in the service is
# skops's default trust's call (see _sklearn), not this list's.
TRUSTED_MODULES = frozenset({"sklearn", "numpy", "scipy"})

_ONNX_SESSION_OPTIONS = frozenset(
    {"inter_op_num_threads", "intra_op_num_threads", "execution_mode", "graph_optimization_level"}
)
_ONNX_PROVIDERS = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})


class ModelKind(StrEnum):
    """Whether loading a model can run code it carries."""

    DATA = "data"
    CODE = "code"


@dataclass(frozen=True)
class Classification:
    """What a model folder holds, and why it is code-bearing when it is."""

    kind: ModelKind
    loader: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def in_process(self) -> bool:
        """Whether the service may load it in its own process."""
        return self.kind is ModelKind.DATA


def _code(loader: str | None, reason: str) -> Classification:
    return Classification(ModelKind.CODE, loader, [reason])


def classify(folder: Path, meta: dict[str, Any] | None = None) -> Classification:
    """Tell whether the model in ``folder`` is data or code-bearing.

    Args:
        folder: A model folder that passed :func:`check_folder` (run here if ``meta``
            is not given).
        meta: Its parsed MLmodel.

    Raises:
        UntrustedModelError: If a path in it leaves the folder.
    """
    meta = meta if meta is not None else check_folder(folder)
    flavors: dict[str, Any] = meta["flavors"]
    with_code = sorted(name for name, conf in flavors.items() if conf.get("code"))
    pyfunc = flavors.get("python_function")
    loader = pyfunc.get("loader_module") if pyfunc else None
    if with_code:
        return _code(loader, f"the flavour {with_code[0]!r} ships code")
    if pyfunc is None:
        return _code(None, "it has no python_function flavour")
    if pyfunc.get("python_model") is not None or pyfunc.get("artifacts") is not None:
        return _code(loader, "it is a PythonModel (cloudpickle)")
    if loader == "mlflow.sklearn":
        return _sklearn(folder, flavors)
    if loader == "mlflow.onnx":
        return _onnx(flavors)
    if loader == "mlflow.pytorch":
        return _pytorch(folder, pyfunc)
    return _code(loader, f"its loader_module {loader!r} is not a data format's")


def _sklearn(folder: Path, flavors: dict[str, Any]) -> Classification:
    loader = "mlflow.sklearn"
    conf = flavors.get("sklearn") or {}
    pyfunc = flavors["python_function"]
    if conf.get("serialization_format") != "skops":
        fmt = conf.get("serialization_format") or "pickle"
        return _code(loader, f"its sklearn model is a {fmt} file")
    model_path = pyfunc.get("model_path")
    if model_path is None or model_path != conf.get("pickled_model"):
        return _code(loader, "its pyfunc and sklearn flavours name different files")
    import skops.io

    path = inside(folder, model_path, "MLmodel.flavors.python_function.model_path")
    try:
        untrusted = skops.io.get_untrusted_types(file=str(path))
    except Exception:  # noqa: BLE001 - a file skops cannot read is not a data format
        return _code(loader, "its skops file cannot be read")
    if untrusted:
        # skops's own judgement, not "any class of sklearn": see the module's docstring.
        return _code(loader, f"its skops file holds types skops does not trust: {untrusted}")
    return Classification(ModelKind.DATA, loader)


def _onnx(flavors: dict[str, Any]) -> Classification:
    loader = "mlflow.onnx"
    conf = flavors.get("onnx") or {}
    options = conf.get("onnx_session_options") or {}
    if not isinstance(options, dict) or set(options) - _ONNX_SESSION_OPTIONS:
        return _code(loader, "its onnx_session_options go beyond threads and optimisation")
    providers = conf.get("providers")
    if providers is not None and (
        not isinstance(providers, list)
        or not all(isinstance(p, str) and p in _ONNX_PROVIDERS for p in providers)
    ):
        return _code(loader, "it names execution providers other than CPU and CUDA")
    return Classification(ModelKind.DATA, loader)


def _pytorch(folder: Path, pyfunc: dict[str, Any]) -> Classification:
    loader = "mlflow.pytorch"
    data = inside(folder, pyfunc.get("data"), "MLmodel.flavors.python_function.data")
    archive = data / "model.pt2"
    if not data.is_dir() or (data / "model.pth").exists() or not archive.is_file():
        return _code(loader, "its PyTorch model is pickled, not a pt2 archive")
    from matih_ml.mlflow_adapter.pytorch import check_pt2_archive_is_pickle_free

    try:
        check_pt2_archive_is_pickle_free(str(archive))
    except Exception:  # noqa: BLE001 - MLflow's own check: any doubt is code
        return _code(loader, "its pt2 archive carries pickle payloads")
    return Classification(ModelKind.DATA, loader)

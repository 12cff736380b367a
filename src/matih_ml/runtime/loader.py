"""The one way the service loads a tenant's model.

Every load checks the files first (:func:`~matih_ml.runtime.files.check_folder`), then
loads a data format in this process and a code-bearing one in the sandbox. Callers
get a :class:`ModelHandle` either way and never call ``mlflow.pyfunc.load_model`` on a
tenant's files themselves.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from matih_ml.errors import MatihError, ValidationError
from matih_ml.runtime.files import UntrustedModelError
from matih_ml.runtime.formats import TRUSTED_MODULES, Classification, classify
from matih_ml.runtime.onnx_session import OnnxScorer, open_session
from matih_ml.runtime.sandbox import (
    MODELS_MOUNT,
    OUT_MOUNT,
    ModelRaisedError,
    SandboxFailedError,
    SandboxLimits,
    SandboxProcess,
    TenantSandboxes,
    bwrap_path,
)
from matih_ml.runtime.worker import to_json

# (tenant, model) -> whether the tenant's policy lets code-bearing models run at all.
CodePolicy = Callable[[str, str], bool]


class ModelLoadFailedError(ValidationError):
    """The version's files passed the checks, but the model raised while loading (a 422:
    these files cannot be served)."""

    code = "MODEL_LOAD_FAILED"


class ModelHandle(Protocol):
    """A loaded model, wherever it runs."""

    classification: Classification
    flavors: dict[str, Any]

    @property
    def raw(self) -> Any | None:
        """The framework's own object (an sklearn estimator), when loaded in process."""
        ...

    def predict(self, data: Any) -> Any:
        """Score ``data`` (a DataFrame or an array); code-bearing models answer JSON."""
        ...


@dataclass
class InProcessModel:
    """A data-format model, loaded by MLflow in this process (at once, or on first use
    when served by an ONNX session that seldom or never needs it)."""

    classification: Classification
    flavors: dict[str, Any]
    pyfunc: Any = None
    folder: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def loaded(self) -> bool:
        """Whether the pyfunc is loaded (using it then costs no load)."""
        return self.pyfunc is not None

    def _pyfunc(self) -> Any:
        if self.pyfunc is None:
            with self._lock:
                if self.pyfunc is None:
                    assert self.folder is not None
                    self.pyfunc = _load_pyfunc(self.folder)
        return self.pyfunc

    @property
    def raw(self) -> Any | None:
        """The sklearn estimator, or None for other flavours."""
        if "sklearn" in self.flavors:
            return self._pyfunc().get_raw_model()
        return None

    def predict(self, data: Any) -> Any:
        """The pyfunc's prediction."""
        return self._pyfunc().predict(data)


@dataclass
class SandboxedModel:
    """A code-bearing model: each call goes to a sandboxed worker."""

    classification: Classification
    flavors: dict[str, Any]
    send: Callable[[dict[str, Any]], dict[str, Any]]
    path: str

    @property
    def raw(self) -> Any | None:
        """Nothing of a sandboxed model lives in this process."""
        return None

    def predict(self, data: Any) -> list[Any]:
        """The model's JSON predictions, one per row.

        Raises:
            ModelRaisedError: If the model raised.
            SandboxFailedError: If the sandbox died or timed out.
        """
        answer = self.send({"op": "predict", "path": self.path, "data": encode_input(data)})
        predictions = answer.get("predictions")
        if not isinstance(predictions, list):
            raise SandboxFailedError("The sandbox answered no list of predictions.")
        return predictions

    def example_predictions(self) -> list[Any] | None:
        """Predictions on the model's stored input example; None when it has none."""
        answer = self.send({"op": "example", "path": self.path})
        if not answer.get("has_example"):
            return None
        predictions = answer.get("predictions")
        return predictions if isinstance(predictions, list) else None

    def onnx_twin(self, inputs: list[list[Any]]) -> dict[str, Any]:
        """The sandbox's ONNX conversion of the model (:func:`~.worker.sklearn_twin`):
        untrusted bytes, which the caller checks before use."""
        return self.send({"op": "onnx_twin", "path": self.path, "inputs": inputs})


def example_predictions(model: ModelHandle, folder: Path) -> tuple[Any, list[Any]] | None:
    """The model's stored input example and its predictions on it (None: no example).

    The example is read here (it is JSON data); a sandboxed model predicts on its own
    copy of it in the sandbox.
    """
    from mlflow.models import Model

    example = Model.load(str(folder)).load_input_example(str(folder))
    if example is None:
        return None
    if isinstance(model, SandboxedModel):
        predictions = model.example_predictions()
        return None if predictions is None else (example, predictions)
    return example, to_json(model.predict(example))


def encode_input(data: Any) -> dict[str, Any]:
    """Model input as JSON for the worker: a frame by rows, or a tensor."""
    if isinstance(data, pd.DataFrame):
        clean = data.astype(object).where(pd.notna(data), None)
        return {
            "kind": "frame",
            "columns": [str(c) for c in data.columns],
            "rows": [[_scalar(v) for v in row] for row in clean.itertuples(index=False)],
        }
    array = np.asarray(data)
    return {"kind": "tensor", "values": array.tolist(), "dtype": str(array.dtype)}


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class SavedModelFolder:
    """A model already saved as an MLflow model folder (an upload the sandbox converted),
    registered as it is instead of being saved again."""

    path: Path
    model_type: str


class ModelRuntime:
    """Checks and loads tenants' models.

    Args:
        serving_root: The serving cache's folder; a tenant's serving worker sees
            ``serving_root/<tenant>``.
        limits: The sandbox workers' limits.
        enabled: Whether the sandbox may run at all (``MATIH_SANDBOX``); when off, or
            when bubblewrap is missing, code-bearing models are refused.
        code_policy: Whether a tenant's policy allows code-bearing models.
        uploads_root: Where a tenant's uploaded pickles wait for its upload worker;
            ``serving_root``'s sibling ``uploads`` unless given.
        onnx_threads: Intra-op threads of each ONNX session (``MATIH_ONNX_THREADS``).
        onnx_twins: Whether registration makes ONNX twins of sklearn classifiers
            (``MATIH_ONNX_TWINS``).
    """

    # An upload worker unused this long is stopped; the next upload starts another.
    UPLOAD_WORKER_IDLE_S = 300.0

    def __init__(
        self,
        serving_root: Path,
        limits: SandboxLimits,
        *,
        enabled: bool = True,
        code_policy: CodePolicy | None = None,
        uploads_root: Path | None = None,
        onnx_threads: int = 1,
        onnx_twins: bool = True,
    ) -> None:
        self.limits = limits
        self.onnx_threads = onnx_threads
        self.onnx_twins = onnx_twins
        self.enabled = enabled and bwrap_path() is not None
        self.sandboxes = TenantSandboxes(serving_root, limits, enabled=self.enabled)
        self.uploads = TenantSandboxes(
            uploads_root or serving_root.parent / "uploads",
            limits,
            enabled=self.enabled,
            writable=True,
            idle_s=self.UPLOAD_WORKER_IDLE_S,
        )
        self._code_policy = code_policy

    # ------------------------------------------------------------------ checks

    def inspect(self, tenant: str, model: str, folder: Path) -> Classification:
        """Check a model folder and say where it may run.

        Raises:
            UntrustedModelError: If a path leaves the folder, or the model carries code
                and the tenant's policy or the operator refuses such models.
        """
        found = classify(folder)
        if found.in_process:
            return found
        why = found.reasons[0] if found.reasons else "it carries code"
        if self._code_policy is not None and not self._code_policy(tenant, model):
            raise UntrustedModelError(
                f"The tenant's policy refuses code-bearing models, and this one is: {why}. "
                "Save it as skops, ONNX or pt2.",
                details={"field": "model", "reason": why},
            )
        if not self.enabled:
            raise UntrustedModelError(
                f"This model carries code ({why}), and the sandbox that runs such models is "
                "off or bubblewrap is missing on the server.",
                details={"field": "model", "reason": why},
            )
        return found

    # ------------------------------------------------------------------ loading

    @contextmanager
    def open(self, tenant: str, model: str, folder: Path) -> Iterator[ModelHandle]:
        """Load the model in ``folder`` for a one-off use (registration, a gate, a
        training baseline); a sandbox started for it stops on exit."""
        found = self.inspect(tenant, model, folder)
        if found.in_process:
            yield self._in_process(found, folder)
            return
        worker = SandboxProcess(folder, self.limits)
        try:
            flavors = _flavors(folder)
            yield SandboxedModel(found, flavors, worker.call, MODELS_MOUNT)
        finally:
            worker.kill()

    def open_served(
        self,
        tenant: str,
        model: str,
        folder: Path,
        mount_path: str,
        *,
        found: Classification | None = None,
        defer: bool = False,
    ) -> ModelHandle:
        """Load a version for serving; a code-bearing one in the tenant's worker.

        Args:
            folder: The version's files, inside the serving root's folder of ``tenant``.
            mount_path: The same folder relative to that tenant folder.
            found: What :meth:`inspect` said of it already (inspected here otherwise).
            defer: Load the model on its first prediction, not now (a version an ONNX
                session serves needs it only for what the session cannot take).
        """
        found = found or self.inspect(tenant, model, folder)
        if found.in_process:
            if defer:
                return InProcessModel(found, _flavors(folder), folder=folder)
            return self._in_process(found, folder)
        path = f"{MODELS_MOUNT}/{mount_path}"

        def send(request: dict[str, Any]) -> dict[str, Any]:
            return self.sandboxes.call(tenant, request)

        handle = SandboxedModel(found, _flavors(folder), send, path)
        if defer:
            return handle  # the worker loads it when a request first names it
        try:
            send({"op": "load", "path": path})
        except ModelRaisedError as exc:
            raise ModelLoadFailedError(f"The model does not load: {exc}"[:500]) from None
        return handle

    def onnx_scorer(self, source: Path | bytes, *, labels_only: bool = False) -> OnnxScorer:
        """An ONNX graph (a data format: :mod:`.formats`) in a session of its own, with the
        service's options (:func:`~.onnx_session.open_session`)."""
        return OnnxScorer(open_session(source, self.onnx_threads), labels_only=labels_only)

    @staticmethod
    def _in_process(found: Classification, folder: Path) -> InProcessModel:
        pyfunc = _load_pyfunc(folder)
        return InProcessModel(found, dict(pyfunc.metadata.flavors), pyfunc, folder)

    @contextmanager
    def unpickle_upload(
        self, tenant: str, data: bytes, requirements: list[str]
    ) -> Iterator[SavedModelFolder]:
        """Unpickle an uploaded sklearn file in the tenant's upload sandbox, once, and
        save it as skops.

        Raises:
            UntrustedModelError: If the sandbox is off, or the file is not an sklearn
                model made of sklearn, numpy and scipy types only.
        """
        if not self.enabled:
            raise UntrustedModelError(
                "Pickled uploads are unpickled only in the sandbox, which is off on this "
                "server; upload ONNX, or log the model with skops and register the run.",
                details={"field": "file"},
            )
        spool = Path(tempfile.mkdtemp(prefix="upload-", dir=self.uploads.folder(tenant)))
        try:
            (spool / "model.bin").write_bytes(data)
            try:
                answer = self.uploads.call(
                    tenant,
                    {
                        "op": "unpickle_sklearn",
                        "file": f"{MODELS_MOUNT}/{spool.name}/model.bin",
                        "out": f"{OUT_MOUNT}/{spool.name}/model",
                        "requirements": requirements,
                        "trusted_modules": sorted(TRUSTED_MODULES),
                    },
                )
            except ModelRaisedError as exc:
                raise UntrustedModelError(
                    f"The file is not a loadable sklearn model: {exc}"[:500],
                    details={"field": "file"},
                ) from None
            # What the sandbox wrote is as untrusted as the upload: copy it out of the
            # writable folder and check it as any model's files.
            local = Path(tempfile.mkdtemp(prefix="matih-upload-model-"))
            try:
                shutil.copytree(spool / "model", local / "model", symlinks=True)
                kind = answer.get("model_type")
                yield SavedModelFolder(
                    local / "model", kind if isinstance(kind, str) else "unknown"
                )
            finally:
                shutil.rmtree(local, ignore_errors=True)
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def close(self) -> None:
        """Stop the serving and upload workers."""
        self.sandboxes.close()
        self.uploads.close()


def _load_pyfunc(folder: Path) -> Any:
    from mlflow.pyfunc import load_model

    try:
        return load_model(str(folder))
    except MatihError:
        raise
    except Exception as exc:  # noqa: BLE001 - a tenant's files that do not load
        raise ModelLoadFailedError(
            f"The model does not load: {type(exc).__name__}: {exc}"[:500]
        ) from None


def _flavors(folder: Path) -> dict[str, Any]:
    from matih_ml.runtime.files import read_mlmodel

    return dict(read_mlmodel(folder)["flavors"])

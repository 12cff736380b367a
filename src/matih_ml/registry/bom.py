"""A version's ML bill of materials: a CycloneDX 1.6 JSON document.

What it holds (docs/provenance.md, "The bill of materials"):

- ``metadata.component``: the model, a ``machine-learning-model`` component named
  ``<model>`` at version ``<version>``, with its model card (``modelCard``: the task, the
  signature's inputs and outputs, the run's metrics and parameters, the framework), the
  training run (properties and a ``build-meta`` reference to it) and the signature's
  digest (``matih:signature``: ``signed`` with ``matih:signature.digest``, or
  ``unsigned``);
- one ``library`` component per line of the version's ``requirements.txt``, with its
  exact version and ``pkg:pypi`` purl (the framework's marked ``matih:role=framework``);
- one ``data`` component per dataset input of the training run (MLflow's
  ``run.inputs.dataset_inputs``) and per Feast feature view the training job tagged;
- ``dependencies``: the model on each of them.

cyclonedx-python-lib 11 models neither ``modelCard`` nor a component's ``data`` (both
CycloneDX 1.5+): they are added to its JSON output here, and the tests validate the whole
document against the 1.6 schema.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cyclonedx.model import ExternalReference, ExternalReferenceType, Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from matih_ml import urls, validation
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated
from matih_ml.registry import version_files
from matih_ml.registry.metadata import TAG_ARTIFACT_URI, TAG_MODEL_TYPE, ModelVersionInfo
from matih_ml.registry.views import is_complete, version_info
from matih_ml.runtime.files import UntrustedModelError, read_mlmodel

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from matih_ml.backend import MlflowBackend
    from matih_ml.tenancy import TenantDirectory

SPEC_VERSION = "1.6"
MEDIA_TYPE = "application/vnd.cyclonedx+json"

TAG_SIGNATURE_DIGEST = "matih.signature.digest"
TAG_SIGNATURE_KEY_ID = "matih.signature.key_id"

# The PyPI distribution of each framework's library (requirements.txt names it).
_FRAMEWORK_PACKAGES = {
    "sklearn": ("scikit-learn",),
    "pytorch": ("torch",),
    "onnx": ("onnx", "onnxruntime"),
}
_TASKS = {
    "classification": "classification",
    "regression": "regression",
    "clustering": "clustering",
}
_FEAST_VIEW = "feast.view."
# Seeded namespace of the BOM's serial number: the same version and signature give the
# same document identity, a re-signed version a new one.
_SERIAL_NAMESPACE = uuid.UUID("5a1b6f52-8f0c-4c36-9b8e-6d0b7f1d2c22")


@dataclass(frozen=True)
class DatasetInput:
    """One dataset the training run read (an MLflow dataset input)."""

    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    context: str = ""


@dataclass(frozen=True)
class BomFacts:
    """What the registry knows of one version, as the BOM is built from it.

    Attributes:
        tenant_id: The version's tenant (named in the model's properties).
        model: The model's name.
        version: The version number.
        framework: ``sklearn``, ``pytorch``, ``onnx``...
        model_type: ``classification``, ``regression``, ``clustering`` or ``unknown``.
        description: The version's description.
        stage: The version's stage.
        created_at: When the version was registered.
        run_id: The run whose model was registered (its metrics and parameters).
        training_run_id: The training job's run, when the version names one.
        metrics: The run's metrics.
        params: The run's parameters.
        requirements: The text of the version's ``requirements.txt`` ("" if none).
        mlmodel: The version's ``MLmodel`` file, parsed ({} if none).
        datasets: The runs' dataset inputs.
        tags: The version's tags and the training run's (the Feast lineage tags).
        signature_digest: ``sha256:<hex>`` of the signature file, or None if unsigned.
        signature_key_id: The signing key's id.
    """

    tenant_id: str
    model: str
    version: str
    framework: str
    model_type: str = "unknown"
    description: str = ""
    stage: str = ""
    created_at: datetime | None = None
    run_id: str | None = None
    training_run_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    requirements: str = ""
    mlmodel: Mapping[str, Any] = field(default_factory=dict)
    datasets: Sequence[DatasetInput] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    signature_digest: str | None = None
    signature_key_id: str | None = None


@dataclass(frozen=True)
class Pinned:
    """One line of ``requirements.txt``: the distribution and its exact version, if pinned."""

    name: str
    version: str | None
    line: str


def parse_requirements(text: str) -> list[Pinned]:
    """The requirements of a ``requirements.txt``, in file order, one per distribution.

    Options (``-r``, ``--extra-index-url``), comments and lines that are no requirement
    are skipped. A version is kept only when pinned exactly (``==`` or ``===``).
    """
    found: dict[str, Pinned] = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        pins = [s.version for s in req.specifier if s.operator in ("==", "===")]
        version = pins[0] if len(pins) == 1 and "*" not in pins[0] else None
        name = canonicalize_name(req.name)
        found.setdefault(name, Pinned(name=name, version=version, line=line))
    return list(found.values())


def build_bom(facts: BomFacts) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON document of a version (see the module's docstring)."""
    model = _model_component(facts)
    bom = Bom(serial_number=_serial(facts))
    bom.metadata.component = model
    framework_packages = _FRAMEWORK_PACKAGES.get(facts.framework, ())
    libraries = [
        _library(req, framework=req.name in framework_packages)
        for req in parse_requirements(facts.requirements)
    ]
    datasets = [_dataset(d) for d in facts.datasets]
    datasets = list({str(c.bom_ref): c for c in datasets}.values())
    views = _feature_views(facts.tags)
    for component in (*libraries, *datasets, *views):
        bom.components.add(component)
    bom.register_dependency(model, [*libraries, *datasets, *views])
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["component"]["modelCard"] = _model_card(
        facts, [str(c.bom_ref) for c in (*datasets, *views)]
    )
    data = {str(c.bom_ref): _data_entry(c) for c in (*datasets, *views)}
    for entry in doc.get("components", []):
        if entry.get("bom-ref") in data:
            entry["data"] = [data[entry["bom-ref"]]]
    return doc


# ---------------------------------------------------------------------- the facts


def bill_of_materials(
    backend: MlflowBackend, tenants: TenantDirectory, tenant_id: str, model_id: str, version: str
) -> dict[str, Any]:
    """The ML bill of materials of a tenant's version (see the module's docstring).

    Args:
        backend: The MLflow backend (its client reads the version, its runs and files).
        tenants: The tenant directory (the version is read in the tenant's scope).
        tenant_id: The caller's tenant.
        model_id: The model's name.
        version: The version number.

    Raises:
        NotFoundError: If the model or the version does not exist in this tenant.
        ValidationError: For a malformed name or version.
    """
    name = validation.model_name(model_id)
    number = validation.version(version)
    client = backend.client
    with tenants.scope(tenant_id) as tenant:
        with translated(f"Version {number} of model {name!r}"):
            mv = client.get_model_version(name, number)
        if not is_complete(mv):
            raise NotFoundError(
                f"Version {number} of model {name!r} not found.",
                details={"model_id": name, "version": number},
            )
        tags = dict(mv.tags or {})
        files = tags.get(TAG_ARTIFACT_URI) or mv.source
        facts = gather_facts(client, version_info(tenant, mv), tags, files)
    return build_bom(facts)


_REQUIREMENTS_MAX = 1_000_000  # bytes of requirements.txt read
_TRAINING_RUN_TAG = "training_run_id"  # set by training jobs on the version


def gather_facts(
    client: MlflowClient,
    info: ModelVersionInfo,
    raw_tags: Mapping[str, str],
    files_uri: str | None,
) -> BomFacts:
    """Collect what the BOM needs of one version: its files (``MLmodel``,
    ``requirements.txt``), its run (metrics, parameters, dataset inputs) and the training
    job's run, when the version names one (its dataset inputs and Feast tags).

    Called inside the version's tenant scope.

    Args:
        client: MLflow's client.
        info: The version, as the registry shows it.
        raw_tags: The version's MLflow tags, ``matih.*`` included.
        files_uri: The registry's own copy of the version's files (None: none).
    """
    with tempfile.TemporaryDirectory(prefix="matih-bom-") as tmp:
        folder = Path(tmp)
        label = f"Files of {info.model_id!r} v{info.version}"
        for name in ("MLmodel", "requirements.txt"):
            try:
                if files_uri:
                    version_files.download_file(files_uri, name, folder, label)
            except (NotFoundError, ValidationError, OSError):
                continue  # a version without it: the BOM says less
        try:
            mlmodel: Mapping[str, Any] = read_mlmodel(folder)
        except UntrustedModelError:
            mlmodel = {}
        reqs = folder / "requirements.txt"
        requirements = (
            reqs.read_bytes()[:_REQUIREMENTS_MAX].decode("utf-8", errors="replace")
            if reqs.is_file()
            else ""
        )
    run = _run(client, info.run_id)
    training_id = raw_tags.get(_TRAINING_RUN_TAG) or None
    training = _run(client, training_id) if training_id and training_id != info.run_id else None
    tags: dict[str, str] = {}
    datasets: list[DatasetInput] = []
    for r in (training, run):
        if r is not None:
            tags.update(r.data.tags)
            datasets += _dataset_inputs(r)
    tags.update(raw_tags)
    return BomFacts(
        tenant_id=info.tenant_id,
        model=info.model_id,
        version=info.version,
        framework=info.framework,
        model_type=raw_tags.get(TAG_MODEL_TYPE) or "unknown",
        description=info.description,
        stage=info.stage,
        created_at=info.created_at,
        run_id=info.run_id,
        training_run_id=training_id,
        metrics=dict(run.data.metrics) if run else {},
        params=dict(run.data.params) if run else {},
        requirements=requirements,
        mlmodel=mlmodel,
        datasets=datasets,
        tags=tags,
        signature_digest=raw_tags.get(TAG_SIGNATURE_DIGEST) or None,
        signature_key_id=raw_tags.get(TAG_SIGNATURE_KEY_ID) or None,
    )


def _run(client: MlflowClient, run_id: str | None) -> Run | None:
    """The run, or None if it is gone (a deleted run leaves the version's files)."""
    if not run_id:
        return None
    try:
        with translated(f"run {run_id!r}"):
            return client.get_run(run_id)
    except NotFoundError:
        return None


def _dataset_inputs(run: Run) -> list[DatasetInput]:
    inputs = run.inputs.dataset_inputs if run.inputs else []
    out = []
    for di in inputs or []:
        context = next((t.value for t in di.tags or [] if t.key == "mlflow.data.context"), "")
        d = di.dataset
        out.append(
            DatasetInput(
                name=d.name,
                digest=_whole_digest(d.digest, d.profile),
                source_type=d.source_type or "",
                source=d.source or "",
                context=context or "",
            )
        )
    return out


def _whole_digest(digest: str, profile: str | None) -> str:
    """The dataset's whole digest: MLflow's column holds 36 characters, so the lineage
    recorder keeps a longer one (sha256, sha512) whole in the profile (tracking.inputs)."""
    try:
        whole = json.loads(profile or "{}").get("digest")
    except (ValueError, AttributeError):
        whole = None
    return whole if isinstance(whole, str) and whole.startswith(digest) else digest


# ---------------------------------------------------------------------- the model


def _serial(facts: BomFacts) -> uuid.UUID:
    seed = "\0".join(
        (facts.tenant_id, facts.model, facts.version, facts.signature_digest or "unsigned")
    )
    return uuid.uuid5(_SERIAL_NAMESPACE, seed)


def _model_component(facts: BomFacts) -> Component:
    props = {
        "matih:tenant": facts.tenant_id,
        "matih:framework": facts.framework,
        "matih:model_type": facts.model_type,
        "matih:stage": facts.stage,
        "matih:run_id": facts.run_id or "",
        "matih:training_run_id": facts.training_run_id or "",
        "matih:registered_at": facts.created_at.isoformat() if facts.created_at else "",
        "matih:python_version": str(facts.mlmodel.get("python_version") or ""),
        "matih:files": urls.version_files(facts.model, facts.version),
        "matih:signature": "signed" if facts.signature_digest else "unsigned",
        "matih:signature.digest": facts.signature_digest or "",
        "matih:signature.key_id": facts.signature_key_id or "",
    }
    refs = [
        ExternalReference(
            type=ExternalReferenceType.BUILD_META,
            url=XsUri(_run_url(run)),
            comment=f"the {what} run",
        )
        for what, run in (("registered", facts.run_id), ("training", facts.training_run_id))
        if run
    ]
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=facts.model,
        version=facts.version,
        bom_ref=f"model:{facts.model}@{facts.version}",
        description=facts.description or None,
        properties=[Property(name=k, value=v) for k, v in props.items() if v],
        external_references=refs,
    )


def _run_url(run_id: str) -> str:
    return f"{urls.API}/runs/{quote(run_id, safe='')}"


def _model_card(facts: BomFacts, data_refs: list[str]) -> dict[str, Any]:
    """CycloneDX's ``modelCard`` of the version (what our model card holds)."""
    parameters: dict[str, Any] = {}
    task = _TASKS.get(facts.model_type)
    if task:
        parameters["task"] = task
        # A classifier or regressor is fitted on labels; a clustering is not.
        parameters["approach"] = {"type": "unsupervised" if task == "clustering" else "supervised"}
    parameters["architectureFamily"] = facts.framework
    loader = _loader_class(facts.mlmodel)
    if loader:
        parameters["modelArchitecture"] = loader
    if data_refs:
        parameters["datasets"] = [{"ref": ref} for ref in data_refs]
    inputs, outputs = _signature(facts.mlmodel)
    if inputs:
        parameters["inputs"] = [{"format": f} for f in inputs]
    if outputs:
        parameters["outputs"] = [{"format": f} for f in outputs]
    card: dict[str, Any] = {
        "bom-ref": f"model-card:{facts.model}@{facts.version}",
        "modelParameters": parameters,
    }
    if facts.metrics:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {"type": name, "value": _number(value)}
                for name, value in sorted(facts.metrics.items())
            ]
        }
    props = [{"name": f"param:{k}", "value": str(v)} for k, v in sorted(facts.params.items())]
    if facts.description:
        props.insert(0, {"name": "matih:description", "value": facts.description})
    if props:
        card["properties"] = props
    return card


def _number(value: float) -> str:
    return repr(float(value))


def _loader_class(mlmodel: Mapping[str, Any]) -> str | None:
    """The flavor MLflow saved the model with (``sklearn``, ``pytorch``, ``onnx``...)."""
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, Mapping):
        return None
    own = [name for name in flavors if name != "python_function"]
    return f"mlflow.{own[0]}" if own else None


def _signature(mlmodel: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The signature's inputs and outputs, one ``name: type`` (or ``tensor dtype shape``)
    per column or tensor, from the MLmodel's JSON strings."""
    signature = mlmodel.get("signature")
    if not isinstance(signature, Mapping):
        return [], []
    return _specs(signature.get("inputs")), _specs(signature.get("outputs"))


def _specs(text: Any) -> list[str]:
    try:
        items = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    out: list[str] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        name = item.get("name")
        if item.get("type") == "tensor":
            spec = item.get("tensor-spec") or {}
            kind = f"tensor {spec.get('dtype', '?')} {list(spec.get('shape', []))}"
        else:
            kind = str(item.get("type", "?"))
        out.append(f"{name}: {kind}" if name else kind)
    return out


# ---------------------------------------------------------------------- components


def _library(req: Pinned, *, framework: bool) -> Component:
    purl = PackageURL(type="pypi", name=req.name, version=req.version)
    props = [Property(name="matih:requirement", value=req.line)]
    if framework:
        props.append(Property(name="matih:role", value="framework"))
    return Component(
        type=ComponentType.LIBRARY,
        name=req.name,
        version=req.version,
        purl=purl,
        bom_ref=purl.to_string(),
        properties=props,
    )


def _dataset(d: DatasetInput) -> Component:
    props = {
        "matih:dataset.digest": d.digest,
        "matih:dataset.source_type": d.source_type,
        "matih:dataset.source": d.source,
        "matih:dataset.context": d.context,
    }
    return Component(
        type=ComponentType.DATA,
        name=d.name,
        version=d.digest or None,
        bom_ref=f"dataset:{d.name}@{d.digest}",
        properties=[Property(name=k, value=v) for k, v in props.items() if v],
    )


def _feature_views(tags: Mapping[str, str]) -> list[Component]:
    """One component per Feast feature view the training job tagged
    (``feast.view.<name>`` = the definition's hash; see ``training.features``)."""
    project = tags.get("feast.project", "")
    features = ",".join(
        v
        for k, v in sorted(tags.items())
        if k == "feast.features" or k.startswith("feast.features.")
    )
    out: list[Component] = []
    for key, digest in sorted(tags.items()):
        if not key.startswith(_FEAST_VIEW) or key.endswith(".feast_version"):
            continue
        view = key[len(_FEAST_VIEW) :]
        used = [f.split(":", 1)[1] for f in features.split(",") if f.startswith(f"{view}:")]
        props = {
            "matih:feast.project": project,
            "matih:feast.view": view,
            "matih:feast.definition_hash": digest,
            "matih:feast.feast_version": tags.get(f"{key}.feast_version", ""),
            "matih:feast.features": ",".join(used),
        }
        out.append(
            Component(
                type=ComponentType.DATA,
                name=f"{project}/{view}" if project else view,
                version=digest or None,
                bom_ref=f"feast:{project}/{view}@{digest}",
                properties=[Property(name=k, value=v) for k, v in props.items() if v],
            )
        )
    return out


def _data_entry(c: Component) -> dict[str, Any]:
    """The component's CycloneDX ``data`` entry (a dataset or a feature view)."""
    entry: dict[str, Any] = {"type": "dataset", "name": c.name}
    if str(c.bom_ref).startswith("feast:"):
        entry["description"] = "a Feast feature view, read by the training job"
    else:
        entry["description"] = "a dataset input of the training run"
    return entry

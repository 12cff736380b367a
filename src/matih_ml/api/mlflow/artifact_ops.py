"""Artifact transfer through the service (``/api/2.0/mlflow-artifacts/artifacts/...``).

A client's ``mlflow-artifacts:/<path>`` is ``<tenant's prefix>/<path>``: the path never
leaves the tenant's prefix. Reads may look at anything under it. Writes and deletes may
touch only an experiment's folder (``<experiment id>/...``, where runs and logged models
keep their files) of an active experiment of the tenant: the registry's own copies under
``models/`` are written by registration alone, so a version's files cannot be swapped
after its gates passed; and a file of theirs is sent only if it is the one that was
signed (a store changed behind the service's back).
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from pathlib import Path

from flask import request
from mlflow.entities import FileInfo
from mlflow.protos.mlflow_artifacts_pb2 import DeleteArtifact, UploadArtifact
from mlflow.protos.service_pb2 import ListArtifacts
from mlflow.server.handlers import _wrap_response
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from matih_ml.api.mlflow.door import Call, FileAnswer
from matih_ml.errors import NotFoundError, ValidationError
from matih_ml.mlflow_errors import translated

_CHUNK = 1024 * 1024


def _repo(call: Call):  # noqa: ANN202 - MLflow's ArtifactRepository
    return get_artifact_repository(call.uris.root)


def _writable(call: Call, rel: str) -> str:
    """Refuse a write outside an active experiment's folder of the tenant."""
    first = rel.split("/", 1)[0]
    if not first.isdigit() or "/" not in rel:
        raise ValidationError(
            f"Artifacts can be written only inside an experiment's folder, not at {rel!r}.",
            details={"field": "path"},
        )
    client = call.services.backend.client
    with translated(f"Experiment {first!r}"):
        experiment = client.get_experiment(first)
    if experiment.lifecycle_stage != "active":
        raise ValidationError(f"Experiment {first!r} is deleted.", details={"field": "path"})
    return rel


def _nothing() -> None:
    pass


def _local_file(root: str, rel: str) -> FileAnswer:
    """A file under a local artifact root, sent from where it is stored.

    The path is resolved first, so that a link cannot lead out of the tenant's folder.
    """
    top = Path(root).resolve()
    path = (top / rel).resolve()
    if not path.is_relative_to(top) or not path.exists():
        raise NotFoundError(f"Artifact {rel!r} not found.")
    if not path.is_file():
        raise ValidationError(f"Artifact {rel!r} is a folder; list it instead.")
    return FileAnswer(str(path), path.name, _nothing)


def _checked(call: Call, rel: str, answer: FileAnswer) -> FileAnswer:
    """A file of a version's registry copy (``models/<name>/<version>/<path>``) is sent
    only if it is the one that was signed (:mod:`matih_ml.registry.signed_files`)."""
    parts = rel.split("/", 3)
    if len(parts) < 4 or parts[0] != "models":
        return answer
    try:
        call.services.signed_files.require(
            call.tenant, parts[1], parts[2], parts[3], Path(answer.path)
        )
    except BaseException:
        answer.cleanup()
        raise
    return answer


def download(call: Call, artifact_path: str) -> FileAnswer:
    """``GET .../artifacts/<path>``: one file."""
    rel = call.uris.relative(artifact_path)
    if not rel:
        raise ValidationError("An artifact path is required.", details={"field": "path"})
    if call.uris.root.startswith("/"):
        # MLflow's local repository would copy the file to a temp folder to send it.
        return _checked(call, rel, _local_file(call.uris.root, rel))
    tmp = tempfile.mkdtemp(prefix="matih-artifact-")
    try:
        with translated(f"Artifact {rel!r}"):
            local = Path(_repo(call).download_artifacts(rel, tmp))
    except (OSError, NotFoundError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise NotFoundError(f"Artifact {rel!r} not found.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if local.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValidationError(f"Artifact {rel!r} is a folder; list it instead.")
    answer = FileAnswer(str(local), local.name, lambda: shutil.rmtree(tmp, ignore_errors=True))
    return _checked(call, rel, answer)


def upload(call: Call, artifact_path: str) -> object:
    """``PUT .../artifacts/<path>``: one file, the request body."""
    rel = _writable(call, call.uris.relative(artifact_path))
    head, tail = posixpath.split(rel)
    size = request.content_length or 0
    # One of the tenant's upload slots, and room in its storage (429 / 413).
    with call.upload_slot(size), tempfile.TemporaryDirectory(prefix="matih-upload-") as tmp:
        local = Path(tmp) / tail
        with local.open("wb") as out:
            while chunk := request.stream.read(_CHUNK):
                out.write(chunk)
        with translated(f"Artifact {rel!r}"):
            _repo(call).log_artifact(str(local), head or None)
    return _wrap_response(UploadArtifact.Response())


def list_files(call: Call) -> object:
    """``GET .../artifacts?path=<path>``: a folder's entries."""
    rel = call.uris.relative(request.args.get("path"))
    with translated(f"Artifact folder {rel!r}"):
        entries = _repo(call).list_artifacts(rel or None)
    response = ListArtifacts.Response()
    response.files.extend(
        FileInfo(posixpath.basename(f.path), f.is_dir, f.file_size).to_proto() for f in entries
    )
    return _wrap_response(response)


def delete(call: Call, artifact_path: str) -> object:
    """``DELETE .../artifacts/<path>``."""
    rel = _writable(call, call.uris.relative(artifact_path))
    with translated(f"Artifact {rel!r}"):
        _repo(call).delete_artifacts(rel)
    return _wrap_response(DeleteArtifact.Response())


OPS = {
    "_download_artifact": download,
    "_upload_artifact": upload,
    "_list_artifacts_mlflow_artifacts": list_files,
    "_delete_artifact_mlflow_artifacts": delete,
}

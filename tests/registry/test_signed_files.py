"""One file of a version, checked against its signature before it is sent
(:class:`matih_ml.registry.signed_files.SignedFiles`): every file of a signed version
passes, a changed or added one is refused with one event, the signature file and unsigned
versions pass, and a version registered anew under the same number is checked against its
own signature, not a remembered one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matih_ml.errors import IntegrityError
from matih_ml.registry.metadata import TAG_ARTIFACT_URI, TAG_SIGNATURE_DIGEST
from matih_ml.registry.provenance import SIGNATURE_FILE
from matih_ml.registry.signed_files import SignedFiles


def _register(registry, tenant: str, model, name: str = "files") -> tuple[str, Path]:
    version = registry.register_model_version(tenant, name, model, "sklearn", {}, {})[1].version
    return version, Path(registry.version_tags(tenant, name, version)[TAG_ARTIFACT_URI])


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def _events(services, tenant: str) -> list[dict]:
    from matih_ml.events.catalog import EventType

    found = services.events.feed(tenant, types=[EventType.MODEL_INTEGRITY_FAILED], limit=1000)
    return [e for e in found if e["data"]["where"] == "download"]


def test_every_signed_file_passes_and_a_changed_or_added_one_is_refused(
    services, registry, tenant, sk_model
) -> None:
    checks = SignedFiles(services.provenance, registry.download_version_file)
    version, folder = _register(registry, tenant, sk_model)
    files = _files(folder)
    assert SIGNATURE_FILE in files and "MLmodel" in files and len(files) > 5
    for rel, path in files.items():
        assert checks.require(tenant, "files", version, rel, path).status == "verified", rel

    target = next(p for rel, p in files.items() if rel in ("model.skops", "model.pkl"))
    target_rel = target.relative_to(folder).as_posix()
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(IntegrityError) as refused:
        checks.require(tenant, "files", version, target_rel, target)
    assert refused.value.details["files"] == [target_rel]
    assert refused.value.details["where"] == "download"
    # A file the signature does not list (added to the folder later) is refused too.
    extra = folder / "extra.py"
    extra.write_text("print('hello')\n")
    with pytest.raises(IntegrityError, match=r"extra\.py"):
        checks.require(tenant, "files", version, "extra.py", extra)
    # The signature itself is sent as it is; one event for the episode.
    assert checks.require(tenant, "files", version, SIGNATURE_FILE, files[SIGNATURE_FILE]).ok
    assert len(_events(services, tenant)) == 1
    target.write_bytes(original)
    assert checks.require(tenant, "files", version, target_rel, target).ok


def test_a_version_registered_anew_under_the_same_number_is_checked_against_its_own(
    services, registry, tenant, sk_model
) -> None:
    from sklearn.linear_model import LogisticRegression

    checks = SignedFiles(services.provenance, registry.download_version_file)
    version, folder = _register(registry, tenant, sk_model, "again")
    first = registry.version_tags(tenant, "again", version)[TAG_SIGNATURE_DIGEST]
    for rel, path in _files(folder).items():
        checks.require(tenant, "again", version, rel, path)  # the tags are remembered now
    services.lifecycle.delete_model(tenant, "again")
    x = np.random.default_rng(1).normal(size=(40, 4))
    other = LogisticRegression(C=0.01).fit(x, [0, 1] * 20)
    again, folder = _register(registry, tenant, other, "again")
    assert again == version
    assert registry.version_tags(tenant, "again", again)[TAG_SIGNATURE_DIGEST] != first
    for rel, path in _files(folder).items():
        assert checks.require(tenant, "again", again, rel, path).ok, rel
    assert _events(services, tenant) == []


def test_an_unsigned_versions_files_pass(services, registry, tenant, sk_model) -> None:
    from matih_ml.mlflow_errors import translated
    from matih_ml.registry.metadata import TAG_SIGNATURE_KEY_ID

    checks = SignedFiles(services.provenance, registry.download_version_file)
    version, folder = _register(registry, tenant, sk_model, "unsigned")
    with services.tenants.scope(tenant), translated():
        for tag in (TAG_SIGNATURE_DIGEST, TAG_SIGNATURE_KEY_ID):
            services.backend.client.delete_model_version_tag("unsigned", version, tag)
    for rel, path in _files(folder).items():
        assert checks.require(tenant, "unsigned", version, rel, path).status == "unsigned"

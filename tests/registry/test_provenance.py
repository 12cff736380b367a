"""Signed versions: what registration signs, what a rotation keeps, and the operator's key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from matih_ml.errors import IntegrityError, ValidationError
from matih_ml.events.secret_box import SecretBox
from matih_ml.registry.metadata import (
    TAG_ARTIFACT_URI,
    TAG_SIGNATURE_DIGEST,
    TAG_SIGNATURE_KEY_ID,
)
from matih_ml.registry.provenance import (
    SIGNATURE_FILE,
    Provenance,
    SigningKeys,
    file_digest,
    sign_folder,
)


def _register(registry, tenant: str, model, name: str = "signed") -> str:
    return registry.register_model_version(tenant, name, model, "sklearn", {"accuracy": 0.9}, {})[
        1
    ].version


def model_file(folder: Path) -> Path:
    """The stored model file of an sklearn version (skops, or a pickle)."""
    return next(folder / n for n in ("model.skops", "model.pkl") if (folder / n).is_file())


def test_registration_signs_the_registry_copy_and_tags_the_version(
    services, registry, tenant, sk_model
) -> None:
    version = _register(registry, tenant, sk_model)
    tags = registry.version_tags(tenant, "signed", version)
    folder = Path(tags[TAG_ARTIFACT_URI])
    sig = folder / SIGNATURE_FILE
    assert sig.is_file()
    assert tags[TAG_SIGNATURE_DIGEST] == file_digest(sig)
    assert tags[TAG_SIGNATURE_DIGEST].startswith("sha256:")
    assert tags[TAG_SIGNATURE_KEY_ID] == services.provenance.keys.list(tenant)[0].key_id
    found = services.provenance.verify(tenant, "signed", version)
    assert (found.status, found.reason, found.files) == ("verified", "", [])
    # The private half is stored encrypted, never as PEM.
    from matih_ml.store.signing_rows import SigningKeyRow

    with services.db.uow(tenant=tenant) as s:
        row = s.get(SigningKeyRow, (tenant, tags[TAG_SIGNATURE_KEY_ID]))
        assert row is not None and row.private_enc and "PRIVATE KEY" not in row.private_enc


def test_a_changed_byte_is_named_and_refused_then_restoring_it_verifies(
    services, registry, tenant, sk_model
) -> None:
    version = _register(registry, tenant, sk_model)
    folder = Path(registry.version_tags(tenant, "signed", version)[TAG_ARTIFACT_URI])
    pkl = model_file(folder)
    original = pkl.read_bytes()
    pkl.write_bytes(original[:10] + bytes([original[10] ^ 1]) + original[11:])
    found = services.provenance.verify(tenant, "signed", version)
    assert (found.status, found.files) == ("failed", [pkl.name])
    assert found.reason == f"files changed since it was signed: {pkl.name}"
    with pytest.raises(IntegrityError) as caught:
        services.provenance.require_promotable(tenant, "signed", version)
    assert caught.value.details["files"] == [pkl.name]
    pkl.write_bytes(original)
    assert services.provenance.verify(tenant, "signed", version).status == "verified"


def test_a_replaced_signature_file_is_refused(services, registry, tenant, sk_model) -> None:
    first = _register(registry, tenant, sk_model)
    second = _register(registry, tenant, sk_model)
    uri = registry.version_tags(tenant, "signed", first)[TAG_ARTIFACT_URI]
    other = registry.version_tags(tenant, "signed", second)[TAG_ARTIFACT_URI]
    # v2's signature, valid with the same key, over the same model bytes but another card.
    shutil.copy(Path(other) / SIGNATURE_FILE, Path(uri) / SIGNATURE_FILE)
    found = services.provenance.verify(tenant, "signed", first)
    assert found.status == "failed"
    assert found.reason == "its signature file is not the one recorded on the version"


def test_a_signature_made_before_a_rotation_still_verifies(
    services, registry, tenant, sk_model
) -> None:
    before = _register(registry, tenant, sk_model)
    old_key = registry.version_tags(tenant, "signed", before)[TAG_SIGNATURE_KEY_ID]
    fresh = services.provenance.keys.rotate(tenant)
    after = _register(registry, tenant, sk_model)
    assert registry.version_tags(tenant, "signed", after)[TAG_SIGNATURE_KEY_ID] == fresh.key_id
    assert fresh.key_id != old_key
    keys = {k.key_id: k for k in services.provenance.keys.list(tenant)}
    assert not keys[old_key].active and keys[old_key].retired_at is not None
    assert keys[fresh.key_id].active
    assert services.provenance.verify(tenant, "signed", before).status == "verified"
    assert services.provenance.verify(tenant, "signed", after).status == "verified"


def test_keys_are_per_tenant(services, registry, tenant, other_tenant, sk_model) -> None:
    mine = _register(registry, tenant, sk_model)
    theirs = _register(registry, other_tenant, sk_model)
    key = registry.version_tags(tenant, "signed", mine)[TAG_SIGNATURE_KEY_ID]
    assert registry.version_tags(other_tenant, "signed", theirs)[TAG_SIGNATURE_KEY_ID] != key
    # Another tenant's key id is not on record for this tenant.
    assert services.provenance.keys.public_pem(other_tenant, key) is None


def _pem_file(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_an_operator_key_signs_and_replacing_it_keeps_old_signatures_valid(
    services, settings, tenant, tmp_path
) -> None:
    key_file = _pem_file(tmp_path / "signing.pem")
    keys = SigningKeys(services.db, SecretBox(settings), key_file)
    folders = {}
    for n in ("1", "2"):
        folder = tmp_path / n
        folder.mkdir()
        (folder / "model.bin").write_bytes(b"weights " + n.encode())
        folders[n] = (folder, sign_folder(keys, tenant, folder))
        _pem_file(key_file)  # the operator replaces the key after each signature

    def download(_t: str, _m: str, version: str, dest: Path) -> Path:
        shutil.copytree(folders[version][0], dest)
        return dest

    provenance = Provenance(
        keys,
        services.db,
        services.events,
        download=download,
        tags_of=lambda _t, _m, version: folders[version][1],
    )
    ids = {folders[n][1][TAG_SIGNATURE_KEY_ID] for n in folders}
    assert len(ids) == 2
    assert {k.source for k in keys.list(tenant)} == {"operator"}
    assert [provenance.verify(tenant, "m", n).status for n in folders] == ["verified"] * 2
    with pytest.raises(ValidationError, match="MATIH_SIGNING_KEY_FILE"):
        keys.rotate(tenant)


def test_unsigned_versions_follow_the_policy(services, registry, tenant, sk_model) -> None:
    from matih_ml.mlflow_errors import translated

    version = _register(registry, tenant, sk_model)
    with services.tenants.scope(tenant), translated():
        for tag in (TAG_SIGNATURE_DIGEST, TAG_SIGNATURE_KEY_ID):
            services.backend.client.delete_model_version_tag("signed", version, tag)
    assert services.provenance.verify(tenant, "signed", version).status == "unsigned"
    assert services.provenance.require_promotable(tenant, "signed", version).status == "unsigned"
    strict = Provenance(
        services.provenance.keys,
        services.db,
        services.events,
        download=registry.download_version,
        tags_of=registry.version_tags,
        allow_unsigned=False,
    )
    with pytest.raises(IntegrityError, match="MATIH_UNSIGNED_VERSIONS=refuse"):
        strict.require_promotable(tenant, "signed", version)

"""One file of a version's registry copy, checked against the version's signature before
it is sent.

Serving checks a whole version before it loads it (:class:`~.provenance.Provenance`). A
client that downloads the files itself (a stock MLflow client's ``load_model
("models:/churn@production")`` through the MLflow door, ``GET .../files/<path>``, the
SDK's download) fetches them one at a time, so each is checked on its own: the signature
is verified once (its manifest, the files' sha256 digests, is kept per signature digest,
which the version records), then each file's digest is compared with the manifest's. A
file the manifest does not list, or whose bytes differ, is refused with
``409 MODEL_INTEGRITY_FAILED`` (and one event per episode), as a load would be.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from matih_ml.registry.metadata import TAG_SIGNATURE_DIGEST, TAG_SIGNATURE_KEY_ID
from matih_ml.registry.provenance import (
    SIGNATURE_FILE,
    Provenance,
    Status,
    Verification,
    file_digest,
)

Manifest = dict[str, str]  # a file's path in the version's folder -> its sha256 (hex)
Signed = tuple[str | None, str | None]  # a version's signature digest and key id


def read_manifest(signature: Path, public_pem: str) -> Manifest:
    """The files a signature lists, once the signature verifies with ``public_pem``.

    Raises:
        ValueError: If it does not verify (a wrong key, a changed statement), or lists
            digests other than sha256 of whole files.
    """
    # model-signing's public API verifies a whole folder; its verifier alone (the same
    # one that API uses, pinned at 1.1.1) verifies the signature and returns what it
    # lists, without the files.
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    with tempfile.TemporaryDirectory(prefix="matih-verify-") as tmp:
        pub = Path(tmp) / "key.pub"
        pub.write_text(public_pem)
        manifest = sign_ec_key.Verifier(pub).verify(sign_sigstore_pb.Signature.read(signature))
    found: Manifest = {}
    for item in manifest.resource_descriptors():
        if item.digest.algorithm != "sha256":
            raise ValueError(f"{item.identifier}: a {item.digest.algorithm} digest")
        found[item.identifier] = item.digest.digest_hex
    return found


class SignedFiles:
    """Checks single files of versions against their signatures.

    Args:
        provenance: The keys, the versions' tags, and the episodes and events of failed
            checks.
        download_file: Copies one file of a version's registry copy into a folder.
        cache_size: How many verified manifests are kept.
        signature_ttl_s: How long a version's signature digest and key id, read from its
            tags, are trusted before they are read again (a refusal always reads them
            again first).
    """

    def __init__(
        self,
        provenance: Provenance,
        download_file: Callable[[str, str, str, str, Path], Path],
        *,
        cache_size: int = 256,
        signature_ttl_s: float = 60.0,
    ) -> None:
        self._provenance = provenance
        self._download_file = download_file
        self._size = cache_size
        self._lock = threading.Lock()
        self._manifests: OrderedDict[tuple[str, str, str], Manifest] = OrderedDict()
        self._ttl_s = signature_ttl_s
        self._signatures: OrderedDict[tuple[str, str, str], tuple[float, Signed]] = OrderedDict()

    def require(
        self, tenant_id: str, model: str, version: str, path: str, local: Path
    ) -> Verification:
        """Check ``local``, the version's file ``path``, before it is sent.

        The signature file itself is sent unchecked (a client verifies with it).
        Unsigned versions' files are sent, as unsigned versions load.

        Raises:
            IntegrityError: If the file is not the one that was signed, or the signature
                does not verify (one ``MODEL_INTEGRITY_FAILED`` per episode).
            NotFoundError: If the version is not the tenant's.
        """
        key = (tenant_id, model, version)
        cached = self._cached_signature(key)
        signature = cached or self._read_signature(key)
        failure = self._failure(key, signature, path, local)
        if failure is not None and cached is not None:
            # Read again before refusing: the version may have been deleted and
            # registered anew under the same number since its tags were remembered.
            signature = self._read_signature(key)
            failure = self._failure(key, signature, path, local)
        digest, key_id = signature
        if failure is None:
            status: Status = "verified" if digest and key_id else "unsigned"
            return Verification(model, version, status, "", key_id, digest)
        reason, files = failure
        result = Verification(model, version, "failed", reason, key_id, digest, files)
        return self._provenance.refuse(tenant_id, result, "download")

    def _cached_signature(self, key: tuple[str, str, str]) -> Signed | None:
        with self._lock:
            found = self._signatures.get(key)
            if found is None or found[0] < time.monotonic():
                return None
            return found[1]

    def _read_signature(self, key: tuple[str, str, str]) -> Signed:
        """The version's signature digest and key id (None, None: unsigned), read from
        its tags and remembered for a while: they are set once, when it became ready (a
        tag read costs several of MLflow's queries, and a load fetches a dozen files)."""
        tags = self._provenance.tags_of(*key)
        signed = (tags.get(TAG_SIGNATURE_DIGEST), tags.get(TAG_SIGNATURE_KEY_ID))
        with self._lock:
            self._signatures[key] = (time.monotonic() + self._ttl_s, signed)
            self._signatures.move_to_end(key)
            while len(self._signatures) > self._size * 4:
                self._signatures.popitem(last=False)
        return signed

    def _failure(
        self, key: tuple[str, str, str], signed: Signed, path: str, local: Path
    ) -> tuple[str, list[str]] | None:
        """Why ``local`` may not be sent (a reason, the files), or None."""
        digest, key_id = signed
        if not digest or not key_id or path == SIGNATURE_FILE:
            return None
        try:
            manifest = self._manifest(*key, digest, key_id)
        except ValueError as exc:
            return str(exc), []
        if manifest.get(path) != file_digest(local).removeprefix("sha256:"):
            return f"files changed since it was signed: {path}", [path]
        return None

    def _manifest(
        self, tenant_id: str, model: str, version: str, digest: str, key_id: str
    ) -> Manifest:
        """The version's verified manifest (cached by its signature's digest: the same
        digest is the same signature file, so the same verified list)."""
        key = (tenant_id, key_id, digest)
        with self._lock:
            cached = self._manifests.get(key)
            if cached is not None:
                self._manifests.move_to_end(key)
                return cached
        public = self._provenance.keys.public_pem(tenant_id, key_id)
        if public is None:
            raise ValueError(f"the signing key {key_id} is not on record")
        with tempfile.TemporaryDirectory(prefix="matih-sig-") as tmp:
            try:
                sig = self._download_file(tenant_id, model, version, SIGNATURE_FILE, Path(tmp))
            except Exception as exc:
                raise ValueError("its signature file is missing") from exc
            if file_digest(sig) != digest:
                raise ValueError("its signature file is not the one recorded on the version")
            try:
                manifest = read_manifest(sig, public)
            except Exception as exc:
                raise ValueError(f"its signature does not verify with key {key_id}") from exc
        with self._lock:
            self._manifests[key] = manifest
            while len(self._manifests) > self._size:
                self._manifests.popitem(last=False)
        return manifest

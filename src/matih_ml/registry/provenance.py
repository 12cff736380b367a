"""Signed model versions: each version's files are signed when it becomes ready, and
checked before it is promoted or loaded (docs/provenance.md).

The signature is an OpenSSF model-signing bundle (``model-signing``, elliptic-curve key
signer), written as ``model.sig`` inside the version's folder and left out of what it
hashes. The version carries ``matih.signature.digest`` (the sha256 of that file) and
``matih.signature.key_id``. Keys are per tenant: generated on first need, the private
half encrypted with the service's secret box (as webhook secrets are), or one key the
operator provides (``MATIH_SIGNING_KEY_FILE``). Every public key used is kept, so a
signature made before a rotation still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select, update

from matih_ml.errors import IntegrityError, UnavailableError, ValidationError
from matih_ml.events.catalog import EventType
from matih_ml.events.outbox import EventLog
from matih_ml.events.secret_box import SecretBox
from matih_ml.registry.metadata import TAG_SIGNATURE_DIGEST, TAG_SIGNATURE_KEY_ID
from matih_ml.store import lifecycle_store as store
from matih_ml.store.db import Database
from matih_ml.store.signing_rows import IntegrityFailureRow, SigningKeyRow

log = logging.getLogger(__name__)

SIGNATURE_FILE = "model.sig"

Status = Literal["verified", "failed", "unsigned"]


def key_id_of(public: ec.EllipticCurvePublicKey) -> str:
    """A key's id: ``ec-p256:`` and the first 16 hex digits of its public key's sha256."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "ec-p256:" + hashlib.sha256(der).hexdigest()[:16]


def _public_pem(public: ec.EllipticCurvePublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


@dataclass(frozen=True)
class SigningKey:
    """A key that signs: its id and its private half (PEM, unencrypted, in memory only)."""

    key_id: str
    private_pem: bytes


@dataclass(frozen=True)
class KeyInfo:
    """A tenant's signing key as an operator sees it (never its private half)."""

    key_id: str
    source: str
    active: bool
    created_at: str
    retired_at: str | None
    public_pem: str


class SigningKeys:
    """Each tenant's signing keys, in the service's database.

    Args:
        db: The service database.
        box: Encrypts the private halves (``MATIH_SECRET_KEY``).
        operator_key_file: An operator's EC private key (PEM); when set it signs every
            tenant's versions and the service makes no keys of its own.
        box_ready: Whether the secret box has a key (``MATIH_SECRET_KEY``, or the
            embedded default's key file). Without one and without an operator's key,
            nothing can be signed: versions are registered unsigned, with a warning.
    """

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        operator_key_file: Path | None,
        *,
        box_ready: bool = True,
    ) -> None:
        self._db = db
        self._box = box
        self._operator_file = operator_key_file
        self.can_sign = operator_key_file is not None or box_ready

    def signing_key(self, tenant_id: str) -> SigningKey:
        """The key that signs the tenant's new versions, made on first need.

        Raises:
            UnavailableError: If the operator's key file cannot be read, or the service's
                secret key is missing.
        """
        if self._operator_file is not None:
            return self._operator_key(tenant_id)
        with self._db.uow(tenant=tenant_id) as s:
            row = s.scalars(
                select(SigningKeyRow)
                .where(SigningKeyRow.active.is_(True), SigningKeyRow.source == "service")
                .order_by(SigningKeyRow.created_at, SigningKeyRow.key_id)
                .limit(1)
            ).first()
            if row is not None and row.private_enc:
                return SigningKey(row.key_id, self._box.decrypt(row.private_enc).encode())
        return self._new_key(tenant_id)

    def ensure(self, tenant_id: str) -> str | None:
        """Make the tenant's signing key now if it has none; answer its id.

        For callers about to sign inside a transaction that holds SQLite's write lock,
        where making the key (a write of its own) would wait forever. None when nothing
        can sign (:attr:`can_sign`).
        """
        return self.signing_key(tenant_id).key_id if self.can_sign else None

    def _new_key(self, tenant_id: str) -> SigningKey:
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key_id = key_id_of(private.public_key())
        with self._db.uow(tenant=tenant_id) as s:
            # Two first registrations at once may each make one: both stay valid (their
            # public halves are kept), and the older one signs from then on.
            s.add(
                SigningKeyRow(
                    tenant_id=tenant_id,
                    key_id=key_id,
                    public_pem=_public_pem(private.public_key()),
                    private_enc=self._box.encrypt(pem.decode()),
                    source="service",
                    active=True,
                    created_at=store.now(),
                )
            )
        return SigningKey(key_id, pem)

    def _operator_key(self, tenant_id: str) -> SigningKey:
        assert self._operator_file is not None
        try:
            pem = self._operator_file.read_bytes()
            private = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise UnavailableError(
                f"MATIH_SIGNING_KEY_FILE ({self._operator_file}) is not a readable, "
                "unencrypted PEM private key.",
                details={"setting": "MATIH_SIGNING_KEY_FILE"},
            ) from exc
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise UnavailableError(
                "MATIH_SIGNING_KEY_FILE must hold an elliptic-curve private key.",
                details={"setting": "MATIH_SIGNING_KEY_FILE"},
            )
        key_id = key_id_of(private.public_key())
        with self._db.uow(tenant=tenant_id) as s:
            # Its public half is kept for the tenant, so the tenant's versions still
            # verify after the operator replaces the file.
            store.insert_if_missing(
                s,
                SigningKeyRow,
                {
                    "tenant_id": tenant_id,
                    "key_id": key_id,
                    "public_pem": _public_pem(private.public_key()),
                    "private_enc": None,
                    "source": "operator",
                    "active": True,
                    "created_at": store.now(),
                },
            )
        return SigningKey(key_id, pem)

    def public_pem(self, tenant_id: str, key_id: str) -> str | None:
        """The public half of one of the tenant's keys (retired ones too), or None."""
        with self._db.uow(tenant=tenant_id) as s:
            row = s.get(SigningKeyRow, (tenant_id, key_id))
            return row.public_pem if row is not None else None

    def rotate(self, tenant_id: str) -> KeyInfo:
        """Retire the tenant's signing keys and make a new one; old signatures still verify.

        Raises:
            ValidationError: When the operator's key file signs (replace the file instead).
        """
        if self._operator_file is not None:
            raise ValidationError(
                "Versions are signed with MATIH_SIGNING_KEY_FILE: to rotate, replace that "
                "file and restart; the old public key stays on record.",
                details={"setting": "MATIH_SIGNING_KEY_FILE"},
            )
        with self._db.uow(tenant=tenant_id) as s:
            s.execute(
                update(SigningKeyRow)
                .where(SigningKeyRow.active.is_(True))
                .values(active=False, retired_at=store.now())
            )
        fresh = self._new_key(tenant_id)
        return next(k for k in self.list(tenant_id) if k.key_id == fresh.key_id)

    def list(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's keys, oldest first."""
        with self._db.uow(tenant=tenant_id) as s:
            rows = s.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at)).all()
            return [
                KeyInfo(
                    r.key_id,
                    r.source,
                    r.active,
                    r.created_at.isoformat(),
                    r.retired_at.isoformat() if r.retired_at else None,
                    r.public_pem,
                )
                for r in rows
            ]


def sign_folder(keys: SigningKeys, tenant_id: str, folder: Path) -> dict[str, str]:
    """Sign ``folder``'s files with the tenant's key; write ``model.sig`` into it.

    Returns:
        The tags the version carries: the signature's digest and the key's id (none when
        nothing can sign: :attr:`SigningKeys.can_sign`).
    """
    import model_signing

    if not keys.can_sign:
        # A deployment of several hosts with neither MATIH_SECRET_KEY nor
        # MATIH_SIGNING_KEY_FILE: registering stays possible (as before signing), and the
        # version says it is unsigned (docs/decisions.md, "Unsigned versions").
        log.warning(
            "version of tenant %s registered unsigned: set MATIH_SECRET_KEY or "
            "MATIH_SIGNING_KEY_FILE to sign versions",
            tenant_id,
        )
        return {}
    key = keys.signing_key(tenant_id)
    sig = folder / SIGNATURE_FILE
    sig.unlink(missing_ok=True)  # an upload's own model.sig is not ours to trust
    with tempfile.TemporaryDirectory(prefix="matih-sign-") as tmp:
        # model-signing reads the key from a file: one only this process can read, gone
        # when signing ends.
        pem = Path(tmp) / "key.pem"
        pem.touch(mode=0o600)
        pem.write_bytes(key.private_pem)
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE])
        (
            model_signing.signing.Config()
            .set_hashing_config(hashing)
            .use_elliptic_key_signer(private_key=pem)
            .sign(folder, sig)
        )
    return {TAG_SIGNATURE_DIGEST: file_digest(sig), TAG_SIGNATURE_KEY_ID: key.key_id}


@dataclass(frozen=True)
class Verification:
    """What checking a version's files against its signature found."""

    model: str
    version: str
    status: Status
    reason: str
    key_id: str | None = None
    signature_digest: str | None = None
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the files match the signature."""
        return self.status == "verified"


def _changed_files(folder: Path, sig: Path) -> list[str]:
    """The files that differ from what the signature lists (added, removed or changed).

    Only for the message: the verdict is model-signing's. Its error carries the same
    facts as the repr of a list, so they are read from the signed statement instead
    (read only after the signature itself verified or not; a list from a forged
    statement would name wrong files, never let one through).
    """
    try:
        bundle = json.loads(sig.read_text())
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        listed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    except (OSError, ValueError, KeyError, TypeError):
        return []
    found = {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p != sig
    }
    return sorted(n for n in set(listed) | set(found) if listed.get(n) != found.get(n))


class Provenance:
    """Signs versions' files, and checks them where it matters.

    Args:
        keys: The tenants' signing keys.
        db: The service database (the episodes of failed checks).
        events: Where ``MODEL_INTEGRITY_FAILED`` goes.
        download: Copies a version's files (the registry's copy) into a folder.
        tags_of: A version's tags.
        allow_unsigned: Whether a version with no signature may be promoted
            (``MATIH_UNSIGNED_VERSIONS``).
    """

    def __init__(
        self,
        keys: SigningKeys,
        db: Database,
        events: EventLog,
        *,
        download: Callable[[str, str, str, Path], Path],
        tags_of: Callable[[str, str, str], dict[str, str]],
        allow_unsigned: bool = True,
    ) -> None:
        self.keys = keys
        self._db = db
        self._events = events
        self._download = download
        self._tags_of = tags_of
        self.allow_unsigned = allow_unsigned

    # ------------------------------------------------------------------ signing

    def sign(self, tenant_id: str, folder: Path) -> dict[str, str]:
        """Sign ``folder``'s files with the tenant's key (:func:`sign_folder`)."""
        return sign_folder(self.keys, tenant_id, folder)

    # ------------------------------------------------------------------ checking

    def check_folder(
        self, tenant_id: str, model: str, version: str, tags: dict[str, str], folder: Path
    ) -> Verification:
        """Check a downloaded copy of a version's files against its signature (no events)."""
        digest = tags.get(TAG_SIGNATURE_DIGEST)
        key_id = tags.get(TAG_SIGNATURE_KEY_ID)

        def found(status: Status, reason: str, files: list[str] | None = None) -> Verification:
            return Verification(model, version, status, reason, key_id, digest, files or [])

        if not digest or not key_id:
            return found("unsigned", "the version was registered unsigned")
        sig = folder / SIGNATURE_FILE
        if not sig.is_file():
            return found("failed", "its signature file is missing")
        if file_digest(sig) != digest:
            return found(
                "failed",
                "its signature file is not the one recorded on the version",
                [SIGNATURE_FILE],
            )
        public = self.keys.public_pem(tenant_id, key_id)
        if public is None:
            return found("failed", f"the signing key {key_id} is not on record")
        import model_signing

        with tempfile.TemporaryDirectory(prefix="matih-verify-") as tmp:
            pub = Path(tmp) / "key.pub"
            pub.write_text(public)
            try:
                (
                    model_signing.verifying.Config()
                    .use_elliptic_key_verifier(public_key=pub)
                    .verify(folder, sig)
                )
            except Exception as exc:  # noqa: BLE001 - any failure to verify is a refusal
                log.info("signature check of %s v%s failed: %s", model, version, exc)
                files = _changed_files(folder, sig)
                reason = (
                    "files changed since it was signed: " + ", ".join(files)
                    if files
                    else "its signature does not verify with key " + key_id
                )
                return found("failed", reason, files=files)
        return found("verified", "")

    def verify(self, tenant_id: str, model: str, version: str) -> Verification:
        """Download the version's files and check them (the report: no events)."""
        tags = self._tags_of(tenant_id, model, version)
        with tempfile.TemporaryDirectory(prefix="matih-verify-") as tmp:
            folder = self._download(tenant_id, model, version, Path(tmp) / "files")
            return self.check_folder(tenant_id, model, version, tags, folder)

    def tags_of(self, tenant_id: str, model: str, version: str) -> dict[str, str]:
        """A version's tags (its signature's digest and key among them)."""
        return self._tags_of(tenant_id, model, version)

    def refuse(self, tenant_id: str, result: Verification, where: str) -> Verification:
        """Refuse a failed check made elsewhere (one file of a download): the episode, its
        event, and the error, as for a whole version."""
        return self._settle(tenant_id, result, where)

    def promotable(self, result: Verification) -> bool:
        """Whether :meth:`require_promotable` would let a version with this result move
        up: verified, or unsigned while unsigned versions are allowed."""
        return result.ok or (result.status == "unsigned" and self.allow_unsigned)

    def require_promotable(self, tenant_id: str, model: str, version: str) -> Verification:
        """Check a version before a move into staging or production.

        Raises:
            IntegrityError: If its files do not match its signature (one event per
                episode), or it is unsigned and ``MATIH_UNSIGNED_VERSIONS=refuse``.
        """
        result = self.verify(tenant_id, model, version)
        if result.status == "unsigned":
            if self.promotable(result):
                return result
            raise IntegrityError(
                f"Version {version} of {model!r} is unsigned (registered before signing), "
                "and MATIH_UNSIGNED_VERSIONS=refuse: it cannot be promoted.",
                details=self._details(result, "promotion"),
            )
        return self._settle(tenant_id, result, "promotion")

    def require_loadable(
        self,
        tenant_id: str,
        model: str,
        version: str,
        folder: Path,
        *,
        where: Literal["serving", "batch"] = "serving",
    ) -> Verification:
        """Check a downloaded copy before it is loaded (serving: once per load; a batch
        job: once per job).

        Unsigned versions load (the promotion policy is where they are judged).

        Raises:
            IntegrityError: If its files do not match its signature (one event per episode).
        """
        tags = self._tags_of(tenant_id, model, version)
        result = self.check_folder(tenant_id, model, version, tags, folder)
        if result.status == "unsigned":
            return result
        return self._settle(tenant_id, result, where)

    @staticmethod
    def _details(result: Verification, where: str) -> dict[str, Any]:
        return {
            "model": result.model,
            "version": result.version,
            "status": result.status,
            "reason": result.reason,
            "where": where,
            "key_id": result.key_id,
            "signature_digest": result.signature_digest,
            "files": result.files,
        }

    def _settle(self, tenant_id: str, result: Verification, where: str) -> Verification:
        """Open or close the version's episode of failed checks; raise on a failure."""
        number = int(result.version)
        with self._db.uow(tenant=tenant_id) as s:
            if result.ok:
                s.execute(
                    delete(IntegrityFailureRow).where(
                        IntegrityFailureRow.model_name == result.model,
                        IntegrityFailureRow.version == number,
                    )
                )
                return result
            opened = store.insert_if_missing(
                s,
                IntegrityFailureRow,
                {
                    "tenant_id": tenant_id,
                    "model_name": result.model,
                    "version": number,
                    "reason": result.reason,
                    "at": store.now(),
                },
            )
            if opened:
                self._events.emit(
                    s,
                    tenant_id,
                    EventType.MODEL_INTEGRITY_FAILED,
                    result.model,
                    {k: v for k, v in self._details(result, where).items() if k not in ("status",)},
                )
        log.warning(
            "integrity check failed: %s v%s (%s): %s",
            result.model,
            result.version,
            where,
            result.reason,
        )
        raise IntegrityError(
            f"Version {result.version} of {result.model!r} failed verification: "
            f"{result.reason}. It is refused ({where}).",
            details=self._details(result, where),
        )

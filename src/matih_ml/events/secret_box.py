"""Encryption at rest for webhook signing secrets (Fernet: AES-128-CBC plus HMAC).

The key comes from ``MATIH_SECRET_KEY`` (``python -c "from cryptography.fernet import
Fernet; print(Fernet.generate_key().decode())"``), the same on every replica. When every
store is local SQLite and no key is set, one is made once in ``<MATIH_DATA_DIR>/secret.key``
(mode 0600), so the embedded default needs no set-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from matih_ml.config import Settings
from matih_ml.errors import UnavailableError


class SecretBox:
    """Encrypts and decrypts short secrets with the service's key."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._fernet: Fernet | None = None

    def _get(self) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._key())
        return self._fernet

    def _key(self) -> bytes:
        if self._settings.secret_key:
            return self._settings.secret_key.encode()
        if not self._settings.single_host:
            raise UnavailableError(
                "MATIH_SECRET_KEY is not set: webhook secrets cannot be stored. Set it to a "
                "Fernet key, the same on every replica (see docs/deploy.md).",
                details={"setting": "MATIH_SECRET_KEY"},
            )
        path = Path(self._settings.data_dir) / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and linked into place: a concurrent first start sees
            # either no key or a whole one, never half a file.
            tmp = path.with_name(f".secret.key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                tmp.unlink()
        return path.read_bytes().strip()

    def encrypt(self, plain: str) -> str:
        """Encrypt ``plain`` for storage."""
        return self._get().encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt a stored secret.

        Raises:
            UnavailableError: If the key is not the one it was encrypted with.
        """
        try:
            return self._get().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise UnavailableError(
                "A stored webhook secret does not decrypt with MATIH_SECRET_KEY (was the key "
                "changed?).",
                details={"setting": "MATIH_SECRET_KEY"},
            ) from exc

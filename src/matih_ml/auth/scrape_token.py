"""The scrape token that opens ``/metrics``: it names every tenant and model, so no
tenant's key opens it, and nothing opens it without the token.

``MATIH_METRICS_TOKEN`` sets it. On the embedded default without it, ``matih-ml serve``
makes one on its first start and prints it once, like the bootstrap admin key; only its
SHA-256 is kept, in the data dir. Elsewhere, without ``MATIH_METRICS_TOKEN``,
``/metrics`` stays closed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from matih_ml.config import Settings
from matih_ml.errors import UnauthenticatedError

TOKEN_FILE = "metrics-token.sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _file(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def ensure_scrape_token(settings: Settings) -> str | None:
    """Make the embedded default's scrape token if there is none yet, and return it.

    Returns:
        The new token, to be shown this once; None when ``MATIH_METRICS_TOKEN`` is set,
        the profile is not the embedded default, or a token was made before.
    """
    if settings.metrics_token or not settings.embedded:
        return None
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        # O_EXCL: of two starts at once, one makes the token; the other prints nothing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(_digest(token) + "\n")
    return token


def check_scrape_token(settings: Settings, authorization: str) -> None:
    """Let a scraper through only with the scrape token as its bearer token.

    Args:
        settings: Where the token comes from.
        authorization: The request's ``Authorization`` header ("" if none).

    Raises:
        UnauthenticatedError: Without the token, with another one, or where none is set.
    """
    scheme, _, sent = authorization.partition(" ")
    sent = sent.strip() if scheme.lower() == "bearer" else ""
    if settings.metrics_token:
        expected = _digest(settings.metrics_token)
    elif settings.embedded:
        try:
            expected = _file(settings).read_text().strip()
        except FileNotFoundError:
            expected = ""
        if not expected:
            raise UnauthenticatedError(
                "/metrics needs the scrape token: `matih-ml serve` makes one on its first "
                "start and prints it, or set MATIH_METRICS_TOKEN."
            )
    else:
        raise UnauthenticatedError(
            "/metrics is closed: set MATIH_METRICS_TOKEN and scrape with it as a bearer token."
        )
    # Digests of equal length, compared in constant time: the time taken tells nothing
    # about how much of the token was right.
    if not sent or not hmac.compare_digest(_digest(sent), expected):
        raise UnauthenticatedError("/metrics needs the scrape token as a bearer token.")

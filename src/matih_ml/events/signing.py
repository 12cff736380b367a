"""Webhook signatures, as Standard Webhooks (standardwebhooks.com) defines them.

Each delivery carries three headers:

- ``webhook-id``: the event id (the same on every retry: deduplicate by it);
- ``webhook-timestamp``: seconds since the epoch, when this attempt was signed;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, keyed with
  the base64-decoded part of the ``whsec_...`` secret.

:func:`verify` is the receiver's side; docs/events.md shows it standalone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


def new_secret() -> str:
    """A fresh signing secret (shown to the tenant's admin once)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers of one signed delivery."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def verify(
    secret: str, received: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """Whether a delivery is authentic and fresh (the receiver's check).

    Args:
        secret: The webhook's ``whsec_...`` secret.
        received: The request's headers (case-insensitive mapping, or lower-case keys).
        body: The raw request body, byte for byte.
        now: The current time (for tests).
    """
    try:
        msg_id = received["webhook-id"]
        ts = int(received["webhook-timestamp"])
        given = received["webhook-signature"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_S:
        return False
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    # Several space-separated signatures may be sent while a secret is rotated.
    return any(
        part.startswith("v1,") and hmac.compare_digest(part[3:], expected) for part in given.split()
    )

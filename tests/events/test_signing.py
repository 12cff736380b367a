"""Signatures: the snippet docs/events.md gives receivers accepts our deliveries and
refuses tampered, stale or wrongly keyed ones."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from matih_ml.events.signing import headers, new_secret, verify

DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text()


def _doc_verify():
    [code] = [b for b in re.findall(r"```python\n(.*?)```", DOC, flags=re.S) if "def verify" in b]
    scope: dict = {}
    exec(code, scope)
    return scope["verify"]


@pytest.mark.parametrize("check", [verify, _doc_verify()], ids=["library", "docs snippet"])
def test_signatures_verify_and_tampering_does_not(check) -> None:
    secret = new_secret()
    body = b'{"id":"evt_1","type":"MODEL_DEPLOYED"}'
    h = headers(secret, "evt_1", body)
    assert check(secret, h, body)
    assert not check(secret, h, body.replace(b"DEPLOYED", b"DELETED"))
    assert not check(new_secret(), h, body)
    assert not check(secret, {**h, "webhook-id": "evt_2"}, body)
    old = headers(secret, "evt_1", body, timestamp=int(time.time()) - 3600)
    assert not check(secret, old, body)
    # During a secret rotation several signatures may be sent; one match is enough.
    rotated = {**h, "webhook-signature": "v1,bm90IGl0 " + h["webhook-signature"]}
    assert check(secret, rotated, body)

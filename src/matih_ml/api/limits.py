"""A request-body size limit, enforced while the body streams in; the RateLimit fields
of a tenant's request quota on every answer."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matih_ml.api.quotas import STATE_KEY


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 to any request whose body is over ``max_bytes``.

    The declared Content-Length is checked first; a chunked body is counted as it
    arrives, so a client cannot slip past the limit by leaving the length out.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "PAYLOAD_TOO_LARGE",
                    "message": f"The request body is over the limit of {self.max_bytes} bytes.",
                    "details": {"limit": self.max_bytes},
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RateLimitHeadersMiddleware:
    """Add the request quota's ``RateLimit-Policy`` and ``RateLimit`` fields to the answer.

    The door that authenticated the request left its decision in ``scope["state"]``
    (:func:`matih_ml.api.quotas.remember`); a refusal's 429 carries its own fields.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.get(STATE_KEY)
                if decision is not None:
                    headers = list(message.get("headers") or [])
                    names = {name.lower() for name, _ in headers}
                    if b"ratelimit" not in names:
                        headers.append((b"ratelimit-policy", decision.policy_item().encode()))
                        headers.append((b"ratelimit", decision.limit_item().encode()))
                        message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_fields)

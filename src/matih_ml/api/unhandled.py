"""The last resort for an exception no handler took: answer it, and keep the connection.

Starlette's outermost middleware answers an unhandled exception with a 500 and then
raises it again, so that the server logs it; uvicorn then closes the client's
keep-alive connection, and the client's next request on it fails too. This
middleware sits just inside that one: it logs the exception with its traceback,
answers with our JSON error body (503 if a dependency is down, else a 500 that says
nothing of the cause) and returns normally, so the connection stays open.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matih_ml.api.errors import unexpected


class UnhandledErrorMiddleware:
    """Turn an exception that escaped every handler into a JSON 500 without re-raising."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last resort, by design
            status, answer = unexpected(exc)
            if started:
                # Half a response is out: nothing sensible can follow it on this
                # connection, and the server closes it when we return.
                return
            body = json.dumps(answer).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

"""One HTTP connection pool per client: the key, retries, and errors read back as ours.

Retries, with exponential backoff and full jitter (``backoff * 2**n`` seconds, capped,
times a random factor in [0, 1), or the server's ``Retry-After`` if longer):

- **A connection that could not be made** (refused, DNS, connect timeout, no free
  connection in the pool) is retried for every method: the request never left.
- **502, 503, 504, and a connection lost after the request was sent** are retried only
  for a request that is safe to repeat: ``GET``, ``HEAD``, ``PUT``, ``DELETE`` (idempotent
  by HTTP, and by our routes: ``PUT .../stage`` to the stage a version is in is a no-op),
  and the ``POST`` routes that are idempotent by design, which the sub-clients mark:
  registering a run (the same run again answers its version), predictions. The server's
  error body never says that a failed ``POST`` did nothing (a 503 means a dependency
  failed, possibly halfway), so any other ``POST`` (log-batch, uploads, approvals,
  rollback...) is not repeated: the error is raised and the caller decides.
- **A 429 with ``Retry-After``** (a tenant's request or points rate, or its uploads at
  once: docs/api.md, "Limits") is sent again once the server's wait is over, whatever
  the method: the server refused it before doing anything.
- Nothing else is retried: another 4xx is an answer, and a 429 without ``Retry-After`` (a
  tenant's limit of jobs) lasts longer than a backoff.

Errors: an answer ``{"error": {"code", "message", "details"}}`` raises the
``matih_ml.errors`` class with that code (``NOT_FOUND`` → ``NotFoundError``...), with the
server's message and details; a code we do not know maps by status, else ``MatihError``
carrying the code. A server that cannot be reached raises ``UnavailableError`` naming its
URL; an answer that is not ours (HTML, or JSON of another shape) raises
``UnavailableError`` saying the URL may not be a matih-ml server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping
from functools import lru_cache
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from matih_ml import __version__
from matih_ml.client.config import ClientConfig
from matih_ml.errors import STATUS, MatihError, UnavailableError, ValidationError

T = TypeVar("T")

USER_AGENT = f"matih-ml-client/{__version__}"
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 8.0
# A Retry-After longer than this is not waited for: the error is raised instead.
MAX_RETRY_AFTER = 60.0

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})

_BY_CODE: dict[str, type[MatihError]] = {cls.code: cls for cls in STATUS}
_BY_STATUS: dict[int, type[MatihError]] = {}
for _cls, _status in STATUS.items():
    _BY_STATUS.setdefault(_status, _cls)  # 409: ConflictError, the first listed
_BY_STATUS.update({400: ValidationError, 502: UnavailableError, 504: UnavailableError})


@lru_cache(maxsize=256)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


class Transport:
    """Sends requests to one server with one key, retrying what is safe to retry.

    Args:
        config: The server and the key.
        timeout: Seconds to wait for an answer (connecting: at most 10).
        retries: How many times a failed request may be repeated (0: never).
        backoff: The first wait between attempts, in seconds; it doubles each time.
        http_transport: An httpx transport to send through (tests; default: the network).
        sleep: How to wait between attempts (tests count them instead).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValidationError(
                "retries and backoff must be 0 or more, and timeout more than 0.",
                details={"retries": retries, "backoff": backoff, "timeout": timeout},
            )
        self.config = config
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._random = random.Random()
        self._http = httpx.Client(
            base_url=config.url,
            headers={"Authorization": f"Bearer {config.api_key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=http_transport,
            # A redirect would resend the key to wherever it points.
            follow_redirects=False,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.config.url

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        ok: Collection[int] = (),
        retry: bool = True,
    ) -> httpx.Response:
        """Send one request, retrying what is safe, and return a successful answer.

        Args:
            method: The HTTP method.
            path: The path under the base URL (``/api/v1/...``).
            params: Query parameters (a list value repeats the parameter).
            json: A JSON body.
            content: A raw body.
            data: Form fields (with ``files``: multipart).
            files: Multipart files.
            headers: Extra headers.
            idempotent: Whether repeating the request is safe (default: by method).
            ok: Statuses besides 2xx that are answers, not errors (``/readyz``'s 503).
            retry: False: one attempt, whatever happens.

        Returns:
            The answer, 2xx or in ``ok``.

        Raises:
            MatihError: The server's error, as its class; ``UnavailableError`` when the
                server cannot be reached or does not answer as matih-ml does.
        """
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        limit = self.retries if retry else 0
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=json,
                    content=content,
                    data=data,
                    files=files,
                    headers=headers,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left: repeating it is safe whatever it is.
                if attempt <= limit:
                    self._pause(self._delay(attempt) or 0.0)
                    continue
                raise self._unreachable(exc, attempt) from exc
            except httpx.TransportError as exc:
                # Sent, perhaps done: repeated only if doing it twice is harmless.
                if safe and attempt <= limit:
                    self._pause(self._delay(attempt) or 0.0)
                    continue
                raise self._lost(method, path, exc, attempt, safe) from exc
            if response.is_success or response.status_code in ok:
                return response
            if response.status_code in RETRY_STATUSES and safe and attempt <= limit:
                delay = self._delay(attempt, response.headers.get("retry-after"))
                if delay is not None:
                    self._pause(delay)
                    continue
            wait = response.headers.get("retry-after")
            if response.status_code == 429 and wait is not None and attempt <= limit:
                # Throttled before anything was done: safe to repeat whatever it is.
                delay = self._delay(attempt, wait)
                if delay is not None:
                    self._pause(delay)
                    continue
            raise self.error(method, path, response)

    def parse(self, tp: type[T] | Any, response: httpx.Response, method: str, path: str) -> T:
        """Read a successful answer as ``tp`` (a pydantic model, ``list[...]``, ...).

        Raises:
            UnavailableError: The answer is not JSON of that shape (not a matih-ml server,
                or one of a version this client does not know).
        """
        try:
            return _adapter(tp).validate_json(response.content)
        except PydanticValidationError as exc:
            raise self._foreign(method, path, response, "not the answer expected", exc) from None

    def call(self, tp: type[T] | Any, method: str, path: str, **kwargs: Any) -> T:
        """``request`` then ``parse``: the answer as ``tp``."""
        return self.parse(tp, self.request(method, path, **kwargs), method, path)

    # --------------------------------------------------------------- errors

    def error(self, method: str, path: str, response: httpx.Response) -> MatihError:
        """The error for a failed answer: ours, by its code; or one saying it is not ours."""
        try:
            body = response.json()
            detail = body["error"]
            code, message = detail["code"], detail["message"]
            details = detail.get("details") or {}
            if not (isinstance(code, str) and isinstance(message, str)):
                raise TypeError(code)
            if not isinstance(details, dict):
                details = {"details": details}
        except (ValueError, KeyError, TypeError):
            return self._foreign(method, path, response, "not a matih-ml error")
        cls = _BY_CODE.get(code) or _BY_STATUS.get(response.status_code, MatihError)
        exc = cls(message, details=details)
        if exc.code != code:
            exc.code = code  # the server's own code (METHOD_NOT_ALLOWED, INTERNAL...) kept
        return exc

    def _foreign(
        self,
        method: str,
        path: str,
        response: httpx.Response,
        what: str,
        problem: Exception | None = None,
    ) -> UnavailableError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        said = " ".join(response.text[:200].split())
        details: dict[str, Any] = {"url": self.url, "status": response.status_code}
        if problem is not None:
            details["problem"] = str(problem)[:1000]
        return UnavailableError(
            f"The server at {self.url} answered {method} {path} with HTTP "
            f"{response.status_code} ({kind}), {what}: the URL may not be a matih-ml "
            f"server, or it runs a version this client does not know. It said: {said!r}",
            details=details,
        )

    def _unreachable(self, exc: httpx.TransportError, attempts: int) -> UnavailableError:
        return UnavailableError(
            f"The matih-ml server at {self.url} cannot be reached: {exc or type(exc).__name__} "
            f"({attempts} attempt{'s' if attempts > 1 else ''}).",
            details={"url": self.url, "attempts": attempts},
        )

    def _lost(
        self, method: str, path: str, exc: httpx.TransportError, attempts: int, safe: bool
    ) -> UnavailableError:
        why = "" if safe else "; not repeated, as the server may have done it"
        return UnavailableError(
            f"The connection to the matih-ml server at {self.url} failed during {method} "
            f"{path}: {exc or type(exc).__name__} ({attempts} attempt"
            f"{'s' if attempts > 1 else ''}){why}.",
            details={"url": self.url, "attempts": attempts, "repeated": safe},
        )

    def _delay(self, attempt: int, retry_after: str | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: the server asked for more
        than MAX_RETRY_AFTER, so the error is raised instead."""
        delay = self._random.random() * min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1))
        if retry_after is not None:
            try:
                asked = float(retry_after)
            except ValueError:  # an HTTP date: rare, and the backoff is enough
                asked = 0.0
            if asked > MAX_RETRY_AFTER:
                return None
            delay = max(delay, asked)
        return delay

    def _pause(self, delay: float) -> None:
        if delay > 0:
            self._sleep(delay)

"""The tracker against a matih-ml server: MLflow's protocol, with only a URL and a key.

Given an ``http(s)://`` tracking URI and a key (``token=`` or ``MLFLOW_TRACKING_TOKEN``),
the SDK's tracker talks to the server exactly as a stock MLflow client does: the server
binds the tenant from the key, publishes the training events and writes the metric
points through its bulk writer. Nothing is opened or created locally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from matih_ml.errors import UnauthenticatedError, UnavailableError, ValidationError

TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"


@dataclass(frozen=True)
class RemoteServer:
    """A matih-ml server and the key to use with it.

    Attributes:
        url: Its base URL (``http://host:8080``).
        token: An API key (or a JWT).
    """

    url: str
    token: str

    @classmethod
    def of(cls, tracking_uri: str, token: str | None) -> RemoteServer | None:
        """The server named by ``tracking_uri``, if it is one and a key is at hand.

        Raises:
            ValidationError: If ``token`` and ``MLFLOW_TRACKING_TOKEN`` disagree.
        """
        if not tracking_uri.startswith(("http://", "https://")):
            return None
        from_env = os.environ.get(TOKEN_ENV)
        if token and from_env and token != from_env:
            raise ValidationError(
                f"token= and {TOKEN_ENV} name different keys; give one.",
                details={"field": "token"},
            )
        key = token or from_env
        if not key:
            return None
        return cls(tracking_uri.rstrip("/"), key)

    def use(self) -> None:
        """Let MLflow's client in this process send the key (it reads it per request).

        The key names its own tenant; nothing else goes into the environment.
        """
        os.environ[TOKEN_ENV] = self.token

    def tenant(self) -> str:
        """The key's tenant, as the server says (``GET /api/v1/whoami``).

        Raises:
            UnavailableError: If the server cannot be reached (naming its URL).
            UnauthenticatedError: If it refuses the key.
        """
        url = f"{self.url}/api/v1/whoami"
        try:
            answer = httpx.get(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"The matih-ml server at {self.url} cannot be reached: {exc}.",
                details={"url": self.url},
            ) from exc
        if answer.status_code == 401:
            raise UnauthenticatedError(
                f"The matih-ml server at {self.url} refused the key.", details={"url": self.url}
            )
        if answer.status_code != 200 or "tenant_id" not in answer.text:
            raise UnavailableError(
                f"{url} answered {answer.status_code}; is {self.url} a matih-ml server?",
                details={"url": self.url},
            )
        return str(answer.json()["tenant_id"])

"""The SDK's classes against a server: the client, bound to its key's tenant.

When each class works remotely is :mod:`matih_ml.where`'s rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matih_ml.errors import ValidationError
from matih_ml.where import local_allowed, no_server_error, wants_server

__all__ = [
    "ServerOrLocal",
    "TenantBoundClient",
    "connect",
    "local_allowed",
    "no_server_error",
    "wants_server",
]

if TYPE_CHECKING:
    from matih_ml.client import MatihClient


class TenantBoundClient:
    """A client and the tenant its key names; the seed methods' ``tenant_id`` must be it.

    Args:
        client: The server's client.
    """

    def __init__(self, client: MatihClient) -> None:
        self.client = client
        self._tenant: str | None = None

    def check(self, tenant_id: str) -> None:
        """Refuse a ``tenant_id`` other than the key's (asked of the server once).

        Raises:
            ValidationError: Naming both tenants and the server.
            UnavailableError: If the server cannot be reached (naming its URL).
        """
        if self._tenant is None:
            self._tenant = self.client.whoami().tenant_id
        if tenant_id != self._tenant:
            raise ValidationError(
                f"tenant_id {tenant_id!r} is not the key's tenant ({self._tenant!r}) at "
                f"{self.client.url}: a key works in its own tenant only.",
                details={"tenant_id": tenant_id, "key_tenant": self._tenant},
            )


def connect(url: str | None, api_key: str | None, profile: str | None = None) -> TenantBoundClient:
    """The server's client (no request is made yet).

    Raises:
        ConfigError: If the URL or the key is missing (naming where it looked).
    """
    from matih_ml.client import MatihClient

    return TenantBoundClient(MatihClient(url, api_key, profile=profile))


class ServerOrLocal:
    """What the SDK's classes share: calls go to a server unless the caller chose this
    process (``explicit_local``: ``settings=`` or the services passed in), or the
    environment configures this process as the server and names no server.

    Args:
        explicit_local: The caller passed in-process collaborators.
        url: The server (else ``MATIH_URL``, else the profile).
        api_key: The key (else ``MATIH_API_KEY``, else the profile).
        profile: A profile of the client's config file.
    """

    def __init__(
        self, explicit_local: bool, url: str | None, api_key: str | None, profile: str | None
    ) -> None:
        if explicit_local and (url or api_key or profile):
            raise ValidationError("Give a server (url=, api_key=) or settings=, not both.")
        self._url, self._api_key, self._profile = url, api_key, profile
        self._local = explicit_local or (
            not wants_server(url, api_key) and not profile and local_allowed()
        )
        self._remote: TenantBoundClient | None = None

    @property
    def remote(self) -> bool:
        """Whether the calls go to a server."""
        return not self._local

    def _server(self, tenant_id: str) -> TenantBoundClient:
        """The server's client, checked to be ``tenant_id``'s (connected on first use)."""
        if self._remote is None:
            from matih_ml.client.config import ConfigError

            try:
                self._remote = connect(self._url, self._api_key, self._profile)
            except ConfigError:
                raise no_server_error(type(self).__name__) from None
        self._remote.check(tenant_id)
        return self._remote

    def _in_process_only(self, what: str) -> None:
        if not self._local:
            raise ValidationError(
                f"{type(self).__name__}.{what} is in-process only; this one calls a server."
            )

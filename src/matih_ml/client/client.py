"""``MatihClient``: the REST API of one matih-ml server, as one object per domain."""

from __future__ import annotations

from types import TracebackType

import httpx

from matih_ml.client.admin import KeysClient, WebhooksClient
from matih_ml.client.batch import BatchJobsClient
from matih_ml.client.config import ClientConfig
from matih_ml.client.events import EventsClient
from matih_ml.client.jobs import JobsClient
from matih_ml.client.lifecycle import ApprovalsClient, LifecycleClient, PolicyClient
from matih_ml.client.registry import ModelsClient
from matih_ml.client.serving import ServingClient
from matih_ml.client.tracking import ExperimentsClient, RunsClient
from matih_ml.client.transport import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Transport,
)
from matih_ml.contracts.schemas import Health, WhoAmI


class MatihClient:
    """A matih-ml server, called with one API key; the tenant is the key's.

    Nothing is sent until a method is called. Use it as a context manager, or call
    ``close()``, to release its connections.

    Example::

        with MatihClient() as ml:  # MATIH_URL / MATIH_API_KEY, or the profile file
            print(ml.whoami().tenant_id)
            for model in ml.models.all(stage="production"):
                print(model.name, model.current_version)

    Args:
        url: The server's base URL (``http://host:8080``); else ``MATIH_URL``, else the
            profile's ``url``.
        api_key: The API key; else ``MATIH_API_KEY``, else the profile's ``api_key``.
        profile: The profile of the profile file to read (else ``MATIH_PROFILE``, else
            ``default``); see ``matih_ml.client.config``.
        timeout: Seconds to wait for an answer.
        retries: How many times a failed request that is safe to repeat is repeated.
        backoff: The first wait between attempts, in seconds (it doubles, with jitter).
        config: A resolved configuration (instead of ``url``, ``api_key``, ``profile``).
        http_transport: An httpx transport to send through (tests).

    Attributes:
        models: Registered models, versions and files (``RegistryContract``).
        lifecycle: Stage moves, rollback, history, evaluations, gates.
        approvals: Four-eyes approvals.
        policy: The promotion policy (the tenant's, or a model's override).
        experiments: Experiments, their runs, run comparison.
        runs: Runs: create, log, end, metric history, artifacts.
        events: The tenant's event feed.
        jobs: Training jobs.
        batch: Batch-scoring jobs (a model over a table, into parquet).
        serving: Predictions, traffic modes, monitoring.
        webhooks: Webhooks and their deliveries (admins).
        keys: API keys (admins).

    Raises:
        ConfigError: The URL or the key is found nowhere (a ``ValidationError``).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        config: ClientConfig | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config or ClientConfig.resolve(url, api_key, profile=profile)
        self._t = Transport(
            self.config,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            http_transport=http_transport,
        )
        self.models = ModelsClient(self._t)
        self.lifecycle = LifecycleClient(self._t)
        self.approvals = ApprovalsClient(self._t)
        self.policy = PolicyClient(self._t)
        self.experiments = ExperimentsClient(self._t)
        self.runs = RunsClient(self._t)
        self.events = EventsClient(self._t)
        self.jobs = JobsClient(self._t)
        self.batch = BatchJobsClient(self._t)
        self.serving = ServingClient(self._t)
        self.webhooks = WebhooksClient(self._t)
        self.keys = KeysClient(self._t)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.config.url

    def whoami(self) -> WhoAmI:
        """The credential's tenant, subject, owner and roles (``GET /api/v1/whoami``).

        Raises:
            UnauthenticatedError: The key is missing, revoked or not valid.
            UnavailableError: The server cannot be reached (the message names its URL).
        """
        return self._t.call(WhoAmI, "GET", "/api/v1/whoami")

    def health(self) -> Health:
        """Whether each of the server's dependencies answers (``GET /readyz``).

        A server that is up but not ready answers ``status == "unavailable"`` rather than
        raising; one that cannot be reached raises ``UnavailableError``.
        """
        return self._t.call(Health, "GET", "/readyz", ok=(503,), retry=False)

    def close(self) -> None:
        """Release the connections."""
        self._t.close()

    def __enter__(self) -> MatihClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MatihClient(url={self.url!r}, profile={self.config.profile!r})"

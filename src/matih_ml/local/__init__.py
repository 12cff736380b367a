"""The contracts in this process: the same doors as ``matih_ml.client``, without HTTP.

``LocalClient(services, principal)`` has the HTTP client's shape (``.models``,
``.lifecycle``, ``.approvals``, ... ``whoami()``, ``health()``), and each of its parts
implements its domain's Protocol from ``matih_ml.contracts.protocols``. The REST routes
call these same methods with the request's principal, so a rule written here (the
permission a call needs, the tenant it reaches, how an answer is shaped) holds for both
doors. The CLI's ``--local`` and the SDK's in-process mode use it with an operator's
principal (:meth:`LocalClient.operator`).
"""

from __future__ import annotations

import getpass
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

from matih_ml.auth.principal import Principal, Role
from matih_ml.contracts.schemas import Health, WhoAmI

if TYPE_CHECKING:
    from matih_ml.local.admin import LocalKeys, LocalWebhooks
    from matih_ml.local.batch import LocalBatchJobs
    from matih_ml.local.events import LocalEvents
    from matih_ml.local.jobs import LocalJobs
    from matih_ml.local.lifecycle import LocalApprovals, LocalLifecycle
    from matih_ml.local.policy import LocalPolicy
    from matih_ml.local.registry import LocalModels
    from matih_ml.local.serving import LocalServing
    from matih_ml.local.tracking import LocalExperiments, LocalRuns
    from matih_ml.services import Services

__all__ = ["LocalClient", "operator_principal"]


def operator_principal(tenant_id: str, name: str | None = None) -> Principal:
    """An operator on the server acting in one tenant, with every role.

    Four eyes compares owners, so an operator's request for approval still needs
    someone else's approval.
    """
    who = f"operator:{name or getpass.getuser()}"
    return Principal(
        tenant_id=tenant_id, subject=who, roles=frozenset({Role.ADMIN}), via="local", owner=who
    )


class LocalClient:
    """The contracts in this process, for one caller; the tenant is the caller's.

    Each part is built on first use, so a command that lists models imports nothing of
    training.

    Args:
        services: The composition root's services.
        principal: The caller: its tenant is the only one reached, its roles are checked.
    """

    def __init__(self, services: Services, principal: Principal) -> None:
        self.services = services
        self.principal = principal

    @classmethod
    def operator(cls, services: Services, tenant_id: str) -> LocalClient:
        """An operator's in-process client for ``tenant_id`` (which must exist).

        Raises:
            NotFoundError: The tenant does not exist.
        """
        services.tenants.ensure(tenant_id, create=False)
        return cls(services, operator_principal(tenant_id))

    @property
    def url(self) -> str:
        """Where calls go: this process (named like a client's URL in messages)."""
        return "(this process)"

    @cached_property
    def models(self) -> LocalModels:
        """Registered models, versions and files (``RegistryContract``)."""
        from matih_ml.local.registry import LocalModels

        return LocalModels(self.services, self.principal)

    @cached_property
    def lifecycle(self) -> LocalLifecycle:
        """Stage moves, rollback, history, evaluations, gates (``LifecycleContract``)."""
        from matih_ml.local.lifecycle import LocalLifecycle

        return LocalLifecycle(self.services, self.principal)

    @cached_property
    def approvals(self) -> LocalApprovals:
        """Four-eyes approvals (``ApprovalsContract``)."""
        from matih_ml.local.lifecycle import LocalApprovals

        return LocalApprovals(self.services, self.principal)

    @cached_property
    def policy(self) -> LocalPolicy:
        """The promotion policy (``PolicyContract``)."""
        from matih_ml.local.policy import LocalPolicy

        return LocalPolicy(self.services, self.principal)

    @cached_property
    def experiments(self) -> LocalExperiments:
        """Experiments, their runs, run comparison (``ExperimentsContract``)."""
        from matih_ml.local.tracking import LocalExperiments

        return LocalExperiments(self.services, self.principal)

    @cached_property
    def runs(self) -> LocalRuns:
        """Runs: create, log, end, metric history, artifacts (``RunsContract``)."""
        from matih_ml.local.tracking import LocalRuns

        return LocalRuns(self.services, self.principal)

    @cached_property
    def events(self) -> LocalEvents:
        """The tenant's event feed (``EventsContract``)."""
        from matih_ml.local.events import LocalEvents

        return LocalEvents(self.services, self.principal)

    @cached_property
    def jobs(self) -> LocalJobs:
        """Training jobs (``JobsContract``)."""
        from matih_ml.local.jobs import LocalJobs

        return LocalJobs(self.services, self.principal)

    @cached_property
    def batch(self) -> LocalBatchJobs:
        """Batch-scoring jobs (``BatchJobsContract``)."""
        from matih_ml.local.batch import LocalBatchJobs

        return LocalBatchJobs(self.services, self.principal)

    @cached_property
    def serving(self) -> LocalServing:
        """Predictions, traffic modes, monitoring (``ServingContract``)."""
        from matih_ml.local.serving import LocalServing

        return LocalServing(self.services, self.principal)

    @cached_property
    def webhooks(self) -> LocalWebhooks:
        """Webhooks and their deliveries (``WebhooksContract``)."""
        from matih_ml.local.admin import LocalWebhooks

        return LocalWebhooks(self.services, self.principal)

    @cached_property
    def keys(self) -> LocalKeys:
        """API keys (``KeysContract``)."""
        from matih_ml.local.admin import LocalKeys

        return LocalKeys(self.services, self.principal)

    def whoami(self) -> WhoAmI:
        """The caller's tenant, subject, owner and roles."""
        who = self.principal
        return WhoAmI(
            tenant_id=who.tenant_id,
            subject=who.subject,
            owner=who.owner,
            roles=sorted(r.value for r in who.roles),
            via=who.via,
        )

    def health(self) -> Health:
        """Whether each of the service's dependencies answers; never raises."""
        from matih_ml.local.health import readiness

        checks = readiness(self.services)
        ok = all(v == "ok" for v in checks.values())
        return Health(status="ok" if ok else "unavailable", checks=checks)

    def close(self) -> None:
        """Nothing to release: the services belong to whoever built them."""

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalClient(tenant={self.principal.tenant_id!r})"

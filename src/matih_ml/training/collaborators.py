"""What a training job uses of the services, as a Protocol of training's own.

The composition root (:mod:`matih_ml.services`) hands its ``Services`` in, which has
these attributes and more; training names only what it reads, and never imports the
composition root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from matih_ml.config import Settings
    from matih_ml.registry.lifecycle import LifecycleService
    from matih_ml.registry.service import RegistryService
    from matih_ml.runtime.loader import ModelRuntime
    from matih_ml.store.db import Database
    from matih_ml.tenancy import TenantDirectory
    from matih_ml.tracking.runs import RunService
    from matih_ml.training.executor import JobRunner
    from matih_ml.training.jobs import Job, JobService


class TrainingServices(Protocol):
    """The collaborators of the executor, the runner, the trainers and Tune's trials."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def tenants(self) -> TenantDirectory: ...

    @property
    def registry(self) -> RegistryService: ...

    @property
    def lifecycle(self) -> LifecycleService: ...

    @property
    def runs(self) -> RunService: ...

    @property
    def runtime(self) -> ModelRuntime: ...

    @property
    def jobs(self) -> JobService: ...

    @property
    def job_runners(self) -> Mapping[str, JobRunner]:
        """The executor's runner of each job kind beside training (batch inference)."""
        ...

    @property
    def job_cleanups(self) -> Mapping[str, Callable[[Job], None]]:
        """What to clean up after a job of a kind beside training whose executor died."""
        ...

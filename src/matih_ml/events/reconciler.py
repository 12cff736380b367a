"""Settles intents whose process died between recording them and confirming them.

An intent says "MLflow is about to make this change". Its MLflow object carries the
intent's id in the tag ``matih.event_intent``, so once the grace period is over the
reconciler asks a probe to look: if the change happened, the event is confirmed (with
the data read back); if it did not, the intent is dropped. Nothing is lost and nothing
is invented. The probe that reads MLflow's registry and runs is the registry's
(:mod:`matih_ml.registry.intent_probe`), handed in by the composition root.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, Protocol

from matih_ml.errors import MatihError
from matih_ml.events.outbox import EventLog
from matih_ml.store.models import EventRow
from matih_ml.tenancy import tenant_scope

log = logging.getLogger(__name__)

# What a probe found: settle it ("confirm", with the event's data and subject), "drop"
# it, or "wait" (its writer may still be at it).
Decision = tuple[Literal["confirm", "drop", "wait"], dict[str, Any] | None, str | None]


class IntentProbe(Protocol):
    """Looks at the stores for the change an intent announced."""

    def __call__(self, row: EventRow) -> Decision:
        """Say whether the change happened (called with the intent's tenant bound)."""
        ...


class Reconciler:
    """Confirms or drops old intents by asking a probe.

    Args:
        events: The outbox.
        probe: Looks at the stores for each intent's change.
        grace_s: Only intents older than this are settled (their process may be alive).
        every_s: How often :meth:`maybe_run` runs a pass.
    """

    def __init__(
        self,
        events: EventLog,
        probe: IntentProbe,
        *,
        grace_s: float = 60.0,
        every_s: float = 30.0,
    ) -> None:
        self._events = events
        self._probe = probe
        self.grace_s = grace_s
        self.every_s = every_s
        self._last = 0.0

    def maybe_run(self) -> None:
        """Run a pass if the last one is ``every_s`` old."""
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.run()

    def run(self) -> tuple[int, int]:
        """One pass; return (confirmed, dropped)."""
        confirmed = dropped = 0
        for row in self._events.intents(self.grace_s):
            try:
                with tenant_scope(row.tenant_id):
                    decision, data, subject = self._probe(row)
            except MatihError as exc:
                log.warning("cannot settle intent %s yet: %s", row.id, exc.message)
                continue
            if decision == "confirm":
                confirmed += self._events.confirm(
                    row.id, data, subject=subject, tenant_id=row.tenant_id
                )
            elif decision == "drop":
                self._events.drop(row.id, tenant_id=row.tenant_id)
                dropped += 1
        if confirmed or dropped:
            log.info("reconciled intents: %d confirmed, %d dropped", confirmed, dropped)
        return confirmed, dropped

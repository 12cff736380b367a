"""The load test's short form (``make load`` runs the long one, with its figures): the
same harness (benchmarks/load_test.py), two replicas on one PostgreSQL and one S3, for
10 s: users of three tenants with the whole mix, and a fourth, noisy tenant's users
firing metric batches as fast as its limit lets them.

Proves, with no timing: no request failed, every acknowledged point, run, version and
event is readable afterwards from either replica, no read showed another tenant's ids,
and the noisy tenant was held back by its limit and counted in /metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from production.stack import Stack

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import load_test

        yield load_test
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_short_load_loses_nothing_and_crosses_no_tenant(stack: Stack, harness, tmp_path) -> None:
    stack.upgrade()
    # 2,000 points a second a replica, 5,000 at once: the noisy tenant's eight users empty
    # that in a few batches even at a second a batch (a loaded machine), and the others'
    # batches (one a second a tenant or less, half of it on each replica) stay far below.
    limits = {
        **harness.replica_settings(2),
        "MATIH_LIMIT_POINTS_PER_S": "4000",
        "MATIH_LIMIT_POINTS_BURST": "10000",
    }
    replicas = [stack.replica(**limits), stack.replica(**limits)]
    urls = [r.url for r in replicas]
    tenants = harness.make_tenants(stack.settings(), 4)
    files = harness.model_files(tmp_path)
    plan = harness.seed(urls, tenants, files)

    # One 10 s phase: three tenants' users with the whole mix, beside a noisy tenant.
    noisy_tenant = plan[0]["id"]
    phase = harness.run_phase(
        urls,
        plan,
        files,
        tmp_path,
        name="noisy",
        seconds=10,
        users=20,
        noisy={"tenant": noisy_tenant, "users": 8},
        promote_on_start=True,
    )
    phases = [phase]
    verification = harness.verify(urls, plan, phases)
    text, correct = harness.report(phases, verification, ["-", "-"])

    assert harness.errors_of(phase) == 0, text
    assert verification["lost"] == [], text
    assert verification["crossed"] == [], text
    assert correct, text
    # The mix ran: every kind of write was made and then read back.
    checked = verification["checked"]
    assert checked["points"] > 0 and checked["versions"] > 0 and checked["events"] > 0, text
    kinds = set(phase["operations"])
    assert {"predict", "model list", "model get", "register", "promote: production"} <= kinds
    # The noisy tenant met its limit, as a 429 it waited out and as /metrics counts it.
    assert sum(phase["throttled"].values()) > 0, text
    throttled = harness.throttled_by_tenant(urls)
    assert any(f'tenant="{noisy_tenant}"' in labels for labels in throttled), throttled
    assert not any(f'tenant="{t["id"]}"' in labels for t in plan[1:] for labels in throttled), (
        throttled
    )

"""The evidence criteria: a slower staging version fails on latency only when it is
slower by more than scheduling noise."""

from __future__ import annotations

from matih_ml.serving.service import EvidenceCriteria, judge
from matih_ml.serving.traffic import TrafficSummary


def summary(production_p95: float, staging_p95: float) -> TrafficSummary:
    return TrafficSummary(
        "shadow",
        "2",
        "1",
        500,
        agreement=0.99,
        production_p95_ms=production_p95,
        staging_p95_ms=staging_p95,
    )


def test_sub_millisecond_noise_does_not_fail_the_latency_criterion() -> None:
    assert judge(summary(0.5, 2.0), EvidenceCriteria()) == []  # 4x, but 1.5 ms


def test_a_really_slower_version_fails_it() -> None:
    reasons = judge(summary(10.0, 40.0), EvidenceCriteria())
    assert reasons == ["staging p95 latency is 4.00x production's (30.0 ms slower), over 2.0x"]
    assert judge(summary(0.5, 2.0), EvidenceCriteria(latency_slack_ms=0)) != []

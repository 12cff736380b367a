"""Two `matih-ml serve` replicas on one PostgreSQL and one S3 (moto's server), as
docs/deploy.md sets them up, under mixed traffic from two tenants at once.

Proves: every acknowledged write is readable from both replicas (nothing lost),
no model ever has two production versions, and no tenant sees the other's data.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict

from production.stack import Stack, admin_keys, client, upload

TENANTS = ("acme", "globex")
MODELS = 2
THREADS_PER_TENANT = 3
ROUNDS = 3


def test_two_replicas_mixed_traffic_keep_every_invariant(stack: Stack, s3_server, sk_model) -> None:
    stack.upgrade()
    keys = admin_keys(stack, *TENANTS)
    replicas = [stack.replica(), stack.replica()]
    urls = [r.url for r in replicas]
    for tenant in TENANTS:
        with client(urls[0], keys[tenant]) as c:
            policy = {"production": {"require_approval": False}}
            assert c.put("/api/v1/policy", json=policy).status_code == 200

    acked_versions: dict[str, set[tuple[str, str]]] = defaultdict(set)
    acked_metrics: dict[str, dict[str, int]] = defaultdict(dict)
    failures: list[str] = []
    lock = threading.Lock()

    def worker(tenant: str, n: int) -> None:
        rng = random.Random(f"{tenant}-{n}")
        try:
            for i in range(ROUNDS):
                url = urls[(n + i) % 2]  # alternate replicas, as a load balancer would
                # Not a latency test: the first uploads start four upload sandboxes.
                with client(url, keys[tenant], timeout=300) as c:
                    model = f"{tenant}-m{rng.randrange(MODELS)}"
                    r = upload(c, model, sk_model, metrics={"accuracy": 0.9})
                    assert r.status_code == 201, r.text
                    version = r.json()["registered_version"]
                    with lock:
                        acked_versions[tenant].add((model, version))
                    run = c.post("/api/v1/runs", json={"experiment_name": f"{tenant}-exp"})
                    assert run.status_code == 201, run.text
                    run_id = run.json()["run_id"]
                    points = [{"key": "loss", "value": 1 / (s + 1), "step": s} for s in range(50)]
                    logged = c.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": points})
                    assert logged.status_code == 200, logged.text
                    with lock:
                        acked_metrics[tenant][run_id] = 50
                    # Promote what this thread registered, racing the others' promotions.
                    for stage in ("staging", "production"):
                        moved = c.put(
                            f"/api/v1/models/{model}/stage",
                            json={"version": version, "stage": stage},
                        )
                        # 409: another thread moved this model meanwhile; never a 5xx.
                        assert moved.status_code in (200, 409), moved.text
        except AssertionError as exc:
            with lock:
                failures.append(f"{tenant}/{n}: {exc}")

    threads = [
        threading.Thread(target=worker, args=(t, n))
        for t in TENANTS
        for n in range(THREADS_PER_TENANT)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for tenant in TENANTS:
        assert len(acked_versions[tenant]) == THREADS_PER_TENANT * ROUNDS

    for url in urls:
        for tenant in TENANTS:
            other = next(t for t in TENANTS if t != tenant)
            with client(url, keys[tenant]) as c:
                models = c.get("/api/v1/models", params={"max_results": 1000}).json()["items"]
                names = {m["name"] for m in models}
                # Promotions happened (and raced): some model serves a version.
                assert any(m["stage"] == "production" for m in models)
                assert names == {name for name, _ in acked_versions[tenant]}
                assert not any(n.startswith(other) for n in names)
                for name in names:
                    versions = c.get(f"/api/v1/models/{name}/versions").json()["items"]
                    got = {v["version"] for v in versions}
                    want = {v for n, v in acked_versions[tenant] if n == name}
                    assert want == got, (url, tenant, name)
                    production = [v for v in versions if v["stage"] == "production"]
                    assert len(production) <= 1, (url, tenant, name, production)
                for run_id, count in acked_metrics[tenant].items():
                    history = c.get(
                        f"/api/v1/runs/{run_id}/metrics/loss/history",
                        params={"max_results": 1000},
                    )
                    assert history.status_code == 200, history.text
                    assert len(history.json()["items"]) == count
                # The other tenant's runs do not exist for this key.
                for run_id in list(acked_metrics[other])[:3]:
                    assert c.get(f"/api/v1/runs/{run_id}").status_code == 404
    # Every version's files landed under its tenant's prefix on S3.
    s3_keys = {
        o["Key"]
        for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket="mlflow")
        for o in page.get("Contents", [])
    }
    for tenant in TENANTS:
        for name, version in acked_versions[tenant]:
            assert f"root/{tenant}/models/{name}/{version}/MLmodel" in s3_keys

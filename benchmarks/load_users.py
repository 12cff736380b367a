"""The simulated users of ``load_test.py``: locust, headless, as a library, in a process of
its own (gevent patches the process; the harness and pytest stay unpatched).

Run as ``python load_users.py PLAN.json``: it reads the plan (replicas, tenants and their
keys, seconds, users, the noisy tenant), runs the users for that long, and writes to the
plan's ``out`` file the per-operation figures, the failures, and every acknowledged write
(points, runs, versions, stage moves, approvals) with every cross-tenant read it saw.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import gevent

# locust patches the process with gevent on import, before any socket of ours exists.
import locust
from locust import FastHttpUser, between, task
from locust.env import Environment

PLAN = json.loads(Path(sys.argv[1]).read_text()) if __name__ == "__main__" else {}
URLS: list[str] = PLAN.get("urls", ["http://127.0.0.1"])
TENANTS: list[dict] = PLAN.get("tenants", [])
NOISY: dict | None = PLAN.get("noisy")
BATCH = 1000
FEATURES = 4
# The model registered again and again: an MLflow sklearn model saved with skops.
MODEL_FILES = {rel: base64.b64decode(b) for rel, b in PLAN.get("model_files", {}).items()}

ACKS: dict[str, list] = {"points": [], "runs": [], "versions": [], "moves": [], "approvals": []}
VIOLATIONS: list[str] = []
SENT: dict[tuple[str, str], int] = {}
THROTTLED: Counter = Counter()
FAILURES: Counter = Counter()
_next_user = itertools.count()
_next_replica = itertools.count()
# Every id each tenant has written, to catch a read that shows another tenant's.
OWN_RUNS: dict[str, set[str]] = {t["id"]: set(t["runs"]) for t in TENANTS}


def _url(path: str) -> str:
    # Round robin over the replicas, request by request, as a load balancer would.
    return URLS[next(_next_replica) % len(URLS)] + path


def _tenant_of_run(run_id: str) -> str | None:
    for tenant, runs in OWN_RUNS.items():
        if run_id in runs:
            return tenant
    return None


class TenantUser(FastHttpUser):
    """One person of one tenant: what every user's tasks share."""

    abstract = True
    host = URLS[0]
    wait_time = between(*PLAN.get("think_s", (0.5, 1.5)))
    network_timeout = 60.0
    connection_timeout = 10.0
    noisy = False

    def on_start(self) -> None:
        n = next(self.counter)
        self.tenant = self._pick_tenant(n)
        self.tid = self.tenant["id"]
        self.editor = {"Authorization": f"Bearer {self.tenant['editor']}"}
        self.approver = {"Authorization": f"Bearer {self.tenant['approver']}"}
        self.model = f"{self.tid}-u{next(_next_user)}"
        self.step = 0
        self.development: list[str] = []
        self.run_id = None
        self.run_id = self._new_run("run create")

    def _pick_tenant(self, n: int) -> dict:
        quiet = [t for t in TENANTS if not NOISY or t["id"] != NOISY["tenant"]]
        self.first_of_tenant = n < len(quiet)
        return quiet[n % len(quiet)]

    def _call(
        self,
        method: str,
        path: str,
        name: str,
        expect: tuple[int, ...] = (200,),
        headers: dict | None = None,
        **kwargs,
    ):
        for attempt in (1, 2):
            with self.client.request(
                method,
                _url(path),
                name=name,
                headers=headers or self.editor,
                catch_response=True,
                **kwargs,
            ) as r:
                if r.status_code in expect:
                    r.success()
                    return r
                if r.status_code == 429 and self.noisy:
                    # The limit at work on the noisy tenant: not an error, and waited out as
                    # a client that honours Retry-After does.
                    THROTTLED[name] += 1
                    r.success()
                    gevent.sleep(float(r.headers.get("Retry-After") or 1))
                    return None
                if attempt == 1 and r.status_code == 0 and "closed" in str(r.error).lower():
                    # The replica closed this idle keep-alive connection (uvicorn, after 5 s)
                    # as the request went out: nothing was read, so it is sent again, as
                    # HTTP clients do; counted apart, not as this operation's answer.
                    r.request_meta["name"] = "resent: keep-alive closed by the server"
                    r.success()
                    continue
                r.failure(f"{r.status_code}: {(r.text or '')[:200]} {r.error or ''}")
                return None
        return None

    def _new_run(self, name: str) -> str | None:
        r = self._call(
            "POST",
            "/api/v1/runs",
            name,
            (201,),
            json={"experiment_name": f"{self.tid}-load"},
        )
        if r is None:
            return None
        run_id = r.json()["run_id"]
        OWN_RUNS[self.tid].add(run_id)
        ACKS["runs"].append([self.tid, run_id])
        return run_id

    def _batch(self, name: str) -> None:
        if self.run_id is None:
            self.run_id = self._new_run("run create")
            if self.run_id is None:
                return
        start = self.step
        self.step += BATCH
        body = {
            "keys": ["loss"] * BATCH,
            "values": [random.random() for _ in range(BATCH)],
            "steps": list(range(start, start + BATCH)),
        }
        # Sent, then acknowledged: what a run holds afterwards lies between the two (a
        # request in flight when the phase ends may land unacknowledged).
        SENT[(self.tid, self.run_id)] = SENT.get((self.tid, self.run_id), 0) + BATCH
        r = self._call("POST", f"/api/v1/runs/{self.run_id}/metrics:batch", name, json=body)
        if r is not None:
            ACKS["points"].append([self.tid, self.run_id, "loss", start, BATCH])
        elif self.noisy:
            SENT[(self.tid, self.run_id)] -= BATCH  # refused with 429: nothing written


class QuietUser(TenantUser):
    """A tenant's user with the whole mix. The weights are per 100 tasks: mostly predicts,
    reads and metric batches; a registration (about ten requests) and a promotion
    through an approval (four) once in 100 tasks each."""

    weight = 1
    counter = itertools.count()

    def on_start(self) -> None:
        super().on_start()
        if PLAN.get("promote_on_start") and self.first_of_tenant:
            # In the short form one user a tenant registers and promotes first, so that
            # every kind of write is in it whatever the dice say.
            self.promote()

    @task(20)
    def metric_batch(self) -> None:
        self._batch("metric batch")

    @task(13)
    def run_read(self) -> None:
        run_id = random.choice(sorted(OWN_RUNS[self.tid]))
        r = self._call("GET", f"/api/v1/runs/{run_id}", "run read")
        if r is not None and r.json().get("run_id") != run_id:
            VIOLATIONS.append(f"{self.tid}: asked for run {run_id}, got {r.json().get('run_id')}")

    @task(7)
    def run_list(self) -> None:
        experiment = self.tenant["experiment_id"]
        r = self._call("GET", f"/api/v1/experiments/{experiment}/runs?max_results=50", "run list")
        if r is None:
            return
        for run in r.json()["items"]:
            owner = _tenant_of_run(run["run_id"])
            if owner not in (None, self.tid):
                VIOLATIONS.append(f"{self.tid}: listed {owner}'s run {run['run_id']}")

    def _check_model(self, model: dict) -> None:
        if model.get("tenant_id") != self.tid or not model["name"].startswith(f"{self.tid}-"):
            VIOLATIONS.append(f"{self.tid}: saw model {model.get('tenant_id')}/{model['name']}")

    @task(13)
    def model_list(self) -> None:
        r = self._call("GET", "/api/v1/models?max_results=100", "model list")
        if r is not None:
            for model in r.json()["items"]:
                self._check_model(model)

    @task(13)
    def model_get(self) -> None:
        r = self._call("GET", f"/api/v1/models/{self.tenant['served']}", "model get")
        if r is not None:
            self._check_model(r.json())

    @task(32)
    def predict(self) -> None:
        record = {f"f{i}": random.gauss(0, 1) for i in range(FEATURES)}
        r = self._call(
            "POST",
            f"/api/v1/models/{self.tenant['served']}/predict",
            "predict",
            json={"records": [record]},
        )
        if r is not None and r.json().get("model_id") != self.tenant["served"]:
            VIOLATIONS.append(f"{self.tid}: predict answered for {r.json().get('model_id')}")

    @task(1)
    def register(self) -> None:
        if PLAN.get("no_model_writes"):
            return  # a diagnostic run: what the rest of the mix costs without them
        run_id = self._new_run("register: run")
        if run_id is None:
            return
        for rel, content in MODEL_FILES.items():
            r = self._call(
                "PUT",
                f"/api/v1/runs/{run_id}/artifacts/model/{rel}",
                "register: file",
                (201,),
                data=content,
            )
            if r is None:
                return
        r = self._call(
            "POST",
            "/api/v1/models",
            "register",
            (201,),
            json={"name": self.model, "run_id": run_id, "metrics": {"accuracy": 0.9}},
        )
        if r is not None:
            version = r.json()["registered_version"]
            ACKS["versions"].append([self.tid, self.model, version])
            self.development.append(version)

    @task(1)
    def promote(self) -> None:
        if PLAN.get("no_model_writes"):
            return
        if not self.development:
            self.register()  # then promote what it registered
        if not self.development:
            return
        version = self.development.pop(0)
        stage = f"/api/v1/models/{self.model}/stage"
        if not self._move(stage, version, "staging", "promote: staging"):
            return
        r = self._call(
            "POST",
            f"/api/v1/models/{self.model}/versions/{version}/approvals",
            "promote: request approval",
            (201,),
            json={"comment": "load test"},
        )
        if r is None:
            return
        approval = r.json()["id"]
        r = self._call(
            "POST",
            f"/api/v1/approvals/{approval}/approve",
            "promote: approve",
            headers=self.approver,
            json={"reason": "second person"},
        )
        if r is None:
            return
        ACKS["approvals"].append([self.tid, self.model, version, approval])
        self._move(stage, version, "production", "promote: production")

    def _move(self, path: str, version: str, to: str, name: str) -> bool:
        r = self._call("PUT", path, name, json={"version": version, "stage": to})
        if r is None:
            return False
        ACKS["moves"].append([self.tid, self.model, version, to])
        return True


class NoisyUser(TenantUser):
    """The noisy tenant: metric batches as fast as the service lets it (no think time)."""

    noisy = True
    counter = itertools.count()
    wait_time = between(0, 0)
    fixed_count = (NOISY or {}).get("users", 0)

    def _pick_tenant(self, n: int) -> dict:
        return next(t for t in TENANTS if NOISY and t["id"] == NOISY["tenant"])

    def on_start(self) -> None:
        super().on_start()
        self.run_id = self._new_run("noisy: run create")

    @task
    def noisy_batch(self) -> None:
        """Only batches: the rest of the mix is the quiet users'."""
        self._batch("noisy: metric batch")


def _figures(env: Environment, seconds: float) -> dict:
    found = {}
    for (name, _method), entry in env.stats.entries.items():
        found[name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": entry.num_requests / seconds if seconds else 0.0,
            "p50": entry.get_response_time_percentile(0.50),
            "p95": entry.get_response_time_percentile(0.95),
            "p99": entry.get_response_time_percentile(0.99),
            "max": entry.max_response_time,
        }
    return found


@locust.events.request.add_listener
def _count_failure(name: str, exception: object = None, **_: object) -> None:
    # Every failure counts, the ramp's included (the figures leave the ramp out).
    if exception is not None:
        FAILURES[name] += 1


def main() -> None:
    """Run the plan's users for its seconds and write what they saw."""
    users = [QuietUser] + ([NoisyUser] if NOISY else [])
    # At the end each user finishes the task in hand (up to a minute), so that what was
    # sent is answered and acknowledged.
    env = Environment(user_classes=users, events=locust.events, stop_timeout=60)
    runner = env.create_local_runner()
    total = PLAN["users"]
    ramp = PLAN.get("ramp_s", 0)
    runner.start(total, spawn_rate=total / ramp if ramp else total)
    if ramp:
        # The users start over the ramp (each creates its run as it starts); the figures
        # are of the seconds after it, when every user is at its mix.
        gevent.sleep(ramp + PLAN.get("think_s", (0.5, 1.5))[1])
        env.stats.reset_all()
    started = time.monotonic()
    gevent.spawn_later(PLAN["seconds"], runner.quit)
    runner.greenlet.join()
    seconds = time.monotonic() - started
    out = {
        "seconds": seconds,
        "failures": dict(FAILURES),
        "operations": _figures(env, seconds),
        "errors": [
            {"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
            for e in env.stats.errors.values()
        ],
        # A task that raised (a bug of ours or an answer of the wrong shape) counts too.
        "exceptions": [
            {"count": e["count"], "msg": e["msg"], "traceback": e["traceback"][-800:]}
            for e in runner.exceptions.values()
        ],
        "throttled": dict(THROTTLED),
        "acks": ACKS,
        "sent": [[tenant, run, n] for (tenant, run), n in SENT.items()],
        "violations": VIOLATIONS,
    }
    Path(PLAN["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()

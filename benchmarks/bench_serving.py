"""Online scoring, matih-ml's REST predict beside ``mlflow models serve``, in one run.

Both servers run as their own processes, as a user would start them, and score the same
small sklearn model (``--model logistic``: a LogisticRegression on four float features
``f0..f3``; ``--model forest``: a 100-tree RandomForestClassifier on them), saved with a
signature and an input example:

- matih-ml: ``matih-ml serve`` on an embedded store set up beforehand (a tenant, a viewer
  key, the model registered and moved to production), ``POST
  /api/v1/models/{model}/predict`` with ``{"records": [...]}``. Registration gives the
  classifier an ONNX twin, checked on the input example, so onnxruntime serves it (the
  fast path, issue 21); the version's read must say ``serving_runtime: onnxruntime``;
- MLflow 3.17: ``mlflow models serve --env-manager local`` on the same estimator saved with
  ``mlflow.sklearn.save_model``, ``POST /invocations`` with ``{"dataframe_records": [...]}``.

One client code path drives both (``http.client``, keep-alive, one connection per thread)
and measures sequential p50/p99 latency of one-record requests, then throughput with
several client threads over a fixed duration. After each measurement both servers must
return the same predictions as each other and as the estimator in this process.

Before the servers start, ``PredictionService.predict`` of one record is timed in this
process on the same registered version (the fast path without HTTP). Two floors are
measured with the same client: ``GET /api/v1/whoami`` on matih-ml with the same key (an
authenticated answer that scores nothing), and a bare ASGI app on uvicorn (no framework).

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_serving.py``;
``--workers 2`` runs both servers with two worker processes). The client and both
servers share this machine's cores, so throughput is a ratio, not a capacity figure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import free_port

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

FEATURES = ["f0", "f1", "f2", "f3"]
MODEL = "churn"
WARMUP = 300
REQUESTS = 2_000
THREADS = 8
DURATION_S = 10.0
# Distinct records, cycled, so that no layer can answer from a cache of one body.
POOL = 256
CHECK_RECORDS = 50

# Issue 21's targets for the ONNX Runtime fast path (the first ones were 2 ms and 3x).
TARGET_P50_MS = 0.5
TARGET_P99_MS = 10.0
TARGET_THROUGHPUT_RATIO = 5.0
TARGET_IN_PROCESS_US = 50.0
IN_PROCESS_CALLS = 20_000


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without MLFLOW_*/MATIH_* (so neither server is pointed elsewhere),
    with the venv's bin first: ``mlflow models serve`` starts ``uvicorn`` by name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return {**env, **extra}


# ---------------------------------------------------------------------- servers


class Server:
    """A server in a process group of its own (both CLIs fork uvicorn workers), ready once
    ``ready_path`` answers 200."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str, log: Path
    ) -> None:
        self.name = name
        self.port = port
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait(ready_path)
        except BaseException:
            # Not yet in the caller's list of servers to stop, so stopped here.
            self.stop()
            raise

    def _wait(self, path: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready on :{self.port}\n{self.log.read_text()}")

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) used so far by the server's live processes: its
        cost per request, which the other load on a shared machine barely changes (None
        where there is no /proc)."""
        total = 0
        try:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:  # exited since the listing
                    continue
                # Fields after the command name, which may itself hold spaces or ")".
                fields = stat.rpartition(")")[2].split()
                if int(fields[2]) == self.proc.pid:  # process group = the session leader
                    total += int(fields[11]) + int(fields[12])
        except OSError:
            return None
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Terminate the whole group (uvicorn's workers too), killing it if it lingers."""
        # Only while the leader is unreaped: until then its id, the group's, is still ours.
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.close()


def train(root: Path, kind: str) -> tuple[Any, Any, float, Path]:
    """The estimator, its training frame and accuracy, and the MLflow model directory
    saved from it."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    # The output column is the class label, an int on purpose: MLflow's hint about
    # missing values in int columns does not apply to a prediction.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(500, 4)), columns=FEATURES)
    y = (x["f0"] + 0.5 * x["f1"] - 0.3 * x["f3"] > 0).astype(int)
    if kind == "forest":
        estimator: Any = RandomForestClassifier(n_estimators=100, random_state=0)
    else:
        estimator = LogisticRegression()
    estimator.fit(x, y)
    saved = root / "mlflow-model"
    import skops.io

    mlflow.sklearn.save_model(
        estimator,
        str(saved),
        signature=infer_signature(x, estimator.predict(x)),
        input_example=x.head(5),
        # Our own forest: its tree storage is trusted here (skops refuses it by default).
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(estimator)) or None,
    )
    return estimator, x, float(estimator.score(x, y)), saved


@dataclass
class Ours:
    """What the set-up left: a viewer key, the version's runtime and its twin check, and
    the in-process timings of one-record predicts (seconds)."""

    key: str
    runtime: str | None
    twin: dict[str, Any] | None
    in_process: list[float]


def set_up_ours(data: Path, estimator: Any, frame: Any, accuracy: float) -> Ours:
    """Register the estimator in production for a new tenant; time
    ``PredictionService.predict`` of one record on it."""
    from matih_ml.config import Settings
    from matih_ml.registry.policy import Policy, ProductionGate
    from matih_ml.services import build_services

    services = build_services(
        Settings(
            MATIH_DATA_DIR=str(data),
            MLFLOW_TRACKING_URI=None,
            MLFLOW_REGISTRY_URI=None,
            MLFLOW_ARTIFACT_ROOT=None,
        )
    )
    tenant = services.tenants.create_tenant("bench").tenant_id
    # No four-eyes approval: the benchmark is about serving, not about the gates.
    policy = Policy(production=ProductionGate(require_approval=False))
    services.lifecycle.policies.set(tenant, policy)
    _, version = services.registry.register_model_version(
        tenant,
        MODEL,
        estimator,
        "sklearn",
        {"accuracy": accuracy},
        {"C": 1.0},
        input_example=frame.head(5),
    )
    for stage in ("staging", "production"):
        services.lifecycle.transition_stage(tenant, MODEL, version.version, stage, actor="bench")
    key = services.api_keys.create(tenant, "viewer", "bench").secret
    serving = services.serving
    try:
        in_process = time_in_process(serving, tenant, frame)
    finally:
        serving.stop()
    # The server process opens the SQLite file next; hold no connection to it.
    services.db.dispose()
    return Ours(key, version.serving_runtime, version.onnx_twin, in_process)


def time_in_process(serving: Any, tenant: str, frame: Any) -> list[float]:
    """Seconds per ``PredictionService.predict`` of one record (production, cached, as the
    API calls it), each timed alone, over distinct records; checked against a batch."""
    records = frame.head(POOL).to_dict("records")
    payloads = [{"records": [r]} for r in records]
    for i in range(2_000):
        serving.predict(tenant, MODEL, payloads[i % POOL])
    out = []
    clock = time.perf_counter
    for i in range(IN_PROCESS_CALLS):
        t = clock()
        serving.predict(tenant, MODEL, payloads[i % POOL])
        out.append(clock() - t)
    whole = serving.predict(tenant, MODEL, {"records": records}).predictions
    one_by_one = [serving.predict(tenant, MODEL, p).predictions[0] for p in payloads]
    if whole != one_by_one:
        raise AssertionError("one-record predictions differ from the batch's")
    return out


def start_ours(root: Path, data: Path, workers: int) -> Server:
    """``matih-ml serve`` on ``data``, with its defaults otherwise (the event dispatcher
    and the monitoring thread run, as they do for a user)."""
    port = free_port()
    exe = Path(sys.executable).parent / "matih-ml"
    argv = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    env = _clean_env(MATIH_DATA_DIR=str(data))
    return Server("matih-ml serve", argv, env, port, "/readyz", root / "matih.log")


# The floor of the floor: an ASGI app with no framework on the same uvicorn, which reads
# the request and answers a fixed small JSON body (what any Python server pays for HTTP).
_BARE_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()
    body = b'{"predictions": [1]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def start_bare(root: Path) -> Server:
    """A bare ASGI app on uvicorn (no FastAPI, no middleware, no auth, no model)."""
    port = free_port()
    argv = [sys.executable, "-c", _BARE_APP, str(port)]
    return Server("bare ASGI", argv, _clean_env(), port, "/ping", root / "bare.log")


def start_mlflow(root: Path, saved: Path, workers: int) -> Server:
    """``mlflow models serve`` on the saved model, in this environment (no virtualenv)."""
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    argv = [str(exe), "models", "serve", "-m", str(saved), "-p", str(port)]
    argv += ["--env-manager", "local", "--host", "127.0.0.1", "--workers", str(workers)]
    return Server("mlflow models serve", argv, _clean_env(), port, "/ping", root / "mlflow.log")


# ---------------------------------------------------------------------- the client


@dataclass
class Endpoint:
    """How one server is asked to score a record; the client code is the same for both."""

    name: str
    port: int
    path: str
    field: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    def body(self, records: list[dict[str, float]]) -> bytes:
        """The request body that carries ``records``."""
        return json.dumps({self.field: records}).encode()

    def connect(self) -> http.client.HTTPConnection:
        """A new keep-alive connection (http.client sets TCP_NODELAY)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)


def _post(conn: http.client.HTTPConnection, ep: Endpoint, body: bytes) -> bytes:
    # A whole read each time: the keep-alive connection is reusable only after it.
    conn.request(ep.method, ep.path, body=body if ep.method == "POST" else None, headers=ep.headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{ep.name}: HTTP {resp.status}: {data[:500]!r}")
    return data


def latency(ep: Endpoint, bodies: list[bytes], server: Server) -> tuple[list[float], float]:
    """Seconds per sequential one-record request, after a warm-up, on one connection;
    and the server's CPU milliseconds per request over them (NaN without /proc)."""
    conn = ep.connect()
    try:
        for i in range(WARMUP):
            _post(conn, ep, bodies[i % len(bodies)])
        out = []
        cpu_before = server.cpu_s()
        for i in range(REQUESTS):
            t = time.perf_counter()
            _post(conn, ep, bodies[i % len(bodies)])
            out.append(time.perf_counter() - t)
        cpu_after = server.cpu_s()
        if cpu_before is None or cpu_after is None:
            return out, math.nan
        return out, (cpu_after - cpu_before) / REQUESTS * 1000
    finally:
        conn.close()


def throughput(ep: Endpoint, bodies: list[bytes], threads: int, duration_s: float) -> float:
    """Requests/s completed by ``threads`` clients, each on its own connection, for
    ``duration_s`` (started together, after each has warmed its connection)."""
    counts = [0] * threads
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)
    stop = threading.Event()

    def client(n: int) -> None:
        conn = ep.connect()
        try:
            for i in range(20):
                _post(conn, ep, bodies[(n + i) % len(bodies)])
            ready.wait()
            i = n
            while not stop.is_set():
                _post(conn, ep, bodies[i % len(bodies)])
                counts[n] += 1
                i += threads
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            stop.set()
            ready.abort()  # so that nobody waits for a client that will not come
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=120)
    started = time.perf_counter()
    stop.wait(duration_s)
    stop.set()
    for w in workers:
        w.join(timeout=60)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{ep.name}: a client failed: {errors[0]!r}")
    return sum(counts) / elapsed


def check_same(
    ours: Endpoint, theirs: Endpoint, records: list[dict[str, float]], want: list[Any]
) -> None:
    """Both servers give the estimator's prediction for each record, one per request."""
    c_ours, c_theirs = ours.connect(), theirs.connect()
    try:
        for rec, expected in zip(records, want, strict=True):
            a = json.loads(_post(c_ours, ours, ours.body([rec])))["predictions"]
            b = json.loads(_post(c_theirs, theirs, theirs.body([rec])))["predictions"]
            if not (a == b == [expected]):
                raise AssertionError(f"{rec}: matih-ml {a}, MLflow {b}, estimator {expected}")
    finally:
        c_ours.close()
        c_theirs.close()


# ---------------------------------------------------------------------- the run


def _ms(samples: list[float], q: int) -> float:
    """The ``q``th percentile of ``samples`` (seconds), in milliseconds."""
    return statistics.quantiles(samples, n=100)[q - 1] * 1000


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, both servers")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per side")
    parser.add_argument("--model", choices=("logistic", "forest"), default="logistic")
    args = parser.parse_args()
    # A plain kill of this script must still stop both servers (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    root = Path(tempfile.mkdtemp(prefix="matih-bench-"))
    servers: list[Server] = []
    try:
        estimator, frame, accuracy, saved = train(root, args.model)
        set_up = set_up_ours(root / "data", estimator, frame, accuracy)
        key = set_up.key
        servers.append(start_ours(root, root / "data", args.workers))
        servers.append(start_mlflow(root, saved, args.workers))
        ct = {"Content-Type": "application/json"}
        ours = Endpoint(
            "matih-ml",
            servers[0].port,
            f"/api/v1/models/{MODEL}/predict",
            "records",
            {**ct, "Authorization": f"Bearer {key}"},
        )
        theirs = Endpoint("MLflow", servers[1].port, "/invocations", "dataframe_records", ct)

        records = [
            {k: round(float(v), 6) for k, v in row.items()}
            for row in frame.sample(POOL, random_state=1, replace=True).to_dict("records")
        ]
        want = [int(p) for p in estimator.predict(pd.DataFrame(records, columns=FEATURES))]
        check = records[:CHECK_RECORDS], want[:CHECK_RECORDS]
        bodies = {ep.name: [ep.body([r]) for r in records] for ep in (ours, theirs)}

        check_same(ours, theirs, *check)
        load_before = os.getloadavg()[0]
        lat, cpu = {}, {}
        for ep, server in zip((ours, theirs), servers, strict=True):
            lat[ep.name], cpu[ep.name] = latency(ep, bodies[ep.name], server)
            check_same(ours, theirs, *check)
        # The floor under any answer of ours: an authenticated request that scores nothing
        # (the same key, every middleware, FastAPI's routing and a tiny JSON answer).
        floor_ep = Endpoint(
            "whoami", servers[0].port, "/api/v1/whoami", "", dict(ours.headers), "GET"
        )
        floor, floor_cpu = latency(floor_ep, [b""], servers[0])
        servers.append(start_bare(root))
        bare_ep = Endpoint("bare", servers[-1].port, "/predict", "records", ct)
        bare, bare_cpu = latency(bare_ep, bodies["matih-ml"], servers[-1])
        rps = {}
        for ep in (ours, theirs):
            rps[ep.name] = throughput(ep, bodies[ep.name], args.threads, args.duration)
            check_same(ours, theirs, *check)
        load_after = os.getloadavg()[0]
    finally:
        for s in reversed(servers):
            s.stop()
        shutil.rmtree(root, ignore_errors=True)

    a, b = lat["matih-ml"], lat["MLflow"]
    # (name, matih-ml, MLflow, lower is better, target or None, target met)
    rows: list[tuple[str, float, float, bool, str | None, bool]] = [
        (
            "p50 ms, 1 record, sequential",
            _ms(a, 50),
            _ms(b, 50),
            True,
            f"<= {TARGET_P50_MS:g} ms",
            _ms(a, 50) <= TARGET_P50_MS,
        ),
        (
            "p99 ms, 1 record, sequential",
            _ms(a, 99),
            _ms(b, 99),
            True,
            f"<= {TARGET_P99_MS:g} ms",
            _ms(a, 99) <= TARGET_P99_MS,
        ),
        (
            f"req/s, {args.threads} threads x {args.duration:g} s",
            rps["matih-ml"],
            rps["MLflow"],
            False,
            f">= {TARGET_THROUGHPUT_RATIO:g}x MLflow",
            rps["matih-ml"] >= TARGET_THROUGHPUT_RATIO * rps["MLflow"],
        ),
        (
            "server CPU ms/request, sequential",
            cpu["matih-ml"],
            cpu["MLflow"],
            True,
            None,
            True,
        ),
    ]
    inproc = set_up.in_process
    inproc_us = statistics.median(inproc) * 1e6
    rows.append(
        ("floor: GET /whoami p50 ms (auth, no model)", _ms(floor, 50), math.nan, True, None, True)
    )
    rows.append(("floor: server CPU ms/request", floor_cpu, math.nan, True, None, True))
    rows.append(
        ("bare ASGI on uvicorn p50 ms (no framework)", _ms(bare, 50), math.nan, True, None, True)
    )
    rows.append(("bare ASGI: server CPU ms/request", bare_cpu, math.nan, True, None, True))
    print(
        f"model: {args.model}; served by {set_up.runtime}"
        + (f" (ONNX twin: {set_up.twin['reason']})" if set_up.twin else "")
    )
    print(
        f"{REQUESTS:,} sequential requests after {WARMUP} warm-up; uvicorn workers: "
        f"{args.workers} each; {os.cpu_count()} cores shared by the client and both servers; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"{'measure':42} {'matih-ml':>10} {'MLflow':>10} {'ratio':>8}  target")
    for name, mine, other, lower_better, target, ok in rows:
        # Ratios read "how many times better than MLflow", whichever way better points.
        ratio = other / mine if lower_better else mine / other
        verdict = "" if target is None else f"{target}: {'met' if ok else 'MISSED'}"
        shown = f"{other:10.2f} {ratio:7.2f}x" if not math.isnan(other) else f"{'':10} {'':8}"
        print(f"{name:42} {mine:10.2f} {shown}  {verdict}")
    verdict = "met" if inproc_us <= TARGET_IN_PROCESS_US else "MISSED"
    print(
        f"in process, PredictionService.predict of one record: p50 {inproc_us:.1f} us, "
        f"mean {statistics.fmean(inproc) * 1e6:.1f} us, p99 {_ms(inproc, 99) * 1000:.1f} us "
        f"over {IN_PROCESS_CALLS:,} calls  (<= {TARGET_IN_PROCESS_US:g} us: {verdict})"
    )
    print("predictions: identical on both servers and the estimator, after every measurement")


if __name__ == "__main__":
    main()

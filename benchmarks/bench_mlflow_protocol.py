"""A stock MLflow client against matih-ml's MLflow door and a plain ``mlflow server``.

Both servers run as their own processes on SQLite, each in a temp folder of its own:

- matih-ml: ``matih-ml serve`` on a store prepared with its CLI (a tenant, an editor key,
  a policy with no approval before production); the client reaches it as MLflow's REST
  protocol (``/api/2.0/mlflow/*``, ``/api/2.0/mlflow-artifacts/*``) with the key as
  ``MLFLOW_TRACKING_TOKEN``;
- MLflow 3.17: ``mlflow server`` (workspaces off, artifacts served by the server).

The client is a separate process in a fresh folder, configured by environment variables
only (``MLFLOW_TRACKING_URI``, and the token for matih-ml), running the stock
``MlflowClient`` and ``mlflow.pyfunc``. It measures, the same way on both:

(a) ``MlflowClient().log_batch(run_id, metrics=[1,000 points])``, one HTTP request per
    call, in points/s (target: matih-ml at least 10x plain);
(b) ``search_runs`` over an experiment of 200 runs (5 params, 5 metrics, 2 tags each),
    ``max_results=100``, p50/p99 (target: no slower than plain);
(c) ``mlflow.pyfunc.load_model("models:/NAME@production")`` of a small sklearn model, and
    ``models:/NAME/Production``, p50 (target: no slower than plain). On plain MLflow the
    client sets the alias and the stage itself; on matih-ml the version is promoted
    through the lifecycle (``PUT /api/v1/models/{name}/stage``: staging, then production).

Beside the wall-clock figures, each measured stretch records the server's CPU time (its
process group, from /proc) and the client's: the steadier figures on a shared machine.
Two more rows explain the log_batch ratio: the same bodies posted with ``http.client``,
built beforehand with MLflow's own encoder (the server's cost alone), and the stock client
against a server that only answers ``{}`` (the client's cost alone, which bounds the ratio
any server can reach over plain MLflow). The measurements run in two rounds, the sides'
order reversed in the second.

After each measurement the client checks the answer: every point is stored (read back
with ``get_metric_history``), a page holds 100 runs, and the loaded model predicts what
the estimator predicts, the same on both servers.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_mlflow_protocol.py``;
``--help`` for the sizes). Prints a table with the ratios; the figures in
docs/performance.md come from it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import free_port

TENANT = "bench"
MODEL = "bench-model"
BATCH = 1_000
SEARCH_RUNS = 200
SEARCH_PAGE = 100

TARGET_LOG_BATCH_RATIO = 10.0

# The client process: stock MLflow only, configured by its environment.
CLIENT = r"""
import contextlib, http.client, json, os, sys, time, urllib.parse, warnings

warnings.filterwarnings("ignore")
import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.protos.service_pb2 import LogBatch
from mlflow.utils.proto_json_utils import message_to_json

FEATURES = ["f0", "f1", "f2", "f3"]
T0 = time.perf_counter()


def note(what):
    print(f"[client {time.perf_counter() - T0:7.1f} s] {what}", file=sys.stderr, flush=True)


def data():
    import pandas as pd
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=FEATURES)
    y = (x["f0"] + 0.5 * x["f1"] - 0.3 * x["f3"] > 0).astype(int)
    return x, y


def setup(args):
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    note("setup")
    c = MlflowClient()
    out = {}
    exp = c.create_experiment("bench-log-batch")
    out["batch_run"] = c.create_run(exp).info.run_id
    exp = c.create_experiment("bench-search")
    out["search_experiment"] = exp
    now = int(time.time() * 1000)
    t = time.perf_counter()
    for i in range(args["search_runs"]):
        tags = {"team": "growth", "round": str(i % 7)}
        run = c.create_run(exp, run_name=f"run-{i}", tags=tags).info.run_id
        c.log_batch(
            run,
            metrics=[Metric(f"metric_{k}", i * 0.1 + k, now, 0) for k in range(5)],
            params=[Param(f"param_{k}", str(i + k)) for k in range(5)],
        )
    out["runs_s"] = time.perf_counter() - t
    note("runs created")
    t = time.perf_counter()
    x, y = data()
    est = LogisticRegression().fit(x, y)
    mlflow.set_experiment("bench-model")
    with mlflow.start_run():
        mlflow.log_metric("accuracy", float(est.score(x, y)))
        info = mlflow.sklearn.log_model(
            est,
            name="model",
            registered_model_name=args["model"],
            signature=infer_signature(x, est.predict(x)),
            input_example=x.head(5),
            # Given, so that setup skips MLflow's requirement inference (seconds).
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"
            ],
        )
    out["version"] = str(info.registered_model_version)
    out["log_model_s"] = time.perf_counter() - t
    note("log_model done")
    if args["set_stage"]:  # plain MLflow: the client moves the version itself
        c.set_registered_model_alias(args["model"], "production", out["version"])
        c.transition_model_version_stage(args["model"], out["version"], "Production")
    return out


@contextlib.contextmanager
def window(name, out):
    # A measured stretch: the harness reads the server's CPU time at both ends (it
    # answers each mark once it has), and the client's own CPU time is kept.
    print(f"BEGIN {name}", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    yield
    out[f"client_cpu_{name}"] = time.process_time() - cpu
    print(f"END {name}", flush=True)
    sys.stdin.readline()


def timed(name, fn, warmup, n, out):
    for _ in range(warmup):
        fn()
    samples = []
    with window(name, out):
        for _ in range(n):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
    out[name] = samples


def measure(args):
    note("measure")
    c = MlflowClient()
    out = {}

    run, n, size = args["batch_run"], args["batches"], args["batch"]
    first = args["first_batch"]  # batches this run holds from earlier rounds
    now = int(time.time() * 1000)

    def points(b):
        b += first
        return [Metric(f"m{i % 20}", 0.5 + i, now, (b * size + i) // 20) for i in range(size)]

    batches = [points(b) for b in range(n + 1)]
    c.log_batch(run, metrics=batches[0])  # warm-up: the connection, the run's first write
    with window("log_batch", out):
        t = time.perf_counter()
        for batch in batches[1:]:
            c.log_batch(run, metrics=batch)
        out["log_batch_s"] = time.perf_counter() - t
    sent = n + 1

    # The server's own cost: the bodies the stock client sends, built beforehand (with
    # MLflow's own encoder, as the client does), posted with http.client.
    raw = args["raw_batches"]

    def body(b):
        message = LogBatch(run_id=run, metrics=[m.to_proto() for m in points(sent + b)])
        # What the client's requests.post(json=...) sends: MLflow's JSON, re-dumped.
        return json.dumps(json.loads(message_to_json(message)), allow_nan=False).encode()

    bodies = [body(b) for b in range(raw + 1)]
    url = urllib.parse.urlsplit(os.environ["MLFLOW_TRACKING_URI"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]

    def post(body):
        conn.request("POST", "/api/2.0/mlflow/runs/log-batch", body=body, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise SystemExit(f"log-batch: HTTP {resp.status}: {answer[:500]!r}")

    post(bodies[0])
    with window("raw_log_batch", out):
        t = time.perf_counter()
        for body in bodies[1:]:
            post(body)
        out["raw_log_batch_s"] = time.perf_counter() - t
    conn.close()
    sent += raw + 1
    out["sent_batches"] = sent
    stored, want = len(c.get_metric_history(run, "m0")), (first + sent) * size // 20
    if stored != want:
        raise SystemExit(f"log_batch: {stored} points of m0 stored, {want} sent")

    # The stock client's own cost: the same calls against a server that only answers {}.
    if args.get("null_uri"):
        null = MlflowClient(tracking_uri=args["null_uri"])
        null.log_batch(run, metrics=batches[0])
        t = time.perf_counter()
        for batch in batches[1:]:
            null.log_batch(run, metrics=batch)
        out["null_log_batch_s"] = time.perf_counter() - t

    note("log_batch done")
    exp, page = args["search_experiment"], args["search_page"]

    def search():
        runs = c.search_runs([exp], max_results=page)
        full = args["search_runs"] > page
        if len(runs) != min(page, args["search_runs"]) or bool(runs.token) != full:
            raise SystemExit(f"search_runs: {len(runs)} runs, token {runs.token!r}")

    timed("search", search, 3, args["searches"], out)

    note("search_runs done")
    x, _ = data()
    preds = {}
    for name, uri in (
        ("alias", f"models:/{args['model']}@production"),
        ("stage", f"models:/{args['model']}/Production"),
    ):
        def load(uri=uri):
            preds[uri] = [int(p) for p in mlflow.pyfunc.load_model(uri).predict(x)]

        timed(name, load, 2, args["loads"], out)
        note(f"{uri} done")
    if len({json.dumps(p) for p in preds.values()}) != 1:
        raise SystemExit("load_model: the alias and the stage load different models")
    out["predictions"] = next(iter(preds.values()))
    return out


if __name__ == "__main__":
    phase, args = sys.argv[1], json.loads(sys.argv[2])
    result = {"setup": setup, "measure": measure}[phase](args)
    print("RESULT " + json.dumps(result))
"""


def _env(**extra: str) -> dict[str, str]:
    """This environment without MLFLOW_*/MATIH_*, with the venv's bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MATIH_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return {**env, **extra}


class Server:
    """A server in a process group of its own, ready once ``ready_path`` answers 200."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, ready: str, log: Path
    ) -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait(ready)
        except BaseException:
            self.stop()
            raise

    def _wait(self, path: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", path)
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready on :{self.port}\n{self.log.read_text()}")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the server's live processes (its
        process group: uvicorn, and plain MLflow's job runners), from /proc."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited since the listing
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[2]) == self.proc.pid:  # process group = the session leader
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
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


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def start_ours(root: Path) -> tuple[Server, str]:
    """``matih-ml serve`` on a store prepared with the CLI; the server and an editor key."""
    data = root / "matih"
    env = _env(MATIH_DATA_DIR=str(data))
    cli = str(Path(sys.executable).parent / "matih-ml")
    _run([cli, "tenants", "create", TENANT], env)
    key = json.loads(_run([cli, "keys", "create", "-t", TENANT, "--role", "editor", "--json"], env))
    # No four-eyes approval: the benchmark is about the protocol, not about the gates.
    policy = root / "policy.json"
    policy.write_text(json.dumps({"production": {"require_approval": False}}))
    _run([cli, "policy", "set", "--local", "-t", TENANT, "-f", str(policy)], env)
    port = free_port()
    argv = [cli, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Server("matih-ml serve", argv, env, port, "/readyz", root / "matih.log"), key["key"]


def start_plain(root: Path) -> Server:
    """``mlflow server`` on SQLite, serving artifacts itself (clients upload through it)."""
    data = root / "plain"
    data.mkdir()
    port = free_port()
    argv = [str(Path(sys.executable).parent / "mlflow"), "server"]
    argv += ["--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}"]
    argv += ["--artifacts-destination", str(data / "artifacts")]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return Server("mlflow server", argv, _env(), port, "/health", root / "plain.log")


def client(root: Path, server: Server, token: str | None, phase: str, args: dict) -> dict:
    """Run one phase of the client script in a fresh folder, with only the environment
    variables a user would set (and PATH/HOME)."""
    folder = Path(tempfile.mkdtemp(prefix=f"client-{phase}-", dir=root))
    script = folder / "client.py"
    script.write_text(CLIENT)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # A failed request fails the benchmark at once, instead of minutes of backoff.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    errors = folder / "stderr.txt"
    result: dict[str, Any] = {}
    cpu: dict[str, float] = {}
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), phase, json.dumps(args)],
            env=env,
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        # The client marks each measured stretch; the server's CPU time is read at both
        # ends before the client goes on.
        for line in proc.stdout:
            mark, _, name = line.strip().partition(" ")
            if mark in ("BEGIN", "END"):
                cpu[name] = server.cpu_s() - cpu.get(name, 0.0)
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif mark == "RESULT":
                result = json.loads(name)
        proc.wait()
    if proc.returncode != 0 or not result:
        tail = "\n".join(server.log.read_text(errors="replace").splitlines()[-60:])
        raise RuntimeError(
            f"the client's {phase} failed:\n{errors.read_text()}\n"
            f"--- {server.name}'s log, last lines:\n{tail}"
        )
    return {**result, **{f"server_cpu_{k}": v for k, v in cpu.items()}}


def promote(server: Server, key: str, version: str) -> None:
    """The version through matih-ml's lifecycle: staging, then production."""
    for stage in ("staging", "production"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            conn.request(
                "PUT",
                f"/api/v1/models/{MODEL}/stage",
                body=json.dumps({"version": version, "stage": stage}),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"promotion to {stage}: HTTP {resp.status}: {body[:800]!r}")
        finally:
            conn.close()


class NullServer:
    """An HTTP server (a thread of this process) that reads each request and answers
    ``{}``: what the stock client costs by itself, with no server work behind it."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def settle(servers: list[Server], limit_s: float = 90.0) -> None:
    """Wait until no server is busy on its own: plain ``mlflow server`` starts its job
    runner and seven huey consumers, which take about 0.6 of a core for its first 45 s."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = [s.cpu_s() for s in servers]
        time.sleep(2.0)
        busy = [(s.cpu_s() - b) / 2.0 for s, b in zip(servers, before, strict=True)]
        if max(busy) < 0.1:
            return
    print(f"warning: the servers still use {busy} CPU s/s; measuring anyway", file=sys.stderr)


def _ms(samples: list[float], q: int) -> float:
    """The ``q``th percentile of ``samples`` (seconds), in milliseconds."""
    if q == 50:
        return statistics.median(samples) * 1000
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100, help="log_batch calls, matih-ml")
    parser.add_argument("--plain-batches", type=int, default=20, help="the same, plain MLflow")
    parser.add_argument("--searches", type=int, default=40, help="timed search_runs calls")
    parser.add_argument("--search-runs", type=int, default=SEARCH_RUNS, help="runs to search")
    parser.add_argument("--loads", type=int, default=16, help="timed load_model calls per URI")
    parser.add_argument("--only", choices=["matih", "plain"], help="one side only (to profile)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    root = Path(tempfile.mkdtemp(prefix="matih-bench-mlflow-protocol-"))
    servers: list[Server] = []
    null = NullServer()
    results: dict[str, dict[str, Any]] = {}
    setup_s: dict[str, tuple[float, float, float]] = {}
    ceiling = float("nan")
    try:
        # Both servers start, and both are filled, side by side: none of it is measured.
        with ThreadPoolExecutor(2) as pool:
            starting = {}
            if args.only != "plain":
                starting["matih-ml"] = pool.submit(start_ours, root)
            if args.only != "matih":
                starting["MLflow"] = pool.submit(start_plain, root)
            sides = []
            failed: BaseException | None = None
            for name, future in starting.items():
                try:
                    started = future.result()
                except BaseException as exc:  # noqa: BLE001 - raised below, once both are in
                    failed = exc
                    continue
                server, token = started if name == "matih-ml" else (started, None)
                servers.append(server)
                sides.append((name, server, token, args.batches if token else args.plain_batches))
            if failed is not None:
                raise failed

            def set_up(side: tuple[str, Server, str | None, int]) -> dict[str, Any]:
                name, server, token, _ = side
                base = {"model": MODEL, "search_runs": args.search_runs, "set_stage": not token}
                t = time.perf_counter()
                ready = client(root, server, token, "setup", base)
                setup_s[name] = (time.perf_counter() - t, ready["runs_s"], ready["log_model_s"])
                if token is not None:
                    promote(server, token, ready["version"])
                return {**base, **ready, "batch": BATCH, "search_page": SEARCH_PAGE}

            measures = dict(zip((s[0] for s in sides), pool.map(set_up, sides), strict=True))
        for m in measures.values():
            m["first_batch"] = 0
        settle(servers)
        load_before = os.getloadavg()[0]
        # Two rounds, the sides' order reversed in the second, each with half the calls:
        # the load from the rest of the machine falls on both sides alike.
        for rnd, order in enumerate((sides, sides[::-1])):
            for name, server, token, batches in order:
                m = measures[name]
                m["batches"] = batches // 2
                m["raw_batches"] = max(1, batches // 4)
                m["searches"] = args.searches // 2
                m["loads"] = args.loads // 2
                # Once: the stock client against a server doing nothing.
                m["null_uri"] = null.url if rnd == 0 and name == sides[0][0] else None
                r = client(root, server, token, "measure", m)
                if "null_log_batch_s" in r:
                    ceiling = m["batches"] * BATCH / r.pop("null_log_batch_s")
                m["first_batch"] += r["sent_batches"]
                acc = results.setdefault(name, {"n": 0, "raw_n": 0})
                acc["n"] += m["batches"]
                acc["raw_n"] += m["raw_batches"]
                for k, v in r.items():
                    if isinstance(v, float):
                        acc[k] = acc.get(k, 0.0) + v
                    elif k == "predictions":
                        if acc.setdefault(k, v) != v:
                            raise SystemExit(f"{name}: the model predicts differently")
                    elif isinstance(v, list):
                        acc.setdefault(k, []).extend(v)
        load_after = os.getloadavg()[0]
    finally:
        for s in reversed(servers):
            s.stop()
        null.stop()
        shutil.rmtree(root, ignore_errors=True)

    if len(results) == 2 and results["matih-ml"]["predictions"] != results["MLflow"]["predictions"]:
        raise SystemExit("the two servers' models predict differently")

    def rows_of(r: dict[str, Any]) -> dict[str, float]:
        points, raw = r["n"] * BATCH, r["raw_n"] * BATCH
        searches, loads = len(r["search"]), len(r["alias"]) + len(r["stage"])
        return {
            "log_batch points/s, stock client": points / r["log_batch_s"],
            "  server CPU ms per 1,000 points": r["server_cpu_log_batch"] / points * 1e6,
            "  client CPU ms per 1,000 points": r["client_cpu_log_batch"] / points * 1e6,
            "log-batch points/s, body pre-built": raw / r["raw_log_batch_s"],
            "  server CPU ms per 1,000, pre-built": r["server_cpu_raw_log_batch"] / raw * 1e6,
            "search_runs p50 ms": _ms(r["search"], 50),
            "search_runs p99 ms": _ms(r["search"], 99),
            "  server CPU ms per call": r["server_cpu_search"] / searches * 1000,
            "load_model @production p50 ms": _ms(r["alias"], 50),
            "load_model /Production p50 ms": _ms(r["stage"], 50),
            "  server CPU ms per load": (r["server_cpu_alias"] + r["server_cpu_stage"])
            / loads
            * 1000,
        }

    table = {name: rows_of(r) for name, r in results.items()}
    print(
        f"stock MLflow client in its own process; log_batch of {BATCH:,} points x "
        f"{args.batches} (matih-ml) / {args.plain_batches} (plain), and half as many with the "
        f"body pre-built; search_runs over {args.search_runs} runs, page {SEARCH_PAGE}, x "
        f"{args.searches}; load_model x {args.loads} per URI; two rounds, the order reversed "
        f"in the second; {os.cpu_count()} cores shared by the client and the servers; 1-min "
        f"load {load_before:.2f} before, {load_after:.2f} after"
    )
    for k, (whole, runs, logged) in setup_s.items():
        print(
            f"  setup on {k} (both sides at once): {whole:.1f} s; {args.search_runs} x "
            f"(create_run + log_batch) {runs:.1f} s; log_model with registration {logged:.1f} s"
        )
    ceiling_name = "log_batch points/s, server answers {}"
    if len(table) == 1:
        ((name, only),) = table.items()
        print(f"{'measure':36} {name:>10}")
        for measure_name, v in {**only, ceiling_name: ceiling}.items():
            print(f"{measure_name:36} {v:10,.1f}")
        return
    ours, theirs = table["matih-ml"], table["MLflow"]
    print(f"{'measure':36} {'matih-ml':>10} {'MLflow':>10} {'ratio':>8}  target")
    for m in ours:
        higher_better = "points/s" in m
        ratio = ours[m] / theirs[m] if higher_better else theirs[m] / ours[m]
        if m == "log_batch points/s, stock client":
            target, ok = f">= {TARGET_LOG_BATCH_RATIO:g}x", ratio >= TARGET_LOG_BATCH_RATIO
        elif m.startswith(("search_runs p50", "load_model")):
            target, ok = "no slower", ratio >= 1.0
        else:
            target, ok = "", True
        verdict = f"{target}: {'met' if ok else 'MISSED'}" if target else ""
        print(f"{m:36} {ours[m]:10,.1f} {theirs[m]:10,.1f} {ratio:7.2f}x  {verdict}")
    most = ceiling / theirs["log_batch points/s, stock client"]
    print(
        f"{ceiling_name:36} {ceiling:10,.1f} {'':10} {most:7.2f}x  the stock client alone: "
        "the most any server could gain over plain"
    )
    print("answers checked: every point stored, full pages, the same predictions on both")


if __name__ == "__main__":
    main()

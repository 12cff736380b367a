"""The API, and so the PredictionService, as a Ray Serve application.

Each replica runs the whole FastAPI app from :func:`matih_ml.api.app.create_app` and
builds its own services from its environment, as a uvicorn worker of ``matih-ml serve``
does. The driver's ``MATIH_*`` and ``MLFLOW_*`` settings travel with the deployment, so
replicas on other nodes of a cluster serve from the same stores.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import ray
from ray import serve
from ray.serve import Application

from matih_ml.api.app import create_app
from matih_ml.config import Settings
from matih_ml.errors import UnavailableError

APP_NAME = "matih-ml"

# What the settings are read from (see matih_ml.config); nothing else is forwarded, so
# that unrelated secrets of the driver's shell do not end up in the cluster's metadata.
_FORWARDED_PREFIXES = ("MATIH_", "MLFLOW_")

# A local Ray needs only a couple of logical CPUs: the controller and the HTTP proxy
# take none, and each replica takes one (Serve's default).
_LOCAL_MIN_CPUS = 2


# A function, not an app object: Ray then calls it in each replica (after the replica's
# runtime environment is in place) instead of pickling one app built in the driver.
@serve.deployment(name="api")
@serve.ingress(create_app)
class MatihApi:
    """One replica: the REST API, with services built from the replica's environment."""


def replica_env() -> dict[str, str]:
    """The settings replicas must see: the driver's ``MATIH_*`` and ``MLFLOW_*`` variables."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIXES)}
    settings = Settings()
    if settings.embedded:
        # The embedded store is files under the data dir (./.matih by default): replicas,
        # on this host by necessity, must find those files from another working directory.
        # With remote stores it is only a local cache, left relative to each node's own.
        env["MATIH_DATA_DIR"] = str(settings.data_dir.resolve())
    return env


def build(replicas: int = 1) -> Application:
    """The Ray Serve application: ``replicas`` copies of the API.

    Args:
        replicas: How many replicas serve requests.
    """
    return MatihApi.options(
        num_replicas=replicas,
        ray_actor_options={"runtime_env": {"env_vars": replica_env()}},
    ).bind()


def ray_address() -> str:
    """The address of the Ray cluster this process is connected to (its GCS)."""
    return ray.get_runtime_context().gcs_address


def run(host: str, port: int, replicas: int, blocking: bool = True) -> str:
    """Start the application on Ray and return its base URL.

    Connects to the cluster at ``RAY_ADDRESS``, or starts a local Ray when it is unset.
    With ``blocking``, serves until SIGINT or SIGTERM and then shuts down (see
    :func:`serve_until_signalled`); otherwise the caller does.

    Args:
        host: The interface Ray Serve's HTTP proxy listens on.
        port: Its port.
        replicas: How many replicas serve requests.
        blocking: Wait for a signal, then shut down, before returning.

    Raises:
        UnavailableError: If Serve or the application did not start (Ray is left again).
    """
    address = os.environ.get("RAY_ADDRESS") or None
    # A server must not phone home, and this one may have no internet at all.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local", not None: None would join a cluster started earlier with `ray start`.
        ray.init(
            address="local",
            num_cpus=max(_LOCAL_MIN_CPUS, replicas),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build(replicas), name=APP_NAME, route_prefix="/")
    except Exception as exc:
        ray.shutdown()
        # Ray's message carries the remote traceback; its last line says what went wrong
        # (a port in use, a replica that failed to start).
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UnavailableError(f"Ray Serve did not start: {last}") from exc
    url = f"http://{host}:{port}"
    if blocking:
        serve_until_signalled()
    return url


def serve_until_signalled() -> None:
    """Wait for SIGINT or SIGTERM, then take the application down and leave Ray.

    A local Ray stops with it. On a cluster (``RAY_ADDRESS``) only this application is
    deleted: Serve and the cluster may be serving others.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ours replace Ray's driver handler, which would exit without shutting Serve down.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A timed wait: the main thread must wake up for the handler to run promptly.
        while not stop.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutdown()


def shutdown() -> None:
    """Delete the application, then leave Ray (stopping it if it is the local one)."""
    # Deleting the application stops its replicas gracefully (the app's shutdown runs);
    # on a local Ray, ray.shutdown() then takes Serve's controller and proxy with it.
    # serve.shutdown() would do no more, but logs a failed-task warning on stdout.
    serve.delete(APP_NAME)
    ray.shutdown()

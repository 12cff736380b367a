"""Whether SDK code works against a server or on this process's own stores.

The SDK's classes call a matih-ml server when one is named (``MATIH_URL`` and
``MATIH_API_KEY``, arguments, or a profile). Opening the stores in process reaches every
tenant as every role, so it is an operator's explicit choice: ``settings=`` (or the
services) passed in, or the server's own environment (``MATIH_DATA_DIR``,
``MATIH_DATABASE_URL``, ``MLFLOW_TRACKING_URI``, or ``MATIH_LOCAL=1``). With neither, the
classes say what to set instead of creating ``./.matih`` in the caller's folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from matih_ml.errors import ValidationError

# Any of these in the environment says: this process is configured as the server.
LOCAL_ENV = ("MATIH_LOCAL", "MATIH_DATA_DIR", "MATIH_DATABASE_URL", "MLFLOW_TRACKING_URI")


def wants_server(
    url: str | None, api_key: str | None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether a server is named (by the arguments, ``MATIH_URL`` or ``MATIH_PROFILE``)."""
    env = os.environ if environ is None else environ
    return bool(url or api_key or env.get("MATIH_URL") or env.get("MATIH_PROFILE"))


def local_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process's environment configures it as the server itself."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in LOCAL_ENV)


def no_server_error(what: str) -> ValidationError:
    """The error of a class asked to work with neither a server nor a local choice."""
    return ValidationError(
        f"{what} needs a matih-ml server: set MATIH_URL and MATIH_API_KEY (or pass url= and "
        "api_key=, or write a profile in ~/.config/matih-ml/config.toml). Operators on the "
        "server itself may pass settings=Settings() (or set MATIH_LOCAL=1) to open its "
        "stores in this process instead.",
        details={"env": ["MATIH_URL", "MATIH_API_KEY"]},
    )

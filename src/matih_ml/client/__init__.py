"""The HTTP client of matih-ml's REST API: ``MatihClient(url, api_key)``.

One sub-client per domain (``models``, ``lifecycle``, ``approvals``, ``policy``,
``experiments``, ``runs``, ``events``, ``jobs``, ``serving``, ``webhooks``, ``keys``),
each implementing its contract from ``matih_ml.contracts.protocols`` and answering with
the API's own pydantic types (``matih_ml.contracts.schemas``). Errors are
``matih_ml.errors`` classes, read back from the server's error codes. See docs/client.md.

Importing this imports neither FastAPI nor MLflow.
"""

from matih_ml.client.client import MatihClient
from matih_ml.client.config import ClientConfig, ConfigError, config_path

__all__ = ["ClientConfig", "ConfigError", "MatihClient", "config_path"]

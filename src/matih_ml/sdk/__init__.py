"""The Python SDK: the specification's classes, on a matih-ml server by default.

``MATIH_URL`` and ``MATIH_API_KEY`` (or ``url=``/``api_key=``, or a profile) point them at
a server; ``settings=`` is the operator's in-process mode on the server itself
(:mod:`matih_ml.sdk.mode`).
"""

from matih_ml.sdk.jobs import TrainingJobs
from matih_ml.sdk.registry import ModelRegistry

__all__ = ["ModelRegistry", "TrainingJobs"]

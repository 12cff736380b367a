"""Path and query parameters, typed once, so the published schema says what is valid."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

# The vocabularies live in contracts (no FastAPI there, so the client can import them);
# they are re-exported here beside the parameters that use them.
from matih_ml.contracts.names import FrameworkName as FrameworkName
from matih_ml.contracts.names import RoleName as RoleName
from matih_ml.contracts.names import StageName as StageName
from matih_ml.validation import MODEL_NAME_PATTERN, RUN_ID_PATTERN, VERSION_PATTERN

ModelId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN, description="Model name")
]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Run id (32 hex digits)")]
Version = Annotated[str, Path(pattern=VERSION_PATTERN, description="Version number")]
ExperimentId = Annotated[str, Path(pattern=r"^[0-9]{1,18}$", description="Experiment id")]
# '/' is allowed, as in logging ("train/loss"): the route captures the key as a path.
MetricKey = Annotated[str, Path(min_length=1, max_length=250, pattern=r"^[\w\-. :/]+$")]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="API key id")]
ArtifactPath = Annotated[str, Path(min_length=1, max_length=1024)]
PageToken = Annotated[
    str | None,
    Query(max_length=4096, pattern=r"^[A-Za-z0-9+/=_-]+$", description="From the previous page"),
]
MaxResults = Annotated[int, Query(ge=1, le=1000)]

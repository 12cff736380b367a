"""The API's own addresses of files: what answers and events carry instead of paths.

A run's ``artifact_uri`` or a version's folder is, inside the service, an absolute path
under the data folder or an ``s3://`` URI. Neither is any use to a client (artifacts
travel through the service: users have no bucket or disk access), and both tell a
tenant how the server is laid out. Answers and events carry these API paths instead,
relative to the API's base URL; a client joins them to the URL it already calls.
"""

from __future__ import annotations

from urllib.parse import quote

API = "/api/v1"


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def run_artifacts(run_id: str, path: str | None = None) -> str:
    """The listing of a run's artifacts (under ``path``); ``/{path}`` after it downloads."""
    url = f"{API}/runs/{_segment(run_id)}/artifacts"
    return f"{url}?path={quote(path, safe='/')}" if path else url


def version_files(model: str, version: str) -> str:
    """The listing of a registered version's files (the registry's own copy);
    ``/{path}`` after it downloads one."""
    return f"{API}/models/{_segment(model)}/versions/{_segment(version)}/files"


def experiment_runs(experiment_id: str) -> str:
    """The listing of an experiment's runs (where its artifacts are reached from)."""
    return f"{API}/experiments/{_segment(experiment_id)}/runs"


def version_source(source: str, run_id: str | None, model: str, version: str) -> str:
    """Where a version came from, as an API address.

    A version registered from a run has the run's artifact folder as its MLflow source
    (``<artifact root>/<tenant>/<experiment>/<run>/artifacts/<path>``): that becomes the
    run's artifact listing at ``<path>``. A ``runs:/`` or ``models:/`` URI names no
    server path and is kept. Anything else (an upload's own folder, a layout this code
    does not know) is never shown: the version's files stand in for it.
    """
    if source.startswith(("runs:/", "models:/")):
        return source
    if run_id:
        marker = f"/{run_id}/artifacts"
        at = source.find(marker)
        if at >= 0:
            rest = source[at + len(marker) :].strip("/")
            return run_artifacts(run_id, rest or None)
    return version_files(model, version)

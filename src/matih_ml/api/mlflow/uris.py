"""Artifact locations as a remote MLflow client sees them, and as the stores hold them.

The stores hold physical locations (``<artifact root>/<tenant>/<experiment>/...``: a folder
on the server, or an ``s3://`` prefix). A remote client can use neither: it has no access
to the server's disk, and no bucket credentials. So the door shows every location under
the tenant's prefix as ``mlflow-artifacts:/<path below the prefix>``, which MLflow's client
sends back to this server (``/api/2.0/mlflow-artifacts/artifacts/<path>``), and maps such
URIs back when a client sends one. Paths are relative to the tenant's prefix, so no path
can name another tenant's files.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from matih_ml.errors import ValidationError

SCHEME = "mlflow-artifacts:"


@dataclass(frozen=True)
class ArtifactUris:
    """The translation for one tenant.

    Attributes:
        root: The tenant's physical prefix, without a trailing slash.
    """

    root: str

    def _forms(self) -> list[bytes]:
        forms = [self.root]
        if self.root.startswith("/"):
            forms.append(f"file://{self.root}")
        return [f.encode() for f in forms]

    def to_client(self, body: bytes) -> bytes:
        """Rewrite every JSON string in ``body`` that starts with the tenant's prefix."""
        for form in self._forms():
            if form not in body:
                continue
            body = body.replace(b'"' + form + b"/", b'"' + SCHEME.encode() + b"/")
            body = body.replace(b'"' + form + b'"', b'"' + SCHEME.encode() + b'/"')
        return body

    def relative(self, path: str | None) -> str:
        """Check a path below the tenant's prefix (no ``..``, no absolute path)."""
        path = (path or "").strip("/")
        if not path:
            return ""
        normal = posixpath.normpath(path)
        if (
            normal.startswith("..")
            or "\\" in path
            or "\x00" in path
            or any(part in ("..", ".") for part in path.split("/"))
        ):
            raise ValidationError(
                f"Artifact path {path[:200]!r} is not a plain relative path.",
                details={"field": "path"},
            )
        return normal

    def to_store(self, uri: str) -> str:
        """The physical location of an ``mlflow-artifacts:`` URI (others are returned as is).

        Raises:
            ValidationError: For a path that climbs out of the tenant's prefix.
        """
        if not uri.startswith(SCHEME):
            return uri
        rest = uri[len(SCHEME) :]
        if rest.startswith("//"):  # mlflow-artifacts://host:port/path
            rest = "/" + rest[2:].partition("/")[2]
        rel = self.relative(rest)
        return f"{self.root}/{rel}" if rel else self.root

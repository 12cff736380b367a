"""File downloads: one way to name the file, whatever characters its name has."""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi.responses import Response

# What may not stand in a quoted-string fallback: quotes and backslashes (they would end
# or escape it), control characters (header injection), and anything not ASCII
# (headers are Latin-1 at best, and clients disagree on how to read it).
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def content_disposition(filename: str) -> str:
    """The ``Content-Disposition`` value for downloading ``filename`` (RFC 6266).

    An ASCII ``filename`` with the unsafe characters replaced by ``_``, for old
    clients, and the exact name as ``filename*=UTF-8''…`` (RFC 5987), which clients
    prefer when they read it.
    """
    fallback = _UNSAFE.sub("_", filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def attachment(
    data: bytes, filename: str, media_type: str = "application/octet-stream"
) -> Response:
    """A response that downloads ``data`` as a file called ``filename``."""
    return Response(
        content=data,
        media_type=media_type,
        headers={"Content-Disposition": content_disposition(filename)},
    )

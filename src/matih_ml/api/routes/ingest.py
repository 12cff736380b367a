"""Bulk metric ingestion: thousands of points per request, as rows or as columns."""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from matih_ml.api.body import JsonBodyRoute, parse_json
from matih_ml.api.deps import ServicesDep, Writer
from matih_ml.api.params import RunId
from matih_ml.api.quotas import take_points
from matih_ml.api.routes._common import ERRORS
from matih_ml.contracts.schemas import LogBatchResult, MetricColumns, MetricRows
from matih_ml.errors import PayloadTooLargeError, ValidationError
from matih_ml.local import LocalClient
from matih_ml.tracking.runs import MAX_INGEST

router = APIRouter(
    prefix="/api/v1/runs", tags=["runs"], responses=ERRORS, route_class=JsonBodyRoute
)

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "description": "Rows (`metrics`) or columns (`keys`, `values`, `steps`, "
        "`timestamps`); `Content-Encoding: gzip` is accepted.",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [MetricColumns.model_json_schema(), MetricRows.model_json_schema()]
                }
            }
        },
    }
}


def _decode(raw: bytes, encoding: str, limit: int) -> Any:
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ValidationError(f"The body is not valid gzip: {exc}.") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(
                f"The body is over {limit} bytes once decompressed.", details={"limit": limit}
            )
    elif encoding not in ("", "identity"):
        raise ValidationError(f"Content-Encoding {encoding[:40]!r} is not supported; use gzip.")
    return parse_json(raw)


def _columns(body: Any) -> tuple[list, list, list | None, list | None]:
    if not isinstance(body, dict):
        raise ValidationError("The body must be a JSON object.")
    if "metrics" in body:
        if set(body) != {"metrics"} or not isinstance(body["metrics"], list):
            raise ValidationError('Rows: {"metrics": [{"key", "value", ...}]} alone.')
        rows = body["metrics"]
        if len(rows) > MAX_INGEST:
            raise ValidationError(f"At most {MAX_INGEST} points per request.")
        if not all(isinstance(r, dict) and {"key", "value"} <= set(r) for r in rows):
            raise ValidationError("Each row needs a key and a value.", details={"field": "metrics"})
        if any(set(r) - {"key", "value", "step", "timestamp"} for r in rows):
            raise ValidationError("Rows take key, value, step and timestamp only.")
        now_default = [r.get("timestamp") for r in rows]
        return (
            [r["key"] for r in rows],
            [r["value"] for r in rows],
            [r.get("step", 0) for r in rows],
            None if all(t is None for t in now_default) else now_default,
        )
    allowed = {"keys", "values", "steps", "timestamps"}
    if not {"keys", "values"} <= set(body) or set(body) - allowed:
        raise ValidationError("Columns: keys and values, optionally steps and timestamps.")
    return body["keys"], body["values"], body.get("steps"), body.get("timestamps")


@router.post("/{run_id}/metrics:batch", response_model=LogBatchResult, openapi_extra=_BODY_SCHEMA)
async def ingest_metrics(
    run_id: RunId, request: Request, services: ServicesDep, who: Writer
) -> LogBatchResult:
    """Write up to 200,000 metric points in one request; a bad point writes nothing."""
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    limit = services.settings.max_upload_bytes

    def ingest() -> LogBatchResult:
        # Parsing and checking 200,000 points takes tens of milliseconds: off the loop.
        keys, values, steps, timestamps = _columns(_decode(raw, encoding, limit))
        # The tenant's points rate, counted before anything is written (429 past it).
        take_points(request.app, who.tenant_id, len(keys) if isinstance(keys, list) else 0)
        # The parsed JSON lists go to the door as they are (it copies only what is not a
        # list already), so the door's permission check is all this path adds.
        return LocalClient(services, who).runs.log_metrics(
            run_id, keys, values, steps=steps, timestamps=timestamps
        )

    return await run_in_threadpool(ingest)

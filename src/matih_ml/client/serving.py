"""``client.serving``: predictions, traffic modes and their evidence, monitoring."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from matih_ml.client._base import API, SubClient, body, implements, query, seg
from matih_ml.contracts.names import EvaluationKindName, TrafficModeName
from matih_ml.contracts.protocols import ServingContract
from matih_ml.contracts.schemas import (
    EvidenceCreate,
    EvidenceRead,
    MonitoringRead,
    PredictionRead,
    ServingConfigRead,
    ServingConfigWrite,
    TrafficSummaryRead,
)
from matih_ml.errors import ValidationError

_MODELS = f"{API}/models"


@implements(ServingContract)
class ServingClient(SubClient):
    """Predictions, traffic modes (shadow, A/B), their evidence, and monitoring."""

    def predict(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        return self._score("predict", model_id, records, inputs, stage, alias, version)

    def predict_batch(
        self,
        model_id: str,
        *,
        records: Sequence[Mapping[str, Any]] | None = None,
        inputs: Sequence[Any] | None = None,
        stage: str | None = None,
        alias: str | None = None,
        version: str | int | None = None,
    ) -> PredictionRead:
        return self._score("predict:batch", model_id, records, inputs, stage, alias, version)

    def _score(
        self,
        verb: str,
        model_id: str,
        records: Sequence[Mapping[str, Any]] | None,
        inputs: Sequence[Any] | None,
        stage: str | None,
        alias: str | None,
        version: str | int | None,
    ) -> PredictionRead:
        if records is not None and inputs is None:
            field, rows = "records", records
        elif inputs is not None and records is None:
            field, rows = "inputs", inputs
        else:
            raise ValidationError(
                "Give records (rows of named features) or inputs (tensor rows), one of them.",
                details={"field": "records"},
            )
        raw = json.dumps({field: _plain(rows)}, default=_plain_scalar).encode()
        params = query(stage=stage, alias=alias, version=None if version is None else str(version))
        # Scoring changes nothing the caller relies on: repeated after a 503 (a model
        # loading, a sandbox restarting) or a lost answer.
        return self._t.call(
            PredictionRead,
            "POST",
            f"{_MODELS}/{seg(model_id)}/{verb}",
            content=raw,
            headers={"Content-Type": "application/json"},
            params=params,
            idempotent=True,
        )

    def get_config(self, model_id: str) -> ServingConfigRead:
        return self._t.call(ServingConfigRead, "GET", f"{_MODELS}/{seg(model_id)}/serving")

    def set_config(
        self, model_id: str, mode: TrafficModeName, *, ab_share: float = 0.0
    ) -> ServingConfigRead:
        sent = body(ServingConfigWrite, mode=mode, ab_share=ab_share)
        return self._t.call(
            ServingConfigRead, "PUT", f"{_MODELS}/{seg(model_id)}/serving", json=sent
        )

    def summary(self, model_id: str, *, mode: EvaluationKindName = "shadow") -> TrafficSummaryRead:
        return self._t.call(
            TrafficSummaryRead,
            "GET",
            f"{_MODELS}/{seg(model_id)}/serving/summary",
            params={"mode": mode},
        )

    def record_evidence(self, model_id: str, evidence: EvidenceCreate) -> EvidenceRead:
        return self._t.call(
            EvidenceRead,
            "POST",
            f"{_MODELS}/{seg(model_id)}/serving/evidence",
            json=evidence.model_dump(mode="json"),
        )

    def monitoring(self, model_id: str, *, version: str | int | None = None) -> MonitoringRead:
        params = query(version=None if version is None else str(version))
        return self._t.call(
            MonitoringRead, "GET", f"{_MODELS}/{seg(model_id)}/monitoring", params=params
        )


def _plain(rows: Any) -> Any:
    """Rows as JSON-able lists: a numpy array or a pandas frame's records are welcome."""
    tolist = getattr(rows, "tolist", None)
    return tolist() if callable(tolist) else list(rows)


def _plain_scalar(value: Any) -> Any:
    # json.dumps calls this for what it cannot write: numpy scalars and arrays.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

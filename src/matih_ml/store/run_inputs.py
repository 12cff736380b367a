"""Our index of the datasets runs read (``matih_run_inputs``, migration 0010)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from matih_ml.store.models import Base, TenantOwned


class RunInputRow(TenantOwned, Base):
    """A dataset a run read, as recorded with MLflow's dataset inputs on the run: the
    index the lineage query reads by digest or by URI (MLflow's own ``datasets`` table is
    per experiment and has no index on either)."""

    __tablename__ = "matih_run_inputs"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), primary_key=True)
    uri: Mapped[str] = mapped_column(String(1000), nullable=False)
    source_type: Mapped[str] = mapped_column(String(36), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_matih_run_inputs_digest", "tenant_id", "digest"),
        Index("ix_matih_run_inputs_uri", "tenant_id", "uri"),
    )

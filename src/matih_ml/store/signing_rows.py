"""Rows of model signing (docs/provenance.md): each tenant's signing keys, and the
versions whose files failed verification. Beside ``models`` only to keep its hunks
apart; on the same ``Base``, migrated by ``0009_signing``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from matih_ml.store.models import Base, TenantOwned


class SigningKeyRow(TenantOwned, Base):
    """A tenant's model-signing key: its public half always, its private half encrypted
    (the service's own keys) or not at all (an operator's key, kept outside).

    Retired keys stay: a signature made before a rotation still names its key.
    """

    __tablename__ = "matih_signing_keys"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    public_pem: Mapped[str] = mapped_column(Text, nullable=False)
    private_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # service | operator
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IntegrityFailureRow(TenantOwned, Base):
    """A version whose files failed verification: ``MODEL_INTEGRITY_FAILED`` is published
    once per episode (the row's insert), and a later successful check ends it."""

    __tablename__ = "matih_integrity_failures"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

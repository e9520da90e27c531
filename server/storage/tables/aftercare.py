"""Discharge and aftercare plans: one sealed row per version, never edited."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _id, metadata

aftercare_plans = sa.Table(
    "aftercare_plans",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    # The whole plan as JSON (care/aftercare.py), the safety plan copy included, sealed.
    sa.Column("plan_enc", sa.Text(), nullable=False),
    sa.Column("recorded_by", sa.String(36), nullable=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("patient_id", "version"),
)

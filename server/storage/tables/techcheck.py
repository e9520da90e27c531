"""The patients' technology checks: per step pass/problem and the connection's numbers.

No PHI: nothing a patient wrote or named, only states, numbers and a browser family.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _id, metadata

tech_checks = sa.Table(
    "tech_checks",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("checked_at", UTCDateTime(), nullable=False),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("steps", sa.JSON(), nullable=False),  # {"camera": "pass", ...}
    sa.Column("problems", sa.JSON(), nullable=False),  # ["camera", ...], in step order
    sa.Column("rtt_ms", sa.Integer(), nullable=True),
    sa.Column("loss_pct", sa.Float(), nullable=True),
    sa.Column("kbps", sa.Integer(), nullable=True),
    sa.Column("browser", sa.String(16), nullable=False),
    sa.Index("ix_tech_checks_patient_id_checked_at", "patient_id", "checked_at"),
)

"""Psychoeducation handouts: per program, versioned, attached to template phases or sessions.

Handouts are program material, not PHI: they are stored plain (the bytes as uploaded).
"""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _created, _id, metadata

HANDOUT_FORMATS = ("markdown", "pdf")

handouts = sa.Table(
    "handouts",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(120), nullable=False),
    _created(),
    sa.Column("created_by", sa.String(36), nullable=True),
    sa.Index("ix_handouts_program", "program_id"),
)

# Versions are never changed: a new upload of a handout is its next version.
handout_versions = sa.Table(
    "handout_versions",
    metadata,
    _id(),
    sa.Column("handout_id", sa.ForeignKey("handouts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("format", sa.String(10), nullable=False),
    sa.Column("content", sa.LargeBinary(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("pages", sa.Integer(), nullable=False),
    _created(),
    sa.Column("created_by", sa.String(36), nullable=True),
    sa.UniqueConstraint("handout_id", "version"),
    sa.CheckConstraint(f"format IN {HANDOUT_FORMATS}", name="format"),
)

# A handout (a pinned version, or the latest when `version` is NULL) offered during a
# phase (by its title) of every session of a template in the program, or of one session
# (`phase` NULL: the whole session).
handout_attachments = sa.Table(
    "handout_attachments",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("handout_id", sa.ForeignKey("handouts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=True),
    sa.Column("template", sa.String(63), nullable=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=True),
    sa.Column("phase", sa.String(80), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(36), nullable=True),
    sa.CheckConstraint(
        "(template IS NOT NULL AND session_id IS NULL AND phase IS NOT NULL) OR "
        "(template IS NULL AND session_id IS NOT NULL)",
        name="one_target",
    ),
    sa.Index("ix_handout_attachments_program_template", "program_id", "template"),
    sa.Index("ix_handout_attachments_session", "session_id"),
)

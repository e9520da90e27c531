"""Technology check results in storage: one row per run, the latest shown to staff."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.techcheck import TechCheckResult, staff_summary
from server.catalog.store import new_id
from server.storage.tables import tech_checks


@dataclass(frozen=True, slots=True)
class Latest:
    """A patient's most recent check, as staff see it."""

    checked_at: dt.datetime
    passed: bool
    problems: tuple[str, ...]
    steps: dict[str, str]
    rtt_ms: int | None
    loss_pct: float | None
    kbps: int | None
    browser: str

    @property
    def summary(self) -> str:
        """ "Tech check passed" or "Tech check: problems (camera, connection)"."""
        return staff_summary(self.passed, self.problems)

    def staff_info(self) -> dict[str, Any]:
        """The compact form the room's staff view shows beside a waiting patient."""
        return {
            "passed": self.passed,
            "problems": list(self.problems),
            "summary": self.summary,
            "at": self.checked_at.isoformat(),
        }


async def save(
    conn: AsyncConnection, patient_id: str, result: TechCheckResult, now: dt.datetime
) -> str:
    """Keep one run of the check; returns its id."""
    check_id = new_id()
    await conn.execute(
        tech_checks.insert().values(
            id=check_id,
            patient_id=patient_id,
            checked_at=now,
            passed=result.passed,
            steps=dict(result.steps),
            problems=list(result.problems),
            rtt_ms=result.measures.rtt_ms,
            loss_pct=result.measures.loss_pct,
            kbps=result.measures.kbps,
            browser=result.browser,
        )
    )
    return check_id


async def runs_since(conn: AsyncConnection, patient_id: str, since: dt.datetime) -> int:
    """How many checks this patient has kept since `since` (the rate limit counts these)."""
    count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(tech_checks)
        .where(tech_checks.c.patient_id == patient_id, tech_checks.c.checked_at > since)
    )
    return int(count or 0)


def _latest(row: Any) -> Latest:
    return Latest(
        checked_at=row.checked_at,
        passed=bool(row.passed),
        problems=tuple(row.problems or ()),
        steps=dict(row.steps or {}),
        rtt_ms=row.rtt_ms,
        loss_pct=row.loss_pct,
        kbps=row.kbps,
        browser=row.browser,
    )


async def latest_for(conn: AsyncConnection, patient_ids: list[str]) -> dict[str, Latest]:
    """Each listed patient's most recent check (patients without one are left out)."""
    if not patient_ids:
        return {}
    newest = (
        sa.select(
            tech_checks.c.patient_id, sa.func.max(tech_checks.c.checked_at).label("checked_at")
        )
        .where(tech_checks.c.patient_id.in_(patient_ids))
        .group_by(tech_checks.c.patient_id)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(tech_checks)
        .join(
            newest,
            sa.and_(
                newest.c.patient_id == tech_checks.c.patient_id,
                newest.c.checked_at == tech_checks.c.checked_at,
            ),
        )
        .order_by(tech_checks.c.id)
    )
    return {row.patient_id: _latest(row) for row in rows}

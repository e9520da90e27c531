"""The demo's join links open the group's next session on every day of the week."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.demo import seed_demo
from server.phi import ensure_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import sessions

# The demo group meets Monday, Tuesday, Wednesday and Friday at 18:00 Pacific, and patient
# 1 has a one-on-one at 10:00 the next morning. From Friday night to Sunday that
# appointment comes before the next group session.
FRIDAY_NIGHT = dt.datetime(2026, 12, 5, 6, 17, tzinfo=dt.UTC)  # Friday 22:17 Pacific
SUNDAY_EVENING = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)  # Sunday 19:00 Pacific
TUESDAY_MORNING = dt.datetime(2026, 12, 8, 16, 0, tzinfo=dt.UTC)  # Tuesday 08:00 Pacific


@pytest.mark.parametrize("now", [FRIDAY_NIGHT, SUNDAY_EVENING, TUESDAY_MORNING])
async def test_every_demo_link_opens_the_groups_next_session(
    sqlite_url: str, tmp_path: Path, now: dt.datetime
) -> None:
    keyring = ensure_keyring(tmp_path / "secret.key")[0]
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine, keyring=keyring)
        demo = await seed_demo(engine, keyring, "https://example.test", now, 14)
        group = demo["groups"][0]
        async with engine.connect() as conn:
            next_group_session = (
                await conn.execute(
                    sa.select(sessions.c.id)
                    .where(sessions.c.group_id == group["id"], sessions.c.ends_at > now)
                    .order_by(sessions.c.starts_at)
                    .limit(1)
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert next_group_session is not None
    assert demo["appointments"][0]["session_id"] != next_group_session
    assert [p["join_session_id"] for p in group["patients"]] == [next_group_session] * len(
        group["patients"]
    )

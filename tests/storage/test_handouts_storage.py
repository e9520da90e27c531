"""Handouts in storage on SQLite and PostgreSQL: versions, bytes, attachments, shelves."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.demo import DEMO_HANDOUT_TITLE, seed_demo
from server.handouts import store
from server.phi import new_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import handout_attachments

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
PDF = b"%PDF-1.4\n\x00\xff binary \x80\n%%EOF\n"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_sessions_shelf_follows_new_versions_unless_pinned(engine: AsyncEngine) -> None:
    demo = await seed_demo(engine, new_keyring(), "https://example.test", NOW, 14)
    program_id = demo["program"]["id"]
    session_id = demo["groups"][0]["patients"][0]["join_session_id"]
    clinician = next(s["id"] for s in demo["staff"] if s["role"] == "clinician")
    async with engine.begin() as conn:
        [demo_handout] = await store.library(conn, program_id)
        assert demo_handout["title"] == DEMO_HANDOUT_TITLE and demo_handout["pages"] == 4
        [shelved] = await store.shelf_for_session(conn, session_id)
        assert (shelved.version, shelved.phase) == (1, "Skills (CBT/DBT)")
        assert (
            await store.add_version(
                conn, demo_handout["id"], "markdown", b"# New\n", clinician, NOW
            )
            == 2
        )
        pdf_id = await store.create_handout(conn, program_id, "Sleep", "pdf", PDF, clinician, NOW)
        await store.attach(
            conn,
            program_id=program_id,
            handout_id=pdf_id,
            version=1,
            template=None,
            session_id=session_id,
            phase=None,
            by=clinician,
            now=NOW,
        )
        pinned = await store.attach(
            conn,
            program_id=program_id,
            handout_id=demo_handout["id"],
            version=1,
            template=None,
            session_id=session_id,
            phase="Break",
            by=clinician,
            now=NOW,
        )
    async with engine.connect() as conn:
        shelf = {
            (s.title, s.version, s.phase) for s in await store.shelf_for_session(conn, session_id)
        }
        assert shelf == {
            (DEMO_HANDOUT_TITLE, 2, "Skills (CBT/DBT)"),  # "latest" follows the new upload
            (DEMO_HANDOUT_TITLE, 1, "Break"),  # pinned to version 1
            ("Sleep", 1, None),
        }
        stored = await store.version_content(conn, pdf_id, 1)
        assert bytes(stored.content) == PDF and stored.size == len(PDF)
        assert [v["version"] for v in await store.versions(conn, demo_handout["id"])] == [2, 1]
    async with engine.begin() as conn:
        assert await store.detach(conn, demo_handout["id"], pinned)
        assert not await store.detach(conn, demo_handout["id"], pinned)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            # An attachment names a template phase or a session, never neither.
            await conn.execute(
                handout_attachments.insert().values(
                    id="x" * 36, program_id=program_id, handout_id=pdf_id, created_at=NOW
                )
            )
    async with engine.connect() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(handout_attachments))
    assert count == 2

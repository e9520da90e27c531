"""Homework in storage on SQLite and PostgreSQL: sealed answers, one hand-in, key rotation."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.demo import seed_demo
from server.homework import store as homework
from server.keyrotation import reencrypt
from server.phi import Keyring, add_key, ensure_keyring, load_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import homework_assignments

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "secret.key"


@pytest.fixture
async def engine(database_url: str, key_file: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine, keyring=ensure_keyring(key_file)[0])
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_demo_homework_is_sealed_handed_in_once_and_survives_key_rotation(
    engine: AsyncEngine, key_file: Path
) -> None:
    keyring: Keyring = ensure_keyring(key_file)[0]
    demo = await seed_demo(engine, keyring, "https://example.test", NOW, 14)
    avery, blake = (p["id"] for p in demo["groups"][0]["patients"][:2])
    async with engine.connect() as conn:
        (handed,) = await homework.of_patient(conn, avery)
        (draft,) = await homework.of_patient(conn, blake)
        raw = [r for (r,) in await conn.execute(sa.select(homework_assignments.c.answers_enc))]
    assert handed.state == "handed_in" and draft.state == "draft"
    assert handed.answers(keyring)["intensity_before"] == 70
    assert all(value is None or "Nobody wants" not in value for value in raw)
    async with engine.begin() as conn:
        with pytest.raises(homework.HomeworkStateError):
            await homework.save(conn, keyring, handed, {"situation": "x"}, hand_in=True, now=NOW)
        with pytest.raises(homework.HomeworkStateError):
            await homework.mark_reviewed(conn, draft, demo["staff"][2]["id"], NOW)
        await homework.mark_reviewed(conn, handed, demo["staff"][2]["id"], NOW)
        badge = await homework.staff_badge(conn, handed.due_session_id, avery)
    assert badge == {"due": 1, "handed_in": 1}

    add_key(key_file)
    rotated = load_keyring(key_file)
    assert await reencrypt(engine, rotated) > 0
    async with engine.connect() as conn:
        values = [
            v
            for row in await conn.execute(
                sa.select(
                    homework_assignments.c.answers_enc, homework_assignments.c.instructions_enc
                )
            )
            for v in row
            if v
        ]
        (again,) = await homework.of_patient(conn, avery)
    assert values and all(v.startswith("v1:k2:") for v in values)
    assert again.state == "reviewed"
    assert again.answers(rotated)["balanced"].startswith("She is probably busy")

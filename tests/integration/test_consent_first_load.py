"""The first consent step opened by many patients at the same moment."""

from __future__ import annotations

import asyncio

import aiohttp
import sqlalchemy as sa

from server.appkeys import ENGINE
from server.storage.tables import consent_texts
from tests.conftest import RunningServer


async def test_eight_patients_opening_their_first_consent_at_once_all_get_the_page(
    any_server: RunningServer,
) -> None:
    demo = await any_server.seed_demo()
    patients = demo["groups"][0]["patients"]
    assert len(patients) == 8
    async with any_server.app[ENGINE].connect() as conn:
        # The demo's signed family-session release already keeps its own text.
        before = await conn.scalar(sa.select(sa.func.count()).select_from(consent_texts))
    phones = [any_server.client() for _ in patients]
    try:
        for phone, patient in zip(phones, patients, strict=True):
            async with phone.get(patient["join_url"]) as opened:
                assert opened.status == 200

        async def first_step(phone: aiohttp.ClientSession) -> tuple[int, str]:
            async with phone.get("/consent") as response:
                return response.status, await response.text()

        pages = await asyncio.gather(*(first_step(phone) for phone in phones))
    finally:
        for phone in phones:
            await phone.close()
    assert [status for status, _ in pages] == [200] * 8
    assert all("Step 1 of" in text for _, text in pages)
    # They read the same filled-in text, kept once by its hash.
    async with any_server.app[ENGINE].connect() as conn:
        kept = await conn.scalar(sa.select(sa.func.count()).select_from(consent_texts))
    assert kept == (before or 0) + 1

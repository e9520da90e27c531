"""Patient join links: issue, open, one device at a time, revoke, expire, date-of-birth check."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import sqlalchemy as sa

from server.appkeys import CLOCK, ENGINE
from server.storage.tables import audit_log, join_links, programs, sessions
from tests.conftest import CSRF, RunningServer, signed_in, staff_login


def _patient(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def test_a_link_lands_on_the_checked_in_page_for_its_session(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with server.client() as phone:
        response = await phone.get(patient["join_url"])
        assert response.status == 200
        assert str(response.url).endswith("/join")
        text = await response.text()
        assert "You are checked in for Evening IOP Group A at 6:00 PM" in text
        assert "(555) 010-0100" in text


async def test_tokens_are_long_random_and_stored_only_as_hashes(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    tokens = [p["join_url"].rsplit("/", 1)[1] for p in demo["groups"][0]["patients"]]
    assert all(len(token) >= 22 for token in tokens)  # >= 128 bits of url-safe base64
    assert len(set(tokens)) == len(tokens)
    async with server.app[ENGINE].connect() as conn:
        stored = repr((await conn.execute(sa.select(join_links))).all())
    assert not any(token in stored for token in tokens)


async def test_a_second_device_takes_over_and_the_first_is_told(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with server.client() as phone, server.client() as laptop:
        assert (await phone.get(patient["join_url"])).status == 200
        assert (await laptop.get(patient["join_url"])).status == 200
        moved = await phone.get("/join")
        assert moved.status == 409
        assert "moved to another device" in await moved.text()
        assert (await laptop.get("/join")).status == 200
    async with server.app[ENGINE].connect() as conn:
        details = [
            row.detail
            for row in await conn.execute(
                sa.select(audit_log.c.detail).where(audit_log.c.action == "join_link.used")
            )
        ]
    assert details == [{"moved_from_other_device": False}, {"moved_from_other_device": True}]


async def test_revoked_and_expired_links_stop_working(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo, 2)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        issued = await clinician.post(
            f"/api/patients/{patient['id']}/join-links", json={"standing": True}
        )
        assert issued.status == 201
        link = await issued.json()
        async with server.client() as phone:
            assert (await phone.get(link["url"])).status == 200
            revoked = await clinician.delete(f"/api/join-links/{link['id']}")
            assert revoked.status == 200
            assert (await phone.get("/join")).status == 410
            assert (await phone.get(link["url"])).status == 410
    async with server.app[ENGINE].connect() as conn:
        ends_at = (
            await conn.execute(
                sa.select(sessions.c.ends_at).where(sessions.c.id == patient["join_session_id"])
            )
        ).scalar_one()
    async with server.client() as phone:
        # The demo link lasts until an hour after its session ends, which on a Friday night
        # is Monday's.
        clock = server.app[CLOCK]
        clock.advance(seconds=(ends_at - clock.now()).total_seconds() + 2 * 3600)
        expired = await phone.get(patient["join_url"])
        assert expired.status == 410
        assert "expired" in await expired.text()


async def test_unknown_tokens_get_a_plain_refusal(server: RunningServer) -> None:
    async with server.client() as phone:
        response = await phone.get("/j/" + "A" * 32)
        assert response.status == 404
        assert "We could not open this link" in await response.text()


async def test_clinicians_issue_links_only_for_their_own_patients(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        other = await admin.post(
            "/api/patients",
            json={
                "program_id": demo["program"]["id"],
                "legal_name": "Other P",
                "display_name": "O",
            },
        )
        other_id = (await other.json())["id"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        refused = await clinician.post(
            f"/api/patients/{other_id}/join-links", json={"standing": True}
        )
        assert refused.status == 404
        bad = await clinician.post(f"/api/patients/{patient['id']}/join-links", json={})
        assert bad.status == 422
        wrong_session = await clinician.post(
            f"/api/patients/{patient['id']}/join-links",
            json={"session_id": "00000000-0000-0000-0000-000000000000"},
        )
        assert wrong_session.status == 422


async def test_the_date_of_birth_check_admits_the_patient_and_locks_guessers_out(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(join_requires_dob=True))
    csrf = re.compile(r'name="csrf_token" value="([^"]+)"')
    # Demo patient 1 was born 1981-01-11.
    async with server.client() as phone:
        first = await phone.get(_patient(demo)["join_url"])
        assert "Confirm it is you" in await first.text()
        token = csrf.search(await first.text())
        assert token is not None
        right = await phone.post(
            _patient(demo)["join_url"],
            data={"csrf_token": token.group(1), "date_of_birth": "1981-01-11"},
        )
        assert right.status == 200
        assert "You are checked in" in await right.text()
    guessed = _patient(demo, 1)
    async with server.client() as guesser:
        page = await (await guesser.get(guessed["join_url"])).text()
        token = csrf.search(page)
        assert token is not None
        statuses = []
        for day in range(1, 6):
            response = await guesser.post(
                guessed["join_url"],
                data={"csrf_token": token.group(1), "date_of_birth": f"1970-01-0{day}"},
            )
            statuses.append(response.status)
        assert statuses == [400, 400, 400, 400, 410]
        assert (await guesser.get(guessed["join_url"])).status == 410


async def test_five_wrong_dates_of_birth_revoke_the_link_however_many_arrive_at_once(
    any_server: RunningServer,
) -> None:
    demo = await any_server.seed_demo()
    async with any_server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(join_requires_dob=True))
    patient = _patient(demo, 1)  # born 1982-02-12
    async with any_server.client() as guesser:
        page = await (await guesser.get(patient["join_url"])).text()
        token = CSRF.search(page)
        assert token is not None

        async def answer(date: str) -> tuple[str, int]:
            form = {"csrf_token": token.group(1), "date_of_birth": date}
            post = guesser.post(patient["join_url"], data=form, allow_redirects=False)
            async with post as response:
                await response.read()
                return date, response.status

        # Forty wrong dates and the right one, all in flight at once.
        guesses = [f"1970-{month:02d}-{day:02d}" for month in (1, 2) for day in range(1, 21)]
        answers = dict(await asyncio.gather(*(answer(d) for d in [*guesses, "1982-02-12"])))
        assert (await guesser.get(patient["join_url"])).status == 410
    wrong = [answers[d] for d in guesses]
    assert sorted(wrong) == [400] * 4 + [410] * 36
    async with any_server.app[ENGINE].connect() as conn:
        trail = [
            (row.action, row.outcome)
            for row in await conn.execute(
                sa.select(audit_log.c.action, audit_log.c.outcome)
                .where(audit_log.c.action.in_(["join_link.dob_check", "join_link.used"]))
                .order_by(audit_log.c.seq)
            )
        ]
    checks = [outcome for action, outcome in trail if action == "join_link.dob_check"]
    assert checks == ["failed"] * 4 + ["revoked"]
    # The right date gets in only when it was answered before the fifth wrong one.
    if answers["1982-02-12"] == 303:
        assert trail.index(("join_link.used", "ok")) < trail.index(
            ("join_link.dob_check", "revoked")
        )
    else:
        assert answers["1982-02-12"] == 410
        assert ("join_link.used", "ok") not in trail


async def test_the_intake_page_issues_a_link_shown_once_and_can_revoke_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo, 3)
    csrf = re.compile(r'name="csrf_token" value="([^"]+)"')
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{patient['id']}")).text()
        token = csrf.search(page)
        assert token is not None
        issued = await clinician.post(
            f"/patients/{patient['id']}/join-links",
            data={"csrf_token": token.group(1), "session_id": "standing"},
        )
        assert issued.status == 201
        url = re.search(r'aria-label="Join link" readonly value="([^"]+)"', await issued.text())
        assert url is not None
        again = await (await clinician.get(f"/patients/{patient['id']}")).text()
        assert url.group(1) not in again
        async with server.client() as phone:
            assert (await phone.get(url.group(1))).status == 200

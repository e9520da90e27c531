"""Handouts over HTTP and the room socket: the library, versions, checks, who reads, show-to-all."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import sqlalchemy as sa

from care.handouts import MAX_BYTES
from server.appkeys import ENGINE
from server.handouts import store
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import audit_log, sessions
from tests.conftest import CSRF, RunningServer, signed_in, staff_login
from tests.integration.test_rooms_ws import Room, room  # noqa: F401  (fixture)

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def _csrf(client: aiohttp.ClientSession, path: str = "/handouts") -> str:
    async with client.get(path) as response:
        assert response.status == 200, await response.text()
        match = CSRF.search(await response.text())
    assert match
    return match.group(1)


def _form(csrf: str, **fields: Any) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("csrf_token", csrf)
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(
                name,
                io.BytesIO(value),
                filename="upload.bin",
                content_type="application/octet-stream",
            )
        else:
            form.add_field(name, value)
    return form


async def _clinician(server: RunningServer, demo: dict[str, Any]) -> aiohttp.ClientSession:
    return await signed_in(server, *staff_login(demo, "clinician"))


async def _demo_handout(server: RunningServer, demo: dict[str, Any]) -> dict[str, Any]:
    async with server.app[ENGINE].connect() as conn:
        return (await store.library(conn, demo["program"]["id"]))[0]


async def test_a_new_upload_is_the_next_version_and_old_versions_stay_readable(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _clinician(server, demo) as client:
        csrf = await _csrf(client)
        text = (
            "# Urge surfing\nIntro <script>alert(1)</script>\n\n## Notice\nOne\n\n## Ride it\nTwo\n"
        )
        async with client.post(
            "/handouts",
            data=_form(csrf, title="  Urge   surfing ", markdown=text),
            allow_redirects=False,
        ) as created:
            assert created.status == 303
            handout_path = created.headers["Location"]
        second = b"# Urge surfing\n\n## Notice (revised)\nThree\n"
        async with client.post(
            f"{handout_path}/versions",
            data=_form(csrf, file=second, format="markdown"),
            allow_redirects=False,
        ) as added:
            assert added.status == 303
        async with client.get(handout_path) as page:
            html = await page.text()
        assert "Urge surfing" in html and "2 (latest)" in html and "Markdown, 3 pages" in html
        async with client.get(f"{handout_path}/v/1/pages") as first:
            body = await first.json()
        assert [p["title"] for p in body["pages"]] == ["Urge surfing", "Notice", "Ride it"]
        # Raw HTML is never markup: it is shown as the text it is.
        assert "&lt;script&gt;" in body["pages"][0]["html"] and "<script" not in str(body)
        async with client.get(f"{handout_path}/v/2?page=2") as read:
            assert "Notice (revised)" in await read.text()
        async with client.get(f"{handout_path}/v/2?page=9") as beyond:
            assert beyond.status == 400 and "pages 1 to 2" in await beyond.text()
        async with client.get(f"{handout_path}/v/3") as missing:
            assert missing.status == 404
    async with server.app[ENGINE].connect() as conn:
        actions = set((await conn.execute(sa.select(audit_log.c.action))).scalars())
    assert {"handout.created", "handout.version_added"} <= actions


async def test_a_pdf_is_checked_by_its_first_bytes_and_served_inline_under_a_strict_policy(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _clinician(server, demo) as client:
        csrf = await _csrf(client)
        fake = b"<html><script>alert(1)</script></html>"
        async with client.post(
            "/handouts", data=_form(csrf, title="Fake", file=fake, format="pdf")
        ) as refused:
            assert refused.status == 400
            assert "not a PDF" in await refused.text()
        async with client.post(
            "/handouts",
            data=_form(csrf, title="Sleep hygiene", file=PDF, format="pdf"),
            allow_redirects=False,
        ) as created:
            path = created.headers["Location"]
        async with client.get(f"{path}/v/1/file") as served:
            assert await served.read() == PDF
            assert served.headers["Content-Type"] == "application/pdf"
            assert served.headers["X-Content-Type-Options"] == "nosniff"
            assert served.headers["Content-Disposition"].startswith("inline;")
            assert "default-src 'none'" in served.headers["Content-Security-Policy"]
            assert "sandbox" in served.headers["Content-Security-Policy"]
        async with client.get(f"{path}/v/1/pages") as pages:
            assert (await pages.json())["file"] == f"{path}/v/1/file"


async def test_an_upload_over_the_size_limit_is_refused_with_a_clear_error(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _clinician(server, demo) as client:
        csrf = await _csrf(client)
        big = b"%PDF-" + b"0" * MAX_BYTES
        async with client.post(
            "/handouts", data=_form(csrf, title="Big", file=big, format="pdf")
        ) as refused:
            assert refused.status == 413
            assert "too large: a handout may be at most 5 MB" in await refused.text()
        async with client.post("/handouts", data=_form(csrf, title="Nothing")) as empty:
            assert empty.status == 400
            assert "Choose a PDF or Markdown file" in await empty.text()
        async with client.post("/handouts", data={"csrf_token": csrf, "title": "x"}) as plain:
            assert plain.status == 400


async def test_only_the_programs_staff_and_patients_read_a_handout(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    handout = await _demo_handout(server, demo)
    path = f"/handouts/{handout['id']}/v/{handout['latest']}"
    patient = server.client()
    anon = server.client()
    try:
        async with patient.get(demo["groups"][0]["patients"][0]["join_url"]) as opened:
            assert opened.status == 200
            assert 'href="/my/handouts"' in await opened.text()
        async with patient.get("/my/handouts") as mine:
            listed = await mine.text()
        assert "Box breathing and the 5-4-3-2-1 grounding skill" in listed
        assert "(Skills (CBT/DBT))" in listed
        async with patient.get(path + "?page=2") as read:
            text = await read.text()
        assert read.status == 200 and "Box breathing" in text and "page <span" in text
        async with anon.get(path) as refused:
            assert refused.status == 401
        async with anon.get("/my/handouts") as refused:
            assert refused.status == 401
        # Another program's handout is not there for this program's patient or clinician.
        async with await signed_in(server, *staff_login(demo, "admin")) as admin:
            made = await admin.post(
                "/api/programs",
                json={
                    "name": "Other program",
                    "time_zone": "America/Los_Angeles",
                    "phone": "(555) 010-0199",
                },
            )
            other = (await made.json())["id"]
            csrf = await _csrf(admin)
            async with admin.post(
                f"/handouts?program={other}",
                data=_form(csrf, title="Theirs", markdown="# Theirs\n"),
                allow_redirects=False,
            ) as created:
                theirs = created.headers["Location"]
            async with admin.get("/handouts?program=no-such-program") as unknown:
                assert unknown.status == 404
            async with admin.post(
                "/handouts?program=no-such-program",
                data=_form(csrf, title="Lost", markdown="# Lost\n"),
            ) as unknown:
                assert unknown.status == 404
        async with patient.get(f"{theirs}/v/1") as hidden:
            assert hidden.status == 404
        async with await _clinician(server, demo) as clinician:
            async with clinician.get(f"{theirs}/v/1") as hidden:
                assert hidden.status == 404
            async with clinician.get(theirs) as hidden:
                assert hidden.status == 404
        async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
            async with supervisor.get(path) as read:
                assert read.status == 200
            async with supervisor.get("/handouts", allow_redirects=False) as library:
                assert library.status == 403
    finally:
        await patient.close()
        await anon.close()


async def test_attaching_checks_its_target_and_a_live_room_offers_it_at_once(
    room: Room,  # noqa: F811
) -> None:
    server, demo = room.server, room.demo
    host = await room.staff()
    patient = await room.admitted(host, 0)
    snapshot = next(m for m in reversed(patient.received) if m["type"] == "snapshot")
    assert [h["phase"] for h in snapshot["handouts"]] == ["Skills (CBT/DBT)"]
    assert snapshot["handout"] is None
    async with await _clinician(server, demo) as client:
        csrf = await _csrf(client)
        async with client.post(
            "/handouts",
            data=_form(csrf, title="STOP skill", markdown="# STOP\n\n## Stop\nx\n"),
            allow_redirects=False,
        ) as created:
            path = created.headers["Location"]
        bad = {
            "csrf_token": csrf,
            "target": "session",
            "session_id": room.room_id,
            "session_phase": "No such phase",
            "version": "latest",
        }
        async with client.post(f"{path}/attachments", data=bad) as refused:
            assert refused.status == 400
            assert "no phase of that title" in await refused.text()
        wrong = {**bad, "session_phase": "", "version": "7"}
        async with client.post(f"{path}/attachments", data=wrong) as refused:
            assert refused.status == 400
        good = {**bad, "session_phase": "", "version": "1"}
        async with client.post(f"{path}/attachments", data=good, allow_redirects=False) as ok:
            assert ok.status == 303
    offered = await patient.until(lambda m: m["type"] == "handouts" and len(m["handouts"]) == 2)
    stop = next(h for h in offered["handouts"] if h["title"] == "STOP skill")
    assert stop["phase"] is None and stop["version"] == 1 and stop["pages"] == 2
    async with server.app[ENGINE].connect() as conn:
        [attached] = await store.attachments_of(conn, path.rsplit("/", 1)[1])
    async with await signed_in(server, *staff_login(demo, "admin")) as client:
        csrf = await _csrf(client)
        detach = f"{path}/attachments/{attached['id']}/delete"
        async with client.post(detach, data={"csrf_token": csrf}, allow_redirects=False) as gone:
            assert gone.status == 303
        async with client.post(detach, data={"csrf_token": csrf}) as again:
            assert again.status == 404
        async with client.post(detach, data={"csrf_token": "wrong"}) as forged:
            assert forged.status == 400
    await patient.until(lambda m: m["type"] == "handouts" and len(m["handouts"]) == 1)


async def test_the_host_shows_a_handout_to_all_and_a_reconnecting_patient_lands_on_its_page(
    room: Room,  # noqa: F811
) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    shelf = next(m for m in reversed(patient.received) if m["type"] == "snapshot")["handouts"]
    handout_id, version = shelf[0]["handout_id"], shelf[0]["version"]
    await patient.send(
        {"type": "handout", "op": "show", "handout_id": handout_id, "version": version}
    )
    refused = await patient.until(lambda m: m["type"] == "error")
    assert refused["code"] == "forbidden" and "host and co-host" in refused["reason"]
    await host.send({"type": "handout", "op": "page", "page": 1})
    assert (await host.until(lambda m: m["type"] == "error"))["code"] == "not_showing"
    await host.send({"type": "handout", "op": "show", "handout_id": "0" * 36, "version": 1})
    assert (await host.until(lambda m: m["type"] == "error" and m["code"] == "unknown_handout"))[
        "reason"
    ]
    await host.send(
        {"type": "handout", "op": "show", "handout_id": handout_id, "version": version, "extra": 1}
    )
    assert await host.until(lambda m: m["type"] == "error" and m["code"] == "invalid")
    await host.send({"type": "handout", "op": "show", "handout_id": handout_id, "version": version})
    shown = await patient.until(lambda m: m["type"] == "handout_view" and m["view"])
    assert shown["view"]["page"] == 0 and shown["view"]["pages"] == 4
    await host.send({"type": "handout", "op": "page", "page": 2})
    await patient.until(lambda m: m["type"] == "handout_view" and m["view"]["page"] == 2)
    await host.send({"type": "handout", "op": "page", "page": 4})
    assert (await host.until(lambda m: m["type"] == "error" and m["code"] == "invalid_page"))[
        "reason"
    ]
    # A patient who reconnects opens the room on the page the host is showing.
    await patient.ws.close()
    again = await room.patient(0)
    snapshot = next(m for m in reversed(again.received) if m["type"] == "snapshot")
    assert snapshot["handout"]["page"] == 2 and snapshot["handout"]["handout_id"] == handout_id
    # The shown page is room state: a process taking the room over shows the same page.
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        saved = await conn.scalar(
            sa.select(sessions.c.room_state).where(sessions.c.id == room.room_id)
        )
    assert saved["handout"]["page"] == 2
    await host.send({"type": "handout", "op": "stop"})
    await again.until(lambda m: m["type"] == "handout_view" and m["view"] is None)

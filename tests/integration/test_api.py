"""The JSON API against a real server over TLS."""

from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import RunningServer, enrol_totp, signed_in, staff_login, totp_code


async def _admin(server: RunningServer, demo: dict[str, Any]) -> aiohttp.ClientSession:
    return await signed_in(server, *staff_login(demo, "admin"))


async def test_health_and_readiness_answer_json(server: RunningServer) -> None:
    async with server.client() as client:
        alive = await client.get("/healthz")
        assert alive.status == 200
        assert await alive.json() == {"status": "ok", "fanout": server.settings.fanout}
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert await ready.json() == {"status": "ready", "database": "ok"}


async def test_every_response_carries_the_security_headers(server: RunningServer) -> None:
    async with server.client() as client:
        for path in ("/", "/healthz", "/api/programs", "/no-such-page"):
            response = await client.get(path)
            headers = response.headers
            assert "max-age=" in headers["Strict-Transport-Security"]
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert "unsafe-inline" not in headers["Content-Security-Policy"]
            # Fetches and sockets go back to this server only (wss: by name for old Safari).
            policy = dict(
                part.split(" ", 1) for part in headers["Content-Security-Policy"].split("; ")
            )
            assert policy["connect-src"] == f"'self' wss://{urlsplit(server.base_url).netloc}"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert len(headers["X-Request-Id"]) == 16


async def test_unknown_pages_get_a_real_error_page(server: RunningServer) -> None:
    async with server.client() as client:
        response = await client.get("/no-such-page")
        assert response.status == 404
        body = await response.text()
        assert "We could not find that page" in body
        assert response.headers["X-Request-Id"] in body


async def test_an_error_page_keeps_the_headers_that_say_what_to_do_next(
    server: RunningServer,
) -> None:
    async with server.client() as client:
        response = await client.put("/healthz")
        assert response.status == 405
        assert "GET" in response.headers["Allow"]


async def test_the_api_refuses_anyone_not_signed_in(server: RunningServer) -> None:
    async with server.client() as client:
        for path in (
            "/api/programs",
            "/api/staff",
            "/api/patients",
            "/api/groups",
            "/api/appointments",
            "/api/sessions",
        ):
            response = await client.get(path)
            assert response.status == 401, path
            assert (await response.json())["error"] == "unauthorized"


async def test_wrong_password_and_unknown_account_get_the_same_answer(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, _, _ = staff_login(demo, "admin")
    async with server.client() as client:
        wrong = await client.post("/api/auth/session", json={"email": email, "password": "nope"})
        unknown = await client.post(
            "/api/auth/session", json={"email": "nobody@example.org", "password": "nope"}
        )
        assert wrong.status == unknown.status == 401
        assert (await wrong.json())["reason"] == (await unknown.json())["reason"]


async def test_sign_in_sets_a_secure_http_only_cookie_and_sign_out_ends_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, secret = staff_login(demo, "clinician")
    async with server.client() as client:
        without_code = await client.post(
            "/api/auth/session", json={"email": email, "password": password}
        )
        assert without_code.status == 401
        assert (await without_code.json())["error"] == "code_required"
        response = await client.post(
            "/api/auth/session",
            json={"email": email, "password": password, "code": totp_code(server, secret)},
        )
        assert response.status == 200
        cookie = response.cookies["iop_session"]
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
        assert (await (await client.get("/api/auth/session")).json())["role"] == "clinician"
        await client.delete("/api/auth/session")
        assert (await client.get("/api/auth/session")).status == 401


async def test_admin_creates_a_program_staff_patient_group_and_appointment(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _admin(server, demo) as admin:
        program = await admin.post(
            "/api/programs",
            json={"name": "South IOP", "kind": "substance_use", "phone": "+1 555 010 0120"},
        )
        assert program.status == 201, await program.text()
        program_id = (await program.json())["id"]
        clinician = await admin.post(
            "/api/staff",
            json={
                "program_id": program_id,
                "email": "Lead@South.example",
                "display_name": "Lead",
                "role": "clinician",
                "licence": "LMFT 1",
                "password": "correct horse battery",
            },
        )
        assert clinician.status == 201
        clinician_body = await clinician.json()
        assert clinician_body["email"] == "lead@south.example"
        assert "password" not in clinician_body and "password_hash" not in clinician_body
        patient = await admin.post(
            "/api/patients",
            json={
                "program_id": program_id,
                "legal_name": "Pat Example",
                "display_name": "Pat",
                "date_of_birth": "1991-02-03",
                "home_address": "9 Example Road, Fresno, CA 93701",
                "backup_phone": "(555) 010-0199",
            },
        )
        assert patient.status == 201
        patient_id = (await patient.json())["id"]
        group = await admin.post(
            "/api/groups",
            json={
                "program_id": program_id,
                "name": "Tuesday evening",
                "lead_clinician_id": clinician_body["id"],
                "member_ids": [patient_id],
                "schedule": [{"day": "tue", "start": "18:00", "end": "21:00"}],
                "starts_on": "2026-01-06",
            },
        )
        assert group.status == 201, await group.text()
        assert (await group.json())["sessions_created"] >= 4
        appointment = await admin.post(
            "/api/appointments",
            json={
                "program_id": program_id,
                "patient_id": patient_id,
                "clinician_id": clinician_body["id"],
                "starts_at": "2099-01-05T10:00:00-08:00",
                "minutes": 50,
            },
        )
        assert appointment.status == 201, await appointment.text()
        listed = await (await admin.get("/api/groups")).json()
        assert {"Tuesday evening", "Evening IOP Group A"} <= {g["name"] for g in listed["groups"]}
        sessions = await (await admin.get("/api/sessions?from=2099-01-05&days=1")).json()
        assert [s["kind"] for s in sessions["sessions"]] == ["individual"]


async def test_invalid_input_is_refused_field_by_field_without_echoing_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    program_id = demo["program"]["id"]
    async with await _admin(server, demo) as admin:
        response = await admin.post(
            "/api/patients",
            json={
                "program_id": program_id,
                "legal_name": "",
                "display_name": "Canary",
                "backup_phone": "call me maybe 555",
                "home_address": "1 Canary Way, Fresno",
                "favourite_colour": "blue",
            },
        )
        assert response.status == 422
        body = await response.json()
        fields = {f["field"] for f in body["fields"]}
        assert {"legal_name", "backup_phone", "favourite_colour"} <= fields
        text = await response.text()
        assert "Canary" not in text and "call me maybe" not in text


async def test_malformed_oversized_and_non_json_bodies_are_refused(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _admin(server, demo) as admin:
        bad_json = await admin.post(
            "/api/programs", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status == 400
        assert (await bad_json.json())["error"] == "bad_json"
        not_object = await admin.post("/api/programs", json=["a"])
        assert not_object.status == 400
        form = await admin.post("/api/programs", data={"name": "x"})
        assert form.status == 415
        huge = await admin.post("/api/programs", json={"name": "x" * 70_000, "phone": "5550100"})
        assert huge.status == 413
        bad_query = await admin.get("/api/sessions?days=999")
        assert bad_query.status == 400
        unknown_query = await admin.get("/api/sessions?colour=red")
        assert unknown_query.status == 400


async def test_cross_site_writes_are_refused(server: RunningServer, demo: dict[str, Any]) -> None:
    async with await _admin(server, demo) as admin:
        response = await admin.post(
            "/api/programs",
            json={"name": "Evil", "phone": "5550100123"},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status == 403
        fetched = await admin.post(
            "/api/programs",
            json={"name": "Evil", "phone": "5550100123"},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert fetched.status == 403


async def test_roles_are_enforced_on_every_write(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    program_id = demo["program"]["id"]
    for role in ("clinician", "supervisor"):
        async with await signed_in(server, *staff_login(demo, role)) as client:
            response = await client.post(
                "/api/patients",
                json={"program_id": program_id, "legal_name": "X Y", "display_name": "X"},
            )
            assert response.status == 403, role
            assert (await client.post("/api/programs", json={})).status == 403


async def test_clinicians_see_only_their_own_groups_and_patients(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _admin(server, demo) as admin:
        other = await admin.post(
            "/api/staff",
            json={
                "program_id": demo["program"]["id"],
                "email": "outsider@demo.iop.example",
                "display_name": "Outsider",
                "role": "clinician",
                "password": "another long password",
            },
        )
        assert other.status == 201
        outsider_secret = await enrol_totp(server, (await other.json())["id"])
    async with await signed_in(server, *staff_login(demo, "clinician")) as lead:
        groups = (await (await lead.get("/api/groups")).json())["groups"]
        assert [g["name"] for g in groups] == ["Evening IOP Group A"]
        patients = (await (await lead.get("/api/patients")).json())["patients"]
        assert len(patients) == 8
    async with await signed_in(
        server, "outsider@demo.iop.example", "another long password", outsider_secret
    ) as outsider:
        assert (await (await outsider.get("/api/groups")).json())["groups"] == []
        assert (await (await outsider.get("/api/patients")).json())["patients"] == []
        assert (await (await outsider.get("/api/sessions?days=14")).json())["sessions"] == []
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        assert (await supervisor.get("/api/patients")).status == 403
        assert len((await (await supervisor.get("/api/groups")).json())["groups"]) == 1


async def test_the_home_page_renders(server: RunningServer) -> None:
    async with server.client() as client:
        response = await client.get("/")
        assert response.status == 200
        assert "Joining a session?" in await response.text()

"""Staff sign-in pages: password, second factor, enrolment, rate limit, idle lock, sign-out."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pyotp
import pytest
import sqlalchemy as sa

from rooms.closecodes import CloseCode
from server.accounts import store as accounts
from server.appkeys import CLOCK, ENGINE
from server.storage.tables import audit_log
from tests.conftest import CSRF, RunningServer, signed_in, staff_login, totp_code


async def _token(client: aiohttp.ClientSession, path: str) -> str:
    async with client.get(path) as response:
        match = CSRF.search(await response.text())
    assert match is not None, path
    return match.group(1)


async def _post(
    client: aiohttp.ClientSession, path: str, form: dict[str, str], token_from: str
) -> aiohttp.ClientResponse:
    data = {"csrf_token": await _token(client, token_from), **form}
    response = await client.post(path, data=data, allow_redirects=False)
    await response.read()
    return response


async def _password_step(
    client: aiohttp.ClientSession, email: str, password: str
) -> aiohttp.ClientResponse:
    return await _post(client, "/signin", {"email": email, "password": password}, "/signin")


async def _audit_actions(server: RunningServer) -> list[tuple[str, str]]:
    async with server.app[ENGINE].connect() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action, audit_log.c.outcome).order_by(audit_log.c.seq)
        )
        return [(row.action, row.outcome) for row in rows]


async def test_password_then_authenticator_code_signs_in(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, secret = staff_login(demo, "clinician")
    async with server.client() as client:
        first = await _password_step(client, email, password)
        assert first.status == 303
        assert first.headers["Location"] == "/signin/code"
        # Not signed in yet: the second factor is still owed.
        assert (await client.get("/dashboard", allow_redirects=False)).status == 303
        second = await _post(
            client, "/signin/code", {"code": totp_code(server, secret)}, "/signin/code"
        )
        assert second.status == 303
        assert second.headers["Location"] == "/dashboard"
        dashboard = await client.get("/dashboard")
        assert "Hello, Casey Lead (demo)" in await dashboard.text()
    actions = await _audit_actions(server)
    assert ("auth.password", "ok") in actions
    assert ("auth.second_factor", "ok") in actions
    assert ("auth.signed_in", "ok") in actions


async def test_a_code_cannot_be_used_twice(server: RunningServer, demo: dict[str, Any]) -> None:
    email, password, secret = staff_login(demo, "supervisor")
    code = totp_code(server, secret)
    async with server.client() as client:
        await _password_step(client, email, password)
        ok = await _post(client, "/signin/code", {"code": code}, "/signin/code")
        assert ok.status == 303
    async with server.client() as replay:
        await _password_step(replay, email, password)
        again = await _post(replay, "/signin/code", {"code": code}, "/signin/code")
        assert again.status == 400
        assert "did not work" in await again.text()


async def test_a_recovery_code_signs_in_once(server: RunningServer, demo: dict[str, Any]) -> None:
    email, password, secret = staff_login(demo, "clinician", 1)
    async with server.client() as client:
        # Re-enrol through the pages to receive recovery codes.
        await _password_step(client, email, password)
        await _post(client, "/signin/code", {"code": totp_code(server, secret)}, "/signin/code")
    async with server.app[ENGINE].begin() as conn:
        row = await accounts.staff_by_email(conn, email)
        codes = await accounts.enrol_totp(
            conn, server.keyring, row.id, secret, row.totp_last_step, server.app[CLOCK].now()
        )
    async with server.client() as client:
        await _password_step(client, email, password)
        used = await _post(client, "/signin/code", {"code": codes[0].upper()}, "/signin/code")
        assert used.status == 303
    async with server.client() as client:
        await _password_step(client, email, password)
        reused = await _post(client, "/signin/code", {"code": codes[0]}, "/signin/code")
        assert reused.status == 400


async def test_invited_staff_set_a_password_enrol_and_get_recovery_codes(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await _post(
            admin,
            "/admin/staff",
            {
                "program_id": demo["program"]["id"],
                "email": "new.clinician@demo.iop.example",
                "display_name": "New Clinician",
                "role": "clinician",
                "licence": "ASW 1",
            },
            "/admin/staff",
        )
        assert page.status == 201
        invite_url = re.search(r'value="(https://[^"]+/invite/[^"]+)"', await page.text())
    assert invite_url is not None
    path = "/" + invite_url.group(1).split("/", 3)[3]
    async with server.client() as client:
        short = await _post(client, path, {"password": "short", "confirm": "short"}, path)
        assert short.status == 400
        chosen = "a very long new password"
        accepted = await _post(client, path, {"password": chosen, "confirm": chosen}, path)
        assert accepted.status == 303
        assert accepted.headers["Location"] == "/signin/enrol"
        enrol_page = await (await client.get("/signin/enrol")).text()
        assert "data:image/svg+xml;base64," in enrol_page
        key = re.search(r'aria-label="Setup key">([A-Z2-7 ]+)<', enrol_page)
        assert key is not None
        secret = key.group(1).replace(" ", "")
        wrong = await _post(client, "/signin/enrol", {"code": "000000"}, "/signin/enrol")
        assert wrong.status == 400
        done = await _post(
            client, "/signin/enrol", {"code": pyotp.TOTP(secret).now()}, "/signin/enrol"
        )
        assert done.status == 200
        codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", await done.text())
        assert len(codes) == 10
        assert (await client.get("/dashboard")).status == 200
    # The invitation is single use.
    async with server.client() as client:
        again = await client.get(path)
        assert again.status == 404
    assert ("mfa.enrolled", "ok") in await _audit_actions(server)


async def test_repeated_failures_are_refused_without_revealing_whether_the_account_exists(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, _ = staff_login(demo, "admin")
    async with server.client() as client:
        for _ in range(5):
            assert (await _password_step(client, email, "wrong password")).status == 400
        locked = await _password_step(client, email, password)
        assert locked.status == 429
        locked_text = await locked.text()
        for _ in range(5):
            await _password_step(client, "ghost@example.org", "wrong password")
        ghost = await _password_step(client, "ghost@example.org", "wrong password")
        assert ghost.status == 429
        ghost_text = await ghost.text()
        assert locked_text == ghost_text.replace("ghost@example.org", email)
        assert "Too many sign-in attempts" in locked_text
    # After the window the account signs in again.
    server.app[CLOCK].advance(minutes=16)
    async with server.client() as client:
        assert (await _password_step(client, email, password)).status == 303


async def test_forms_without_the_session_token_are_refused(server: RunningServer) -> None:
    async with server.client() as client:
        response = await client.post(
            "/signin", data={"email": "a@b.org", "password": "x"}, allow_redirects=False
        )
        assert response.status == 400
        assert "This form has expired" in await response.text()


async def test_idle_lock_hides_phi_until_the_password_is_given_again(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, secret = staff_login(demo, "clinician")
    patient_id = demo["groups"][0]["patients"][0]["id"]
    async with await signed_in(server, email, password, secret) as client:
        assert (await client.get(f"/patients/{patient_id}")).status == 200
        server.app[CLOCK].advance(minutes=16)
        locked = await client.get(f"/patients/{patient_id}", allow_redirects=False)
        assert locked.status == 303
        assert locked.headers["Location"].startswith("/unlock?next=")
        api = await client.get(f"/api/patients/{patient_id}")
        assert api.status == 423
        # Screens without PHI, and the session itself, carry on.
        assert (await client.get("/dashboard")).status == 200
        assert (await (await client.get("/api/auth/session")).json())["locked"] is True
        wrong = await _post(client, "/unlock", {"password": "nope", "next": "/"}, "/unlock")
        assert wrong.status == 400
        unlocked = await _post(
            client,
            "/unlock",
            {"password": password, "next": f"/patients/{patient_id}"},
            "/unlock",
        )
        assert unlocked.status == 303
        assert unlocked.headers["Location"] == f"/patients/{patient_id}"
        assert (await client.get(f"/patients/{patient_id}")).status == 200


async def test_background_requests_do_not_keep_a_screen_unlocked(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient_id = demo["groups"][0]["patients"][0]["id"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as client:
        for _ in range(4):
            server.app[CLOCK].advance(minutes=5)
            await client.get("/api/groups", headers={"X-IOP-Background": "1"})
        assert (await client.get(f"/api/patients/{patient_id}")).status == 423


async def test_sign_out_ends_the_session(server: RunningServer, demo: dict[str, Any]) -> None:
    async with await signed_in(server, *staff_login(demo, "supervisor")) as client:
        token = await _token(client, "/dashboard")
        out = await client.post("/signout", data={"csrf_token": token}, allow_redirects=False)
        assert out.status == 303
        assert (await client.get("/dashboard", allow_redirects=False)).status == 303
    assert ("auth.signed_out", "ok") in await _audit_actions(server)


async def test_a_disabled_account_loses_its_session(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    clinician = next(m for m in demo["staff"] if m["role"] == "clinician")
    async with await signed_in(server, *staff_login(demo, "clinician")) as client:
        assert (await client.get("/api/groups")).status == 200
        async with await signed_in(server, *staff_login(demo, "admin")) as admin:
            disabled = await _post(
                admin, f"/admin/staff/{clinician['id']}/disable", {}, "/admin/staff"
            )
            assert disabled.status == 303
        assert (await client.get("/api/groups")).status == 401


async def test_disabling_an_account_closes_its_open_room_and_dashboard_sockets(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    """Refusing new requests is not enough: what a disabled account already has open (a
    room it hosts, the supervision dashboard) is closed at once, and not reconnected."""
    first_of = {m["role"]: m for m in reversed(demo["staff"])}  # staff_login's choice
    room_id = demo["groups"][0]["patients"][0]["join_session_id"]
    async with (
        await signed_in(server, *staff_login(demo, "clinician")) as clinician,
        await signed_in(server, *staff_login(demo, "supervisor")) as supervisor,
        await signed_in(server, *staff_login(demo, "admin")) as admin,
    ):
        room = await clinician.ws_connect(f"/ws/rooms/{room_id}")
        await room.send_json({"type": "hello", "protocol": 1, "last_seq": None})
        assert (await room.receive_json(timeout=10))["type"] == "snapshot"
        board = await supervisor.ws_connect("/ws/dashboard")
        await board.send_json({"type": "hello", "protocol": 1})
        assert (await board.receive_json(timeout=10))["type"] == "snapshot"
        for role, socket in (("clinician", room), ("supervisor", board)):
            staff_id = first_of[role]["id"]
            disabled = await _post(admin, f"/admin/staff/{staff_id}/disable", {}, "/admin/staff")
            assert disabled.status == 303
            while (message := await socket.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
                pass  # what was already on its way
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert (message.data, message.extra) == (
                CloseCode.ACCOUNT_DISABLED,
                "this account has been disabled",
            )
        # Another staff member's socket is untouched.
        other = await admin.ws_connect("/ws/dashboard")
        await other.send_json({"type": "hello", "protocol": 1})
        assert (await other.receive_json(timeout=10))["type"] == "snapshot"
        await other.close()


async def test_an_enrolled_account_cannot_swap_its_second_factor_with_the_password_alone(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, secret = staff_login(demo, "clinician")
    async with server.client() as client:
        first = await _password_step(client, email, password)
        assert first.headers["Location"] == "/signin/code"
        # Someone with only the password asks to set up a new authenticator...
        offered = await client.get("/signin/enrol", allow_redirects=False)
        assert offered.status == 303
        assert offered.headers["Location"] == "/signin/code"
        # ...and confirms one of their own choosing: neither signs them in.
        theirs = pyotp.TOTP(pyotp.random_base32()).now()
        swapped = await _post(client, "/signin/enrol", {"code": theirs}, "/signin/code")
        assert swapped.status == 303
        assert swapped.headers["Location"] == "/signin/code"
        assert (await client.get("/dashboard", allow_redirects=False)).status == 303
        # The account's own authenticator is still the way on.
        code = await _post(
            client, "/signin/code", {"code": totp_code(server, secret)}, "/signin/code"
        )
        assert code.status == 303
        assert code.headers["Location"] == "/dashboard"
    assert ("mfa.enrolled", "ok") not in await _audit_actions(server)


OFF_SITE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/\t\t//evil.example",
    "\t//evil.example",
    " //evil.example",
    " /\t/evil.example",
    "//evil.example\t",
    "/\x00/evil.example",
    "\x00//evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "/ /evil.example",
    "https://evil.example",
    "http:evil.example",
    "https:/\\evil.example",
    "javascript:alert(1)",
    "evil.example",
]


async def test_the_return_address_after_sign_in_never_leaves_the_site(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, secret = staff_login(demo, "clinician")
    async with server.client() as client:
        # The reported bypass, through the sign-in pages themselves.
        token = await _token(client, "/signin?next=/%09/evil.example")
        form = {"csrf_token": token, "email": email, "password": password}
        assert (await client.post("/signin", data=form, allow_redirects=False)).status == 303
        done = await _post(
            client, "/signin/code", {"code": totp_code(server, secret)}, "/signin/code"
        )
        assert done.headers["Location"] == "/dashboard"
        for value in OFF_SITE:
            unlocked = await _post(
                client, "/unlock", {"password": password, "next": value}, "/unlock"
            )
            assert unlocked.status == 303, repr(value)
            assert unlocked.headers["Location"] == "/dashboard", repr(value)
        for value in ("/patients?group=abc", "/", "/rooms/abc"):
            unlocked = await _post(
                client, "/unlock", {"password": password, "next": value}, "/unlock"
            )
            assert unlocked.headers["Location"] == value


def _cookie(client: aiohttp.ClientSession) -> dict[str, str]:
    """The session cookie as a header, as someone who copied it would send it."""
    (value,) = [c.value for c in client.cookie_jar if c.key == "iop_session"]
    return {"Cookie": f"iop_session={value}"}


async def _closed_with(socket: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    while (message := await socket.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
        pass  # what was already on its way
    assert message.type is aiohttp.WSMsgType.CLOSE
    return message.data, message.extra


async def _dashboard(client: aiohttp.ClientSession, **kwargs: Any) -> Any:
    board = await client.ws_connect("/ws/dashboard", **kwargs)
    await board.send_json({"type": "hello", "protocol": 1})
    assert (await board.receive_json(timeout=10))["type"] == "snapshot"
    return board


async def test_a_copied_session_cookie_stops_working_at_sign_out(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with (
        await signed_in(server, *staff_login(demo, "supervisor")) as desk,
        server.client() as thief,
    ):
        copied = _cookie(desk)
        assert (await thief.get("/api/auth/session", headers=copied)).status == 200
        board = await _dashboard(desk)
        token = await _token(desk, "/dashboard")
        out = await desk.post("/signout", data={"csrf_token": token}, allow_redirects=False)
        assert out.status == 303
        assert await _closed_with(board) == (CloseCode.SIGNED_OUT, "signed out: sign in again")
        assert (await thief.get("/api/auth/session", headers=copied)).status == 401
        page = await thief.get("/supervisor", headers=copied, allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/signin?next=")
        with pytest.raises(aiohttp.WSServerHandshakeError):  # sent to sign in instead
            await thief.ws_connect("/ws/dashboard", headers=copied)
        # Signing in again works, with a new cookie.
    async with await signed_in(server, *staff_login(demo, "supervisor")) as again:
        assert (await again.get("/api/auth/session")).status == 200


async def test_resetting_a_second_factor_or_password_ends_the_accounts_sessions(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    first_of = {m["role"]: m for m in reversed(demo["staff"])}  # staff_login's choice
    room_id = demo["groups"][0]["patients"][0]["join_session_id"]
    async with (
        await signed_in(server, *staff_login(demo, "clinician")) as clinician,
        await signed_in(server, *staff_login(demo, "supervisor")) as supervisor,
        await signed_in(server, *staff_login(demo, "admin")) as admin,
        server.client() as thief,
    ):
        room = await clinician.ws_connect(f"/ws/rooms/{room_id}")
        await room.send_json({"type": "hello", "protocol": 1, "last_seq": None})
        assert (await room.receive_json(timeout=10))["type"] == "snapshot"
        copied = _cookie(clinician)
        reset = await _post(
            admin, f"/admin/staff/{first_of['clinician']['id']}/reset-mfa", {}, "/admin/staff"
        )
        assert reset.status == 303
        assert await _closed_with(room) == (
            CloseCode.SIGNED_OUT,
            "sign-in details were reset: sign in again",
        )
        assert (await clinician.get("/api/groups")).status == 401
        assert (await thief.get("/api/groups", headers=copied)).status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await thief.ws_connect(f"/ws/rooms/{room_id}", headers=copied)
        assert refused.value.status == 401

        board = await _dashboard(supervisor)
        invite = await _post(
            admin, f"/admin/staff/{first_of['supervisor']['id']}/invite", {}, "/admin/staff"
        )
        url = re.search(r'value="(https://[^"]+/invite/[^"]+)"', await invite.text())
        assert url is not None
        path = "/" + url.group(1).split("/", 3)[3]
        chosen = "a brand new long password"
        async with server.client() as owner:
            accepted = await _post(owner, path, {"password": chosen, "confirm": chosen}, path)
            assert accepted.status == 303
        assert await _closed_with(board) == (
            CloseCode.SIGNED_OUT,
            "sign-in details were reset: sign in again",
        )
        assert (await supervisor.get("/api/auth/session")).status == 401


async def test_enabling_a_disabled_account_does_not_revive_its_old_sessions(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    clinician = next(m for m in demo["staff"] if m["role"] == "clinician")
    async with (
        await signed_in(server, *staff_login(demo, "clinician")) as desk,
        await signed_in(server, *staff_login(demo, "admin")) as admin,
        server.client() as thief,
    ):
        copied = _cookie(desk)
        for action in ("disable", "enable"):
            done = await _post(
                admin, f"/admin/staff/{clinician['id']}/{action}", {}, "/admin/staff"
            )
            assert done.status == 303
        assert (await thief.get("/api/groups", headers=copied)).status == 401
        assert (await desk.get("/api/groups")).status == 401

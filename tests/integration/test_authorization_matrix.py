"""Every route, as every kind of caller: allowed where the table says, refused elsewhere."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import CSRF, RunningServer, consent_group, enrol_totp, signed_in, staff_login

ANON, PATIENT, ADMIN, SUPERVISOR, CLINICIAN = "anon", "patient", "admin", "supervisor", "clinician"
EVERYONE = frozenset({ANON, PATIENT, ADMIN, SUPERVISOR, CLINICIAN})
STAFF = frozenset({ADMIN, SUPERVISOR, CLINICIAN})
ADMIN_ONLY = frozenset({ADMIN})
CARE = frozenset({ADMIN, CLINICIAN})  # roles that open patients' records

# (method, route pattern) -> who may use it. A route missing here fails the test.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/"): EVERYONE,
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/static"): EVERYONE,
    ("GET", "/signin"): EVERYONE,
    ("POST", "/signin"): EVERYONE,
    ("GET", "/signin/code"): EVERYONE,
    ("POST", "/signin/code"): EVERYONE,
    ("GET", "/signin/enrol"): EVERYONE,
    ("POST", "/signin/enrol"): EVERYONE,
    ("GET", "/unlock"): EVERYONE,
    ("POST", "/unlock"): EVERYONE,
    ("GET", "/invite/{token}"): EVERYONE,
    ("POST", "/invite/{token}"): EVERYONE,
    ("GET", "/j/{token}"): EVERYONE,
    ("POST", "/j/{token}"): EVERYONE,
    ("GET", "/join"): frozenset({PATIENT}),
    ("GET", "/room"): frozenset({PATIENT}),
    ("GET", "/consent"): frozenset({PATIENT}),
    ("GET", "/checkin"): frozenset({PATIENT}),
    ("POST", "/checkin/safety"): frozenset({PATIENT}),
    ("POST", "/checkin/answer"): frozenset({PATIENT}),
    ("POST", "/help"): frozenset({PATIENT}),
    # The technology check: the patient's link on this device, no session needed.
    ("GET", "/techcheck"): frozenset({PATIENT}),
    ("POST", "/techcheck/result"): frozenset({PATIENT}),
    ("GET", "/ws/techcheck"): frozenset({PATIENT}),
    ("POST", "/patients/{patient_id}/tech-test"): CARE,
    ("POST", "/patients/{patient_id}/safety-check"): CARE,
    ("GET", "/patients/{patient_id}/measures"): CARE,
    ("GET", "/patients/{patient_id}/safety-plan"): CARE,
    ("POST", "/patients/{patient_id}/safety-plan"): CARE,
    # Homework: patients their own (by their link), staff who open the patient's record.
    ("GET", "/homework"): frozenset({PATIENT}),
    ("GET", "/homework/{assignment_id}"): frozenset({PATIENT}),
    ("POST", "/homework/{assignment_id}"): frozenset({PATIENT}),
    ("POST", "/patients/{patient_id}/homework"): CARE,
    ("POST", "/groups/{group_id}/homework"): CARE,
    ("GET", "/patients/{patient_id}/homework/{assignment_id}"): CARE,
    ("POST", "/patients/{patient_id}/homework/{assignment_id}/reviewed"): CARE,
    ("POST", "/consent/{kind}"): frozenset({PATIENT}),
    ("GET", "/consent/receipts"): frozenset({PATIENT}),
    ("GET", "/consent/receipt/{seq}"): frozenset({PATIENT}),
    ("GET", "/consent/receipt/{seq}/download"): frozenset({PATIENT}),
    ("POST", "/consent/receipt/{seq}/revoke"): frozenset({PATIENT}),
    ("POST", "/patients/{patient_id}/consents/verbal"): CARE,
    ("POST", "/patients/{patient_id}/consents/revoke"): CARE,
    # Per-patient attendance is part of the record: not for supervisors (no patient records).
    ("GET", "/sessions/{session_id}/attendance"): CARE,
    ("GET", "/sessions/{session_id}/attendance.csv"): CARE,
    ("POST", "/sessions/{session_id}/attendance/attest"): frozenset({CLINICIAN}),
    ("GET", "/attendance/weekly"): CARE,
    # Outcomes and aftercare are patient records: supervisors are refused, as for attendance.
    ("GET", "/outcomes"): CARE,
    ("GET", "/patients/{patient_id}/aftercare"): CARE,
    ("POST", "/patients/{patient_id}/aftercare"): CARE,
    ("GET", "/my/aftercare"): frozenset({PATIENT}),
    ("GET", "/my/aftercare/download"): frozenset({PATIENT}),
    ("GET", "/my/safety-plan"): frozenset({PATIENT}),
    ("GET", "/admin/templates"): ADMIN_ONLY,
    ("GET", "/admin/templates/{name}"): ADMIN_ONLY,
    ("POST", "/admin/templates/{name}"): ADMIN_ONLY,
    ("GET", "/admin/consents"): ADMIN_ONLY,
    ("POST", "/admin/consents"): ADMIN_ONLY,
    ("GET", "/admin/consents/{template_id}"): ADMIN_ONLY,
    # A session's room: its host (the demo clinician), an observing supervisor, its patients.
    ("GET", "/rooms/{room_id}"): frozenset({CLINICIAN, SUPERVISOR, PATIENT}),
    ("GET", "/ws/rooms/{room_id}"): frozenset({CLINICIAN, SUPERVISOR, PATIENT}),
    ("GET", "/dashboard"): STAFF,
    # The supervisor dashboard: supervisors (their program) and admins.
    ("GET", "/supervisor"): frozenset({ADMIN, SUPERVISOR}),
    ("GET", "/ws/dashboard"): frozenset({ADMIN, SUPERVISOR}),
    ("GET", "/groups/{group_id}"): STAFF,
    ("GET", "/patients/{patient_id}"): CARE,
    ("POST", "/patients/{patient_id}/join-links"): CARE,
    ("POST", "/join-links/{link_id}/revoke"): CARE,
    # Family sessions: clinicians issue a support person's link; the support person's own
    # pages open only through that link (no caller here holds one); patients see the release.
    ("POST", "/patients/{patient_id}/family-sessions"): CARE,
    ("POST", "/patients/{patient_id}/support-links"): CARE,
    ("POST", "/support-links/{link_id}/revoke"): CARE,
    ("GET", "/s/{token}"): EVERYONE,
    ("POST", "/s/{token}"): EVERYONE,
    ("GET", "/family"): frozenset(),
    ("POST", "/family/consent"): frozenset(),
    ("GET", "/family/room"): frozenset(),
    ("GET", "/family/release"): frozenset({PATIENT}),
    ("POST", "/family/release"): frozenset({PATIENT}),
    ("GET", "/admin"): ADMIN_ONLY,
    ("GET", "/admin/programs"): ADMIN_ONLY,
    ("POST", "/admin/programs"): ADMIN_ONLY,
    ("GET", "/admin/programs/{program_id}"): ADMIN_ONLY,
    ("POST", "/admin/programs/{program_id}"): ADMIN_ONLY,
    ("GET", "/admin/staff"): ADMIN_ONLY,
    ("POST", "/admin/staff"): ADMIN_ONLY,
    ("POST", "/admin/staff/{staff_id}/disable"): ADMIN_ONLY,
    ("POST", "/admin/staff/{staff_id}/enable"): ADMIN_ONLY,
    ("POST", "/admin/staff/{staff_id}/reset-mfa"): ADMIN_ONLY,
    ("POST", "/admin/staff/{staff_id}/invite"): ADMIN_ONLY,
    ("GET", "/admin/patients"): ADMIN_ONLY,
    ("GET", "/admin/patients/new"): ADMIN_ONLY,
    ("POST", "/admin/patients/new"): ADMIN_ONLY,
    ("GET", "/admin/patients/{patient_id}/edit"): ADMIN_ONLY,
    ("POST", "/admin/patients/{patient_id}/edit"): ADMIN_ONLY,
    ("GET", "/admin/groups"): ADMIN_ONLY,
    ("GET", "/admin/groups/new"): ADMIN_ONLY,
    ("POST", "/admin/groups/new"): ADMIN_ONLY,
    ("GET", "/admin/groups/{group_id}/edit"): ADMIN_ONLY,
    ("POST", "/admin/groups/{group_id}/edit"): ADMIN_ONLY,
    ("POST", "/api/auth/session"): EVERYONE,
    ("GET", "/api/auth/session"): STAFF,
    ("DELETE", "/api/auth/session"): EVERYONE,
    ("POST", "/api/activity"): STAFF,
    ("GET", "/api/programs"): STAFF,
    ("POST", "/api/programs"): ADMIN_ONLY,
    ("GET", "/api/staff"): frozenset({ADMIN, SUPERVISOR}),
    ("POST", "/api/staff"): ADMIN_ONLY,
    ("GET", "/api/patients"): CARE,
    ("POST", "/api/patients"): ADMIN_ONLY,
    ("GET", "/api/patients/{patient_id}"): CARE,
    ("POST", "/api/patients/{patient_id}/join-links"): CARE,
    ("DELETE", "/api/join-links/{link_id}"): CARE,
    ("GET", "/api/groups"): STAFF,
    ("POST", "/api/groups"): ADMIN_ONLY,
    ("GET", "/api/appointments"): STAFF,
    ("POST", "/api/appointments"): ADMIN_ONLY,
    ("GET", "/api/sessions"): STAFF,
    ("GET", "/admin/directory"): STAFF,
    ("GET", "/admin/directory/new"): ADMIN_ONLY,
    ("POST", "/admin/directory/new"): ADMIN_ONLY,
    ("GET", "/admin/directory/{entry_id}/edit"): ADMIN_ONLY,
    ("POST", "/admin/directory/{entry_id}/edit"): ADMIN_ONLY,
    ("POST", "/admin/directory/{entry_id}/delete"): ADMIN_ONLY,
    ("GET", "/admin/directory/import"): ADMIN_ONLY,
    ("POST", "/admin/directory/import"): ADMIN_ONLY,
    ("POST", "/admin/directory/import/apply"): ADMIN_ONLY,
    ("GET", "/admin/directory/export.csv"): STAFF,
    ("GET", "/admin/directory/stale"): STAFF,
    ("POST", "/api/directory/resolve"): STAFF,
    # Crisis events: every staff role passes the role check; who is on an event is checked
    # per event (an unknown event is 404 for everyone allowed).
    ("POST", "/api/crisis/events"): STAFF,
    ("GET", "/api/crisis/events"): STAFF,
    ("GET", "/api/crisis/events/{event_id}"): STAFF,
    ("GET", "/api/crisis/events/{event_id}/version"): STAFF,
    ("POST", "/api/crisis/events/{event_id}/ack"): STAFF,
    ("POST", "/api/crisis/events/{event_id}/steps"): STAFF,
    ("POST", "/api/crisis/events/{event_id}/assign"): STAFF,
    ("POST", "/api/crisis/events/{event_id}/signoff"): frozenset({ADMIN, SUPERVISOR}),
    ("GET", "/api/crisis/breaches"): frozenset({ADMIN, SUPERVISOR}),
    ("GET", "/api/crisis/oncall"): STAFF,
    ("POST", "/api/crisis/oncall"): ADMIN_ONLY,
    ("DELETE", "/api/crisis/oncall/{shift_id}"): ADMIN_ONLY,
    ("GET", "/api/crisis/settings/{program_id}"): ADMIN_ONLY,
    ("PUT", "/api/crisis/settings/{program_id}"): ADMIN_ONLY,
    # The event page and its forms: the role check here, who is on the event per event.
    ("GET", "/crisis/events/{event_id}"): STAFF,
    ("POST", "/crisis/events/{event_id}/ack"): STAFF,
    ("POST", "/crisis/events/{event_id}/steps"): STAFF,
    ("POST", "/crisis/events/{event_id}/signoff"): frozenset({ADMIN, SUPERVISOR}),
    ("POST", "/crisis/events/{event_id}/break-glass"): frozenset({ADMIN, SUPERVISOR}),
    ("GET", "/crisis/break-glass"): frozenset({ADMIN, SUPERVISOR}),
    ("POST", "/signout"): EVERYONE,
    # Handouts: the library is kept by clinicians and admins; a handout is read by the
    # program's staff and patients (another program's answers 404).
    ("GET", "/handouts"): CARE,
    ("POST", "/handouts"): CARE,
    ("GET", "/handouts/{handout_id}"): CARE,
    ("POST", "/handouts/{handout_id}/versions"): CARE,
    ("POST", "/handouts/{handout_id}/attachments"): CARE,
    ("POST", "/handouts/{handout_id}/attachments/{attachment_id}/delete"): CARE,
    ("GET", "/handouts/{handout_id}/v/{version}"): EVERYONE - {ANON},
    ("GET", "/handouts/{handout_id}/v/{version}/pages"): EVERYONE - {ANON},
    ("GET", "/handouts/{handout_id}/v/{version}/file"): EVERYONE - {ANON},
    ("GET", "/my/handouts"): frozenset({PATIENT}),
    # The daily mood check: the patient's own page; its reminder setting is the program's.
    ("GET", "/mood"): frozenset({PATIENT}),
    ("POST", "/mood"): frozenset({PATIENT}),
    ("GET", "/admin/programs/{program_id}/mood"): ADMIN_ONLY,
    ("POST", "/admin/programs/{program_id}/mood"): ADMIN_ONLY,
}
# Routes that end the caller's session run last for each caller.
LAST = [
    ("POST", "/consent/receipt/{seq}/revoke"),  # closes the patient's gate
    ("POST", "/signout"),
    ("DELETE", "/api/auth/session"),
]


def _routes(server: RunningServer) -> list[tuple[str, str]]:
    found = set()
    for route in server.app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        resource = route.resource
        assert resource is not None
        canonical = resource.canonical
        found.add((route.method, "/static" if canonical.startswith("/static") else canonical))
    return sorted(found, key=lambda r: (LAST.index(r) if r in LAST else -1, r))


def _denied(response: aiohttp.ClientResponse) -> bool:
    if response.status in (401, 403, 423):
        return True
    location = response.headers.get("Location", "")
    return response.status in (302, 303) and location.startswith(("/signin?next=", "/unlock?next="))


async def _csrf(client: aiohttp.ClientSession, path: str) -> str:
    async with client.get(path) as response:
        match = CSRF.search(await response.text())
    assert match, f"no form token on {path}"
    return match.group(1)


async def test_every_route_allows_and_refuses_each_role_as_the_matrix_says(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    routes = _routes(server)
    missing = [route for route in routes if route not in MATRIX]
    assert not missing, f"routes without an authorization entry: {missing}"
    stale = [route for route in MATRIX if route not in routes]
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"

    group = demo["groups"][0]
    patient = group["patients"][1]
    await consent_group(server, demo)
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        spare = await admin.post(
            "/api/staff",
            json={
                "program_id": demo["program"]["id"],
                "email": "spare@demo.iop.example",
                "display_name": "Spare",
                "role": "clinician",
                "password": "a long spare password",
            },
        )
        spare_id = (await spare.json())["id"]
        await enrol_totp(server, spare_id)
        spare_link = await admin.post(
            f"/api/patients/{patient['id']}/join-links", json={"standing": True}
        )
        link_id = (await spare_link.json())["id"]
    params = {
        "group_id": group["id"],
        "patient_id": patient["id"],
        "program_id": demo["program"]["id"],
        "staff_id": spare_id,
        "link_id": link_id,
        "room_id": group["patients"][0]["join_session_id"],
        "kind": "telehealth",
        "name": "group-90",
        "session_id": group["patients"][0]["join_session_id"],
        "seq": "1",  # the calling patient's first consent (consent_group goes in order)
        "template_id": "00000000-0000-0000-0000-000000000000",
        "entry_id": "00000000-0000-0000-0000-000000000000",
        "token": "not-a-real-token-but-long-enough-0000",
        "event_id": "00000000-0000-0000-0000-000000000000",
        "shift_id": "00000000-0000-0000-0000-000000000000",
        "assignment_id": "00000000-0000-0000-0000-000000000000",
        "handout_id": "00000000-0000-0000-0000-000000000000",
        "attachment_id": "00000000-0000-0000-0000-000000000000",
        "version": "1",
    }
    passwords = {m["role"]: m["password"] for m in demo["staff"]}

    callers: dict[str, aiohttp.ClientSession] = {}
    callers[ANON] = server.client()
    callers[PATIENT] = server.client()
    async with callers[PATIENT].get(group["patients"][0]["join_url"]) as opened:
        assert opened.status == 200
    for role in (ADMIN, SUPERVISOR, CLINICIAN):
        callers[role] = await signed_in(server, *staff_login(demo, role))
    tokens = {
        who: await _csrf(client, "/signin" if who in (ANON, PATIENT) else "/dashboard")
        for who, client in callers.items()
    }
    failures = []
    try:
        for who, client in callers.items():
            for method, pattern in routes:
                path = "/static/app.css" if pattern == "/static" else pattern.format(**params)
                kwargs: dict[str, Any] = {"allow_redirects": False}
                if method != "GET" and path.startswith("/api/"):
                    kwargs["json"] = {}
                elif method != "GET":
                    form = {"csrf_token": tokens[who]}
                    if pattern == "/unlock" and who in passwords:
                        form["password"] = passwords[who]
                    kwargs["data"] = form
                async with client.request(method, path, **kwargs) as response:
                    await response.read()
                    refused = _denied(response)
                    expected = who in MATRIX[(method, pattern)]
                    if refused == expected:
                        failures.append(f"{who} {method} {pattern}: {response.status}")
                    # Any answer but a static asset may show patient data: never cached.
                    cache = response.headers.get("Cache-Control")
                    if pattern != "/static" and cache != "no-store":
                        failures.append(f"{who} {method} {pattern}: Cache-Control {cache}")
    finally:
        for client in callers.values():
            await client.close()
    assert not failures, "\n".join(failures)

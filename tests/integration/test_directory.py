"""The local emergency directory: forms, CSV import (dry run, then apply), export, staleness."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server import audit
from server.appkeys import CLOCK, ENGINE
from tests.conftest import CSRF, RunningServer, signed_in, staff_login

HEADER = (
    "state,county,zip,psap_phone,crisis_line,mobile_crisis,ed_name,ed_address,ed_phone,"
    "police_nonemergency,verified_on,owner,example"
)
HIDDEN = re.compile(r'name="(payload|digest|signature)" value="([^"]*)"')


@pytest.fixture
async def seeded(any_server: RunningServer) -> dict[str, Any]:
    """The demo program on both engines."""
    return await any_server.seed_demo()


def _days_ago(running: RunningServer, days: int) -> str:
    return (running.app[CLOCK].now().date() - dt.timedelta(days=days)).isoformat()


async def _token(client: aiohttp.ClientSession, page: str) -> str:
    text = await (await client.get(page)).text()
    found = CSRF.search(text)
    assert found is not None, f"no form token on {page}"
    return found.group(1)


async def _post_form(
    client: aiohttp.ClientSession, path: str, form: dict[str, str], page: str | None = None
) -> aiohttp.ClientResponse:
    token = await _token(client, page or path)
    response = await client.post(path, data={"csrf_token": token, **form}, allow_redirects=False)
    await response.read()
    return response


async def _preview(client: aiohttp.ClientSession, body: str | bytes) -> tuple[int, str]:
    token = await _token(client, "/admin/directory/import")
    form = aiohttp.FormData()
    form.add_field("csrf_token", token, content_type="text/plain")
    data = body.encode() if isinstance(body, str) else body
    form.add_field("file", data, filename="directory.csv", content_type="text/csv")
    async with client.post("/admin/directory/import", data=form) as response:
        return response.status, await response.text()


async def _apply(client: aiohttp.ClientSession, report: str) -> aiohttp.ClientResponse:
    hidden = dict(HIDDEN.findall(report))
    assert set(hidden) == {"payload", "digest", "signature"}, "the report offers no apply form"
    token = await _token(client, "/admin/directory/import")
    form = aiohttp.FormData()
    for name, value in {"csrf_token": token, **hidden}.items():
        form.add_field(name, value, content_type="text/plain")
    response = await client.post("/admin/directory/import/apply", data=form, allow_redirects=False)
    await response.read()
    return response


async def _export(client: aiohttp.ClientSession) -> str:
    async with client.get("/admin/directory/export.csv") as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        return await response.text()


async def _resolve(client: aiohttp.ClientSession, **where: str) -> dict[str, Any]:
    async with client.post("/api/directory/resolve", json=where) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


def _count(report: str, name: str) -> int:
    found = re.search(rf'id="count-{name}">(\d+)<', report)
    assert found is not None, f"no {name} count in the report"
    return int(found.group(1))


@pytest.fixture
async def admin(
    any_server: RunningServer, seeded: dict[str, Any]
) -> AsyncIterator[aiohttp.ClientSession]:
    async with await signed_in(any_server, *staff_login(seeded, "admin")) as client:
        yield client


def _fresno(running: RunningServer, **overrides: str) -> dict[str, str]:
    row = {
        "state": "CA",
        "county": "Fresno",
        "zip": "",
        "psap_phone": "(559) 621-7000",
        "crisis_line": "(559) 600-6000",
        "mobile_crisis": "",
        "ed_name": "Community Regional Medical Center",
        "ed_address": "2823 Fresno St, Fresno, CA 93721",
        "ed_phone": "(559) 459-6000",
        "police_nonemergency": "(559) 621-7000",
        "verified_on": _days_ago(running, 10),
        "owner": "Program operations",
    }
    return row | overrides


# Import ------------------------------------------------------------------------------------


async def test_import_rejects_malformed_rows_with_their_line_numbers_and_changes_nothing(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    before = await _export(admin)
    recent = _days_ago(any_server, 5)
    body = "\r\n".join(
        [
            HEADER,
            f"CA,Fresno,93701,(559) 621-7000,,,,,,,{recent},Ops,no",  # 2: valid
            f"CA,Fresno,93702,911,,,,,,,{recent},Ops,no",  # 3: 911 is not a PSAP line
            f"CA,,93703,(559) 621-7000,,,,,,,{recent},Ops,no",  # 4: no county
            "CA,Fresno,93704,(559) 621-7000,,,,,,,2026-02-30,Ops,no",  # 5: no such date
            f'CA,"Fresno",93701,559-621-7000,,,,,,,{recent},Ops,no',  # 6: repeats line 2
            f"CA,Fresno,93705,(559) 621-7000,,,,,,,{recent},Ops",  # 7: a value short
            "",
        ]
    )
    status, report = await _preview(admin, body)
    assert status == 200
    assert _count(report, "rejected") == 5
    rejected = re.findall(r"<tr><td>(\d+)</td><td>([a-z_]*)</td><td>([^<]+)</td></tr>", report)
    by_line = {int(line): (column, reason) for line, column, reason in rejected}
    assert set(by_line) == {3, 4, 5, 6, 7}
    assert by_line[3][0] == "psap_phone" and "10-digit" in by_line[3][1]
    assert by_line[4] == ("county", "required")
    assert by_line[5][0] == "verified_on"
    assert by_line[6][0] == "zip" and "line 2" in by_line[6][1]
    assert "12 values" in by_line[7][1]
    assert 'id="apply"' not in report  # a file with a bad line is never applied
    assert await _export(admin) == before


async def test_import_refuses_a_file_with_an_unknown_or_missing_column(
    admin: aiohttp.ClientSession,
) -> None:
    status, report = await _preview(admin, HEADER + ",fax\r\n")
    assert status == 400
    assert "unknown column &#39;fax&#39;" in report
    status, report = await _preview(admin, HEADER.replace("owner,", "") + "\r\n")
    assert status == 400
    assert "missing column &#39;owner&#39;" in report


async def test_dry_run_writes_nothing_and_apply_writes_exactly_what_it_previewed(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    created = await _post_form(admin, "/admin/directory/new", _fresno(any_server))
    assert created.status == 303
    before = await _export(admin)
    recent = _days_ago(any_server, 1)
    body = "\n".join(
        [
            HEADER,
            # Updates the Fresno county-wide row: a new crisis line, verified yesterday.
            f"CA,Fresno County,,(559) 621-7000,(559) 600-6001,,Community Regional Medical "
            f'Center,"2823 Fresno St, Fresno, CA 93721",(559) 459-6000,(559) 621-7000,{recent},'
            "Program operations,no",
            f"CA,Fresno,93701,(559) 621-7001,,,,,,,{recent},Ops,no",
            f"CA,Madera,,(559) 675-7770,,,,,,,{recent},Ops,no",
        ]
    )
    status, report = await _preview(admin, body)
    assert status == 200
    assert (_count(report, "add"), _count(report, "update")) == (2, 1)
    assert _count(report, "rejected") == 0
    assert "county, crisis line, verified on" in report
    assert await _export(admin) == before  # the dry run changed nothing

    applied = await _apply(admin, report)
    assert applied.status == 303
    after = await _export(admin)
    lines = after.strip().splitlines()
    assert "CA,Fresno County,,(559) 621-7000,(559) 600-6001," in after
    assert f"CA,Fresno,93701,(559) 621-7001,,,,,,,{recent},Ops,no" in lines
    assert f"CA,Madera,,(559) 675-7770,,,,,,,{recent},Ops,no" in lines
    assert len(lines) == len(before.strip().splitlines()) + 2

    # Confirming the same preview again would now do something else: refused.
    again = await _apply(admin, report)
    assert again.status == 409
    assert await _export(admin) == after
    async with any_server.app[ENGINE].connect() as conn:
        found = await conn.execute(
            audit.audit_log.select().where(audit.audit_log.c.action.like("directory.%"))
        )
        actions = [row.action for row in found]
    assert actions.count("directory.entry_added") == 2
    assert actions.count("directory.entry_updated") == 1
    assert "directory.imported" in actions


async def test_a_tampered_confirmation_is_refused(admin: aiohttp.ClientSession) -> None:
    body = f"{HEADER}\nCA,Kern,,(661) 861-3110,,,,,,,2026-01-05,Ops,no\n"
    _, report = await _preview(admin, body)
    forged = report.replace("(661) 861-3110", "x").replace(
        re.search(r'name="digest" value="([^"]*)"', report).group(1),  # type: ignore[union-attr]
        "0" * 64,
    )
    refused = await _apply(admin, forged)
    assert refused.status == 400
    assert "Kern" not in await _export(admin)


async def test_export_then_import_round_trips_unchanged(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    await _post_form(admin, "/admin/directory/new", _fresno(any_server))
    await _post_form(
        admin,
        "/admin/directory/new",
        _fresno(any_server, zip="93701", ed_address='"Suite 2", 1 Main, Fresno', owner="A, B"),
    )
    exported = await _export(admin)
    assert exported.splitlines()[0] == HEADER
    status, report = await _preview(admin, exported)
    assert status == 200
    assert _count(report, "unchanged") == 4  # two shipped examples and the two rows above
    assert (_count(report, "add"), _count(report, "update"), _count(report, "rejected")) == (
        0,
        0,
        0,
    )
    assert 'id="apply"' not in report
    assert await _export(admin) == exported


# Staleness -----------------------------------------------------------------------------------


async def test_staleness_report_lists_only_entries_older_than_the_threshold(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    for county, age in (("Tulare", 200), ("Kings", 100), ("Merced", 181), ("Mono", 180)):
        made = await _post_form(
            admin,
            "/admin/directory/new",
            _fresno(any_server, county=county, verified_on=_days_ago(any_server, age)),
        )
        assert made.status == 303
    default = await (await admin.get("/admin/directory/stale")).text()
    assert "Tulare, CA" in default and "Merced, CA" in default
    assert "Kings, CA" not in default and "Mono, CA" not in default
    assert default.index("Tulare, CA") < default.index("Merced, CA")  # oldest first
    assert "verified 200 days ago" in default
    shorter = await (await admin.get("/admin/directory/stale?days=90")).text()
    assert all(f"{c}, CA" in shorter for c in ("Tulare", "Kings", "Merced", "Mono"))
    assert "Example County" not in shorter  # shipped today
    bad = await admin.get("/admin/directory/stale?days=soon")
    assert bad.status == 400
    assert "days must be a whole number" in await bad.text()
    listing = await (await admin.get("/admin/directory")).text()
    assert "stale: verified 200 days ago" in listing
    assert "stale: verified 100 days ago" not in listing
    assert "2 entries were last verified more than 180 days ago" in listing
    filtered = await (await admin.get("/admin/directory?county=Kings")).text()
    assert 'id="stale-alert"' in filtered  # the alert does not hide behind a filter


# Resolution ----------------------------------------------------------------------------------


async def test_example_rows_are_marked_and_national_numbers_always_resolve(
    admin: aiohttp.ClientSession,
) -> None:
    listing = await (await admin.get("/admin/directory")).text()
    assert "Example County, CA" in listing
    assert listing.count("EXAMPLE - not a real number") >= 10  # beside every example number
    assert 'href="tel:+15555550101"' not in listing  # example numbers are not dialable links
    assert 'id="stale-alert"' not in listing
    example = await _resolve(admin, zip="00000")
    assert example["found"] is True
    for entry in example["local"]:
        assert entry["example"] is True
        assert entry["notice"] == "EXAMPLE - not a real number"
    nowhere = await _resolve(admin, zip="59001", county="Nowhere")
    assert nowhere["found"] is False and nowhere["local"] == []
    for answer in (example, nowhere):
        numbers = {n["number"]: n for n in answer["national"]}
        assert set(numbers) == {"911", "988", "18002221222"}
        assert numbers["988"]["text"] is True
        assert numbers["18002221222"]["display"] == "1-800-222-1222"


async def test_resolve_prefers_the_zip_entry_then_the_county_entry(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    await _post_form(admin, "/admin/directory/new", _fresno(any_server))
    await _post_form(
        admin,
        "/admin/directory/new",
        _fresno(any_server, zip="93701", psap_phone="(559) 621-7001", verified_on="2020-01-02"),
    )
    answer = await _resolve(admin, zip="93701-0001", county="fresno county", state="ca")
    assert [(e["matched_by"], e["phones"]["psap_phone"]) for e in answer["local"]] == [
        ("zip", "5596217001"),
        ("county", "5596217000"),
    ]
    first = answer["local"][0]
    assert first["verified_on"] == "2020-01-02" and first["stale"] is True
    assert answer["local"][1]["stale"] is False
    by_county = await _resolve(admin, zip="93799", county="Fresno")
    assert [e["matched_by"] for e in by_county["local"]] == ["county"]
    by_zip_only = await _resolve(admin, zip="93701")
    assert [e["matched_by"] for e in by_zip_only["local"]] == ["zip", "county"]
    async with admin.post("/api/directory/resolve", json={"zip": "abc"}) as bad:
        assert bad.status == 422


# Forms and who may use them ------------------------------------------------------------------


async def test_entry_form_shows_errors_beside_fields_then_edits_and_deletes(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    bad = await _post_form(
        admin,
        "/admin/directory/new",
        _fresno(any_server, psap_phone="911", zip="9370", verified_on="tomorrow", county=""),
    )
    assert bad.status == 400
    text = await bad.text()
    for name in ("psap_phone", "zip", "verified_on", "county"):
        assert f'id="e-{name}"' in text
    assert 'value="911"' in text
    fictional = await _post_form(
        admin, "/admin/directory/new", _fresno(any_server, crisis_line="(559) 555-0123")
    )
    assert fictional.status == 400
    assert "mark the row as an example" in await fictional.text()
    created = await _post_form(admin, "/admin/directory/new", _fresno(any_server))
    assert created.status == 303
    duplicate = await _post_form(admin, "/admin/directory/new", _fresno(any_server))
    assert duplicate.status == 400
    listing = await (await admin.get("/admin/directory?county=Fresno%20County")).text()
    entry_id = re.search(r'id="entry-([0-9a-f-]{36})"', listing).group(1)  # type: ignore[union-attr]
    assert "Example County" not in listing
    edited = await _post_form(
        admin,
        f"/admin/directory/{entry_id}/edit",
        _fresno(any_server, mobile_crisis="559-600-6002"),
    )
    assert edited.status == 303
    assert "(559) 600-6002" in await _export(admin)
    deleted = await _post_form(
        admin, f"/admin/directory/{entry_id}/delete", {}, page="/admin/directory"
    )
    assert deleted.status == 303
    assert "Fresno" not in await _export(admin)
    async with any_server.app[ENGINE].connect() as conn:
        rows = await audit.rows_for(conn, "directory_entry", entry_id)
    assert [r["action"] for r in rows] == [
        "directory.entry_created",
        "directory.entry_updated",
        "directory.entry_deleted",
    ]
    assert rows[1]["detail"] == {"fields": ["mobile_crisis"]}
    assert all(r["actor_role"] == "admin" for r in rows)


@pytest.mark.parametrize("role", ["supervisor", "clinician"])
async def test_supervisors_and_clinicians_read_but_cannot_write(
    any_server: RunningServer, seeded: dict[str, Any], role: str
) -> None:
    async with await signed_in(any_server, *staff_login(seeded, role)) as reader:
        listing = await reader.get("/admin/directory")
        assert listing.status == 200
        page = await listing.text()
        assert "Example County" in page and "Add an entry" not in page
        assert (await _resolve(reader, zip="00000"))["found"] is True
        token = await _token(reader, "/admin/directory")
        for path in ("/admin/directory/new", "/admin/directory/import"):
            refused = await reader.post(
                path, data={"csrf_token": token, **_fresno(any_server)}, allow_redirects=False
            )
            assert refused.status == 403
        assert (await reader.get("/admin/directory/import")).status == 403


async def test_forms_without_their_token_are_refused(
    any_server: RunningServer, admin: aiohttp.ClientSession
) -> None:
    missing = await admin.post(
        "/admin/directory/new", data=_fresno(any_server), allow_redirects=False
    )
    assert missing.status == 400
    form = aiohttp.FormData()
    form.add_field("file", f"{HEADER}\n".encode(), filename="d.csv", content_type="text/csv")
    upload = await admin.post("/admin/directory/import", data=form)
    assert upload.status == 400
    assert "Fresno" not in await _export(admin)


async def test_a_file_larger_than_other_request_bodies_imports_in_full(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    recent = _days_ago(server, 2)
    rows = [
        f"CA,Los Angeles,{90001 + n:05d},(213) 485-{2000 + n:04d},(800) 854-7771,,"
        f'Example Memorial Hospital {n},"{n} Long Street Name Avenue, Los Angeles, CA",'
        f"(213) 485-{4000 + n:04d},(877) 275-5273,{recent},County operations desk,no"
        for n in range(800)
    ]
    body = "\r\n".join([HEADER, *rows]) + "\r\n"
    assert len(body) > 100 * 1024  # every other form and JSON body stops at 64 KiB
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        status, report = await _preview(admin, body)
        assert status == 200
        assert _count(report, "add") == 800 and _count(report, "rejected") == 0
        applied = await _apply(admin, report)
        assert applied.status == 303
        assert applied.headers["Location"] == "/admin/directory?added=800&updated=0"
        exported = await _export(admin)
    assert len(exported.strip().splitlines()) == 1 + 2 + 800

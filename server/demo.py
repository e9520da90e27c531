"""The demo program: fictional staff and patients so a newcomer can try every screen."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from rooms.schedule import zone
from server import audit
from server.accounts import joinlinks, mfa
from server.accounts import store as accounts
from server.accounts.store import hash_password
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import AppointmentIn, GroupIn, PatientIn, ProgramIn, SlotIn, StaffIn
from server.consent import ledger as consent_ledger
from server.consent.templates import document_for, session_terms
from server.consent.templates import ensure_shipped as ensure_consent_templates
from server.consent.templates import latest as latest_consent
from server.crisis import oncall
from server.phi import Keyring
from server.storage.tables import patients, programs

DEMO_PROGRAM = "Demo Evening IOP (example data)"
DEMO_TIME_ZONE = "America/Los_Angeles"
# 555-0100 to 555-0199 are reserved for fiction: none of these numbers reaches anyone.
DEMO_STAFF = (
    ("admin", "admin@demo.iop.example", "Dana Admin (demo)", None),
    ("supervisor", "supervisor@demo.iop.example", "Sam Supervisor (demo)", "LCSW 00000 (demo)"),
    ("clinician", "clinician1@demo.iop.example", "Casey Lead (demo)", "LMFT 00000 (demo)"),
    (
        "clinician",
        "clinician2@demo.iop.example",
        "Jordan Cofacilitator (demo)",
        "ACSW 00000 (demo)",
    ),
)
DEMO_PATIENTS = ("Avery", "Blake", "Cameron", "Devon", "Emerson", "Finley", "Harper", "Riley")
WEEKLY = ("mon", "tue", "wed", "fri")


class DemoExistsError(Exception):
    """The demo program has already been created in this database."""


async def database_is_empty(engine: AsyncEngine) -> bool:
    """True when no program exists yet."""
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(programs.c.id).limit(1))).first() is None


async def seed_demo(
    engine: AsyncEngine,
    keyring: Keyring,
    base_url: str,
    now: dt.datetime,
    horizon_days: int,
    link_grace_minutes: int = 60,
) -> dict[str, Any]:
    """Create the demo program and return how to sign in to it (passwords shown once)."""
    local_today = now.astimezone(zone(DEMO_TIME_ZONE)).date()
    async with engine.begin() as conn:
        taken = await conn.execute(sa.select(programs.c.id).where(programs.c.name == DEMO_PROGRAM))
        if taken.first() is not None:
            raise DemoExistsError("the demo program already exists in this database")
        program = await catalog.create_program(
            conn,
            ProgramIn(name=DEMO_PROGRAM, time_zone=DEMO_TIME_ZONE, phone="(555) 010-0100"),
            now,
        )
        staff_out: list[dict[str, str]] = []
        clinicians: list[str] = []
        for role, email, name, licence in DEMO_STAFF:
            password = secrets.token_urlsafe(12)
            record = await catalog.create_staff(
                conn,
                StaffIn(
                    program_id=program["id"],
                    email=email,
                    display_name=name,
                    role=role,
                    licence=licence,
                    password=password,
                ),
                await hash_password(password),
                now,
            )
            # Demo accounts come with the second factor already set up, so a newcomer adds
            # the printed key to an authenticator app (or scripts compute codes from it).
            secret = mfa.new_secret()
            step = int(now.timestamp()) // 30 - 2
            await accounts.enrol_totp(conn, keyring, record["id"], secret, step, now)
            staff_out.append(
                {
                    "role": role,
                    "email": email,
                    "password": password,
                    "totp_secret": secret,
                    "id": record["id"],
                }
            )
            if role == "clinician":
                clinicians.append(record["id"])
        patients_out: list[dict[str, str]] = []
        for number, first in enumerate(DEMO_PATIENTS, start=1):
            patient = await catalog_patients.create_patient(
                conn,
                keyring,
                PatientIn(
                    program_id=program["id"],
                    legal_name=f"{first} Example",
                    display_name=first,
                    date_of_birth=dt.date(1980 + number, number, 10 + number),
                    home_address=f"{100 + number} Example Street, Sacramento, CA 95814 (example)",
                    backup_phone=f"(555) 010-{100 + number:04d}",
                    time_zone=DEMO_TIME_ZONE,
                ),
                now,
            )
            patients_out.append({"id": patient["id"], "display_name": first})
        group = await catalog_schedule.create_group(
            conn,
            GroupIn(
                program_id=program["id"],
                name="Evening IOP Group A",
                lead_clinician_id=clinicians[0],
                cofacilitator_id=clinicians[1],
                member_ids=[p["id"] for p in patients_out],
                time_zone=DEMO_TIME_ZONE,
                schedule=[SlotIn(day=day, start="18:00", end="21:00") for day in WEEKLY],
                template="evening-group-180",
                starts_on=local_today,
            ),
            now,
            horizon_days,
        )
        tomorrow_10 = dt.datetime.combine(
            local_today + dt.timedelta(days=1), dt.time(10, 0), tzinfo=zone(DEMO_TIME_ZONE)
        )
        appointment = await catalog_schedule.create_appointment(
            conn,
            AppointmentIn(
                program_id=program["id"],
                patient_id=patients_out[0]["id"],
                clinician_id=clinicians[0],
                template="individual-50",
                starts_at=tomorrow_10,
                minutes=50,
            ),
            now,
        )
        for patient in patients_out:
            slots = await joinlinks.patient_sessions(conn, patient["id"], now)
            link = await joinlinks.issue(
                conn,
                patient_id=patient["id"],
                session_id=slots[0].session_id if slots else None,
                issued_by=clinicians[0],
                now=now,
                grace=dt.timedelta(minutes=link_grace_minutes),
                standing_for=dt.timedelta(days=30),
            )
            patient["join_url"] = f"{base_url}/j/{link.token}"
            patient["join_session_id"] = link.session_id or ""
        # An on-call roster so crisis events page someone. The demo has one supervisor, so
        # the clinicians stand in as backup and medical director.
        by_email = {member["email"]: member["id"] for member in staff_out}
        roster = (
            ("primary", by_email["supervisor@demo.iop.example"]),
            ("backup", by_email["clinician2@demo.iop.example"]),
            ("medical_director", by_email["clinician1@demo.iop.example"]),
        )
        oncall_out = []
        for role, staff_id in roster:
            shift = await oncall.add_shift(
                conn,
                program_id=program["id"],
                role=role,
                staff_id=staff_id,
                starts_at=now - dt.timedelta(hours=1),
                ends_at=now + dt.timedelta(days=horizon_days),
                created_by=None,
                now=now,
            )
            oncall_out.append({"role": role, "staff_id": staff_id, "id": shift["id"]})
        await audit.record(
            conn,
            keyring,
            actor=audit.SYSTEM,
            action="demo.seeded",
            now=now,
            target_type="program",
            target_id=program["id"],
        )
    return {
        "base_url": base_url,
        "program": {"id": program["id"], "name": program["name"]},
        "staff": staff_out,
        "groups": [{"id": group["id"], "name": group["name"], "patients": patients_out}],
        "oncall": oncall_out,
        "family": await seed_family(engine, keyring, patients_out[-1], clinicians[0], now),
        "appointments": [
            {
                "id": appointment["id"],
                "session_id": appointment["session_id"],
                "patient_id": appointment["patient_id"],
                "clinician_id": appointment["clinician_id"],
                "starts_at": appointment["starts_at"],
            }
        ],
    }


async def seed_family(
    engine: AsyncEngine,
    keyring: Keyring,
    patient: dict[str, str],
    clinician_id: str,
    now: dt.datetime,
) -> dict[str, str]:
    """A family session for a demo patient with a support person and a signed release, so
    the clinician can issue the support person's link straight away."""
    local_today = now.astimezone(zone(DEMO_TIME_ZONE)).date()
    # Four days on: always after the group's next meeting (never more than three days
    # away), so the patient's printed link stays the one for the group.
    starts = dt.datetime.combine(
        local_today + dt.timedelta(days=4), dt.time(16, 0), tzinfo=zone(DEMO_TIME_ZONE)
    )
    person = {"name": "Jamie Example", "relationship": "sister", "phone": "(555) 010-0150"}
    async with engine.begin() as conn:
        await ensure_consent_templates(conn, now)
        program_id = await conn.scalar(
            sa.select(patients.c.program_id).where(patients.c.id == patient["id"])
        )
        await conn.execute(
            patients.update()
            .where(patients.c.id == patient["id"])
            .values(
                support_person_enc=keyring.seal(
                    json.dumps(person),
                    context=catalog_patients.patient_context(patient["id"], "support_person"),
                )
            )
        )
        appointment = await catalog_schedule.create_appointment(
            conn,
            AppointmentIn(
                program_id=program_id,
                patient_id=patient["id"],
                clinician_id=clinician_id,
                kind="family",
                starts_at=starts,
            ),
            now,
        )
        terms = await session_terms(conn, appointment["session_id"])
        template = await latest_consent(conn, "family_release")
        assert terms is not None and template is not None
        document = await document_for(conn, template, terms.values)
        await consent_ledger.append(
            conn,
            keyring,
            patient_id=patient["id"],
            kind="family_release",
            event="consented",
            template_id=template.id,
            template_version=template.version,
            text_sha256=document.sha256(),
            language=template.language,
            session_id=terms.session_id,
            presented_at=now,
            consented_at=now,
            method="e_signature",
            signer_role="patient",
            signature=f"{patient['display_name']} Example",
            recorded_at=now,
        )
    return {
        "session_id": appointment["session_id"],
        "patient_id": patient["id"],
        "clinician_id": clinician_id,
        "support_phone_last4": "0150",
    }


def describe(demo: dict[str, Any]) -> str:
    """A console summary of the demo program for a person."""
    lines = [
        f"Demo program created: {demo['program']['name']}",
        f"Open {demo['base_url']}/ and sign in with one of these (passwords are shown once):",
    ]
    for member in demo["staff"]:
        lines.append(f"  {member['role']:<10} {member['email']:<32} {member['password']}")
    lines.append("Two-step sign-in keys (add one to an authenticator app, or scan at enrolment):")
    for member in demo["staff"]:
        lines.append(f"  {member['email']:<32} {member['totp_secret']}")
    for group in demo["groups"]:
        lines.append(f"Group '{group['name']}' (Mon/Tue/Wed/Fri 18:00-21:00 Pacific).")
        lines.append("Patients' join links for their next session:")
        for patient in group["patients"]:
            lines.append(f"  {patient['display_name']:<9} {patient['join_url']}")
    lines.append("Every person, address and phone number in the demo is fictional.")
    return "\n".join(lines)

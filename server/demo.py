"""The demo program: fictional staff and patients so a newcomer can try every screen."""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from care.aftercare import parse_plan as parse_aftercare
from care.mood import MoodEntry
from care.worksheets import worksheet
from crisis.safety_plan import parse_plan as parse_safety_plan
from rooms.schedule import zone
from rooms.techcheck import Thresholds, parse_result
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
from server.crisis import oncall, safety_data
from server.handouts import store as handout_store
from server.homework import store as homework
from server.mood import store as mood_store
from server.outcomes import store as aftercare_store
from server.phi import Keyring
from server.storage.tables import patients, programs, sessions
from server.techcheck import store as tech_checks

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
        # Every demo link opens the group's next session: it is what the demo shows, and
        # patient 1's one-on-one at 10:00 tomorrow comes first from Friday night to Sunday.
        next_group_session = (
            await conn.execute(
                sa.select(sessions.c.id)
                .where(sessions.c.group_id == group["id"], sessions.c.ends_at > now)
                .order_by(sessions.c.starts_at)
                .limit(1)
            )
        ).scalar()
        for patient in patients_out:
            link = await joinlinks.issue(
                conn,
                patient_id=patient["id"],
                session_id=next_group_session,
                issued_by=clinicians[0],
                now=now,
                grace=dt.timedelta(minutes=link_grace_minutes),
                standing_for=dt.timedelta(days=30),
            )
            patient["join_url"] = f"{base_url}/j/{link.token}"
            patient["join_session_id"] = link.session_id or ""
        await seed_demo_aftercare(conn, keyring, patients_out[-1]["id"], clinicians[0], now)
        await _demo_homework(conn, keyring, program["id"], group, patients_out, clinicians[0], now)
        await seed_mood_entries(conn, keyring, patients_out, local_today, now)
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
        await seed_tech_checks(conn, [p["id"] for p in patients_out], now)
        await seed_demo_handout(conn, program["id"], clinicians[0], now)
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


async def seed_demo_aftercare(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, clinician_id: str, now: dt.datetime
) -> None:
    """A safety plan and an aftercare plan for one demo patient (fictional numbers only)."""
    today = now.astimezone(zone(DEMO_TIME_ZONE)).date()
    safety = parse_safety_plan(
        {
            "warning_signs": "Staying in bed past noon; skipping meals; not answering texts.",
            "internal_coping": "Box breathing; a walk around the block; a shower and music.",
            "distraction": "The library; coffee with my cousin.",
            "ask_for_help": "My sister (555) 555-0131 (example).",
            "professionals": "988; the program (555) 010-0100; the nearest emergency department.",
            "safe_environment": "Medicines kept by my sister for now.",
        }
    )
    version = await safety_data.save_plan(conn, keyring, patient_id, safety, clinician_id, now)
    plan = parse_aftercare(
        {
            "step_down": "standard_outpatient",
            "step_down_note": "Weekly individual therapy at the example clinic (fictional).",
            "fu1_date": (today + dt.timedelta(days=14)).isoformat(),
            "fu1_provider": "Example Outpatient Clinic, individual therapy (fictional)",
            "fu1_phone": "(555) 555-0142",
            "fu2_date": (today + dt.timedelta(days=28)).isoformat(),
            "fu2_provider": "Example psychiatry follow-up (fictional)",
            "fu2_phone": "(555) 555-0143",
            "triggers": "Arguments at home; payday weekends; being alone in the evening.",
            "warning_signs": "Cancelling plans; sleeping badly for three nights in a row.",
            "coping": "The thought record from group; the morning walk; calling my sister.",
            "people": "My sister; the alumni group on Thursdays.",
        },
        today,
        program_phone="(555) 010-0100",
        safety_plan=safety.steps,
        safety_plan_version=version,
    )
    await aftercare_store.save_plan(conn, keyring, patient_id, plan, clinician_id, now)


async def seed_tech_checks(conn: AsyncConnection, patient_ids: list[str], now: dt.datetime) -> None:
    """Two earlier technology checks: one passed, one with a slow connection (the first
    patient has none yet, so the demo shows all three badges)."""
    good = {
        "step_browser": "pass",
        "step_camera": "pass",
        "step_microphone": "pass",
        "step_speaker": "pass",
        "rtt_ms": "48",
        "loss_pct": "0.4",
        "kbps": "460",
        "browser": "safari",
    }
    slow = good | {"rtt_ms": "620", "loss_pct": "7.5", "kbps": "120", "browser": "chrome"}
    for patient_id, data, days in zip(patient_ids[1:3], (good, slow), (3, 2), strict=False):
        result = parse_result(data, Thresholds(), relay_configured=False)
        await tech_checks.save(conn, patient_id, result, now - dt.timedelta(days=days))


async def _demo_homework(
    conn: AsyncConnection,
    keyring: Keyring,
    program_id: str,
    group: dict[str, Any],
    patients: list[dict[str, str]],
    clinician_id: str,
    now: dt.datetime,
) -> None:
    """A thought record for the whole group, due at its next session: Avery has handed
    it in, Blake has a draft, everyone else still has it to do."""
    due = await conn.scalar(
        sa.select(sessions.c.id)
        .where(
            sessions.c.group_id == group["id"],
            sessions.c.ends_at > now,
            sessions.c.state != "cancelled",
        )
        .order_by(sessions.c.starts_at)
        .limit(1)
    )
    if due is None:
        return
    sheet = worksheet("thought_record")
    await homework.assign(
        conn,
        keyring,
        program_id=program_id,
        patient_ids=[p["id"] for p in patients],
        group_id=group["id"],
        sheet=sheet,
        instructions="Fill one in this week when you notice your mood drop (example task).",
        due_session_id=due,
        by=clinician_id,
        now=now,
    )
    handed_in = {
        "situation": "Sitting at home after a text from a friend went unanswered (example).",
        "thought": "Nobody wants to hear from me.",
        "emotion": "Sad",
        "intensity_before": 70,
        "evidence_for": "She did not reply all evening.",
        "evidence_against": "She told me she works late on Tuesdays.",
        "balanced": "She is probably busy; I can check in tomorrow.",
        "intensity_after": 35,
    }
    for patient, answers, hand_in in (
        (patients[0], handed_in, True),
        (patients[1], {"situation": "On the bus to work (example)."}, False),
    ):
        (mine,) = await homework.of_patient(conn, patient["id"])
        await homework.save(conn, keyring, mine, answers, hand_in=hand_in, now=now)


DEMO_HANDOUT_TITLE = "Box breathing and the 5-4-3-2-1 grounding skill"
DEMO_HANDOUT = """# Box breathing and the 5-4-3-2-1 grounding skill

Two skills to bring yourself back to the present when feelings run high. Each takes
about two minutes, and you can use them anywhere: nobody needs to know.

## Box breathing

1. Breathe **in** through your nose for a count of 4.
2. **Hold** gently for 4.
3. Breathe **out** slowly for 4.
4. **Hold** for 4, then start again.

Do four rounds. If you feel dizzy, stop and breathe normally.

## 5-4-3-2-1 grounding

Name, out loud or in your head:

- **5** things you can see
- **4** things you can touch
- **3** things you can hear
- **2** things you can smell
- **1** thing you can taste

## When to use them

- Before a hard conversation or a craving peaks
- When your thoughts race at night
- During a check-in, if you notice your heart pounding

If you are thinking about suicide or are in danger, call or text **988**, or call
**911**.
"""


async def seed_demo_handout(
    conn: AsyncConnection, program_id: str, clinician_id: str, now: dt.datetime
) -> None:
    """A Markdown handout attached to the evening template's skills phase."""
    handout_id = await handout_store.create_handout(
        conn, program_id, DEMO_HANDOUT_TITLE, "markdown", DEMO_HANDOUT.encode(), clinician_id, now
    )
    await handout_store.attach(
        conn,
        program_id=program_id,
        handout_id=handout_id,
        version=None,
        template="evening-group-180",
        session_id=None,
        phase="Skills (CBT/DBT)",
        by=clinician_id,
        now=now,
    )


async def seed_mood_entries(
    conn: AsyncConnection,
    keyring: Keyring,
    patients_out: list[dict[str, str]],
    local_today: dt.date,
    now: dt.datetime,
) -> None:
    """Two weeks of daily mood check-ins (not today's), varied, a few days skipped.

    Each patient has a baseline that drifts a little upwards, as in a program that helps;
    no day is low enough to ask for a review, so the demo opens without review tasks.
    """
    for number, patient in enumerate(patients_out, start=1):
        rand = random.Random(number)
        base = 4 + number % 4
        for back in range(14, 0, -1):
            if rand.random() < 0.2:
                continue  # a day without a check-in
            drift = (14 - back) / 7
            mood = min(10, max(3, round(base + drift + rand.uniform(-1.5, 1.5))))
            anxiety = min(10, max(0, round(9 - mood + rand.uniform(-1.5, 1.5))))
            entry = MoodEntry(
                day=local_today - dt.timedelta(days=back),
                mood=mood,
                anxiety=anxiety,
                sleep_hours=rand.choice((5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5)),
                note=rand.choice(("", "", "", "Walked after dinner.", "Hard day at work.")),
            )
            await mood_store.save_entry(conn, keyring, patient["id"], entry, now)


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
        lines.append("Patients' join links for the group's next session:")
        for patient in group["patients"]:
            lines.append(f"  {patient['display_name']:<9} {patient['join_url']}")
    lines.append("Every person, address and phone number in the demo is fictional.")
    return "\n".join(lines)

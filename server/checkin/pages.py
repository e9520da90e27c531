"""The pre-session check-in: the safety check, then one question per screen, then a calm close."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.directory import format_phone
from crisis.questions import (
    PREFER_NOT,
    TALK,
    introduction,
    next_question,
    question,
    valid_answer,
)
from crisis.questions import progress as progress_of
from rooms.schedule import zone
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.joinlinks import patient_sessions, session_slot
from server.accounts.permissions import Action
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog.schemas import check_phone
from server.checkin import safety_checks as checkin_safety
from server.checkin import store as checkin_store
from server.crisis import publish as crisis_publish
from server.directory import store as directory_store
from server.logs import get_logger
from server.mood import store as mood_store
from server.render import render
from server.roomsocket.access import patient_session

log = get_logger(__name__)
SUPPORT = (("yes", "Yes"), ("no", "No"), ("none", "I do not have a support person"))
# Which introduction screens (not answers) this browser has read, per session.
INTRODUCED = "checkin_introduced"
ZIP_CONFIRM = "Check the ZIP code we read from the end of your address, then continue."


def _zip_for(form: Any, address: str, errors: dict[str, str]) -> str:
    """The ZIP the patient confirmed, or a suggestion from the address's end to confirm."""
    typed = form.get("zip", "").strip()
    at_end = checkin_safety.zip_at_end(address)
    if not typed:
        # Read from the end of the address, never from a street number, and shown back
        # for the patient to confirm before anything is stored.
        errors["zip"] = ZIP_CONFIRM if at_end else "Type the 5-digit ZIP code of where you are."
        return at_end or ""
    if not checkin_safety.ZIP.fullmatch(typed):
        errors["zip"] = "A ZIP code is 5 digits, like 95814."
    elif at_end is not None and at_end != typed:
        errors["zip"] = "This ZIP code is not the one at the end of your address: check both."
    return typed


def parse_safety(
    form: Any, previous: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The safety check from a form, or the fields that need attention."""
    errors: dict[str, str] = {}
    where = form.get("where", "")
    zip_code = ""
    if where == "same" and previous is not None:
        address, county = previous["address"], previous.get("county", "")
        zip_code = previous_zip(previous) or ""
        if not zip_code:
            errors["where"] = (
                "We do not have the ZIP code of that address: choose "
                "\u201cSomewhere else\u201d and type the address with its ZIP code."
            )
    elif where == "new":
        address, county = form.get("address", "").strip(), form.get("county", "").strip()
        if not 5 <= len(address) <= 300:
            errors["address"] = "Type the full address where you are right now."
        zip_code = _zip_for(form, address, errors)
    else:
        errors["where"] = "Tell us where you are right now."
        address, county = "", ""
    phone = form.get("callback_phone", "").strip()
    try:
        check_phone(phone)
    except ValueError:
        errors["callback_phone"] = "Type a phone number we can call you on during this session."
    support = form.get("support_reachable", "")
    if support not in {v for v, _ in SUPPORT}:
        errors["support_reachable"] = "Choose one."
    private = form.get("private_space", "")
    if private not in ("yes", "no"):
        errors["private_space"] = "Choose one."
    answers = {
        "address": address,
        "zip": zip_code,
        "county": county[:64],
        "callback_phone": phone,
        "support_reachable": support,
        "private_space": private == "yes",
        "same_as_last_time": where == "same",
    }
    return answers, errors


def previous_zip(previous: dict[str, Any]) -> str | None:
    """The ZIP code of the last safety check's address (older checks did not store one)."""
    stored = previous.get("zip")
    return stored if stored else checkin_safety.zip_at_end(previous["address"])


def _window(request: web.Request) -> dt.timedelta:
    return dt.timedelta(minutes=request.app[SETTINGS].checkin_location_window_minutes)


async def _location_opens(request: web.Request, link: Any, session_id: str) -> dt.datetime | None:
    """When this session's location step opens, if that is still ahead."""
    async with request.app[ENGINE].connect() as conn:
        slot = await session_slot(conn, session_id)
    assert slot is not None
    opens = checkin_safety.location_opens_at(slot.starts_at, _window(request))
    return opens if request.app[CLOCK].now() < opens else None


async def _not_yet_page(
    request: web.Request, link: Any, session_id: str, opens: dt.datetime
) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        slot = await session_slot(conn, session_id)
    assert slot is not None
    local = zone(link.patient_time_zone)
    context = {
        "slot": slot,
        "opens_local": opens.astimezone(local),
        "starts_local": slot.starts_at.astimezone(local),
        "hours": request.app[SETTINGS].checkin_location_window_minutes / 60,
        "program_phone": link.program_phone,
    }
    return await render(request, "checkin_not_yet.html", context, 409)


async def _safety_page(
    request: web.Request, link: Any, session_id: str, values: dict[str, Any], errors: dict[str, str]
) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        previous = await checkin_safety.previous_safety(
            conn, request.app[KEYRING], link.patient_id, session_id
        )
    # A ZIP code shown back to be confirmed is a step of the form, not a mistake: it is
    # asked as a calm question, not listed among fields that need attention.
    confirming = errors == {"zip": ZIP_CONFIRM}
    context = {
        "previous": previous,
        "previous_zip": previous_zip(previous) if previous else None,
        "values": values,
        "errors": {} if confirming else errors,
        "confirm_zip": ZIP_CONFIRM if confirming else "",
        "support": SUPPORT,
        "csrf": await csrf_token(request),
    }
    return await render(
        request, "checkin_safety.html", context, 400 if errors and not confirming else 200
    )


async def _question_page(
    request: web.Request, progress: checkin_store.Progress, qid: str, error: str = ""
) -> web.Response:
    number, total = progress_of(progress.plan, progress.answers)
    context = {
        "q": question(qid),
        "number": number,
        "total": total,
        "prefer_not": PREFER_NOT,
        "talk": TALK,
        "csrf": await csrf_token(request),
        "error": error,
    }
    return await render(request, "checkin_question.html", context, 400 if error else 200)


async def checkin_page(request: web.Request) -> web.StreamResponse:
    """The next step of the check-in for the patient's session (resumed where it was left)."""
    link, session_id = await patient_session(request)
    async with request.app[ENGINE].begin() as conn:
        done = await checkin_store.current_safety_check(
            conn, session_id, link.patient_id, _window(request)
        )
        if done is None:
            progress = None
        elif await checkin_store.screening_for(conn, session_id, link.patient_id) is not None:
            raise web.HTTPSeeOther("/room")
        else:
            progress = await checkin_store.progress_for(
                conn, request.app[KEYRING], session_id, link.patient_id, request.app[CLOCK].now()
            )
    if progress is None:
        opens = await _location_opens(request, link, session_id)
        if opens is not None:
            return await _not_yet_page(request, link, session_id, opens)
        return await _safety_page(request, link, session_id, {}, {})
    qid = next_question(progress.plan, progress.answers)
    if qid is None:
        raise web.HTTPSeeOther("/room")
    intro = introduction(qid)
    read = (await get_session(request)).get(INTRODUCED) or {}
    if intro and qid not in read.get(session_id, ()):
        context = {
            "paragraphs": intro,
            "qid": qid,
            # Declining is offered before the first suicide question is even shown.
            "talk": TALK if question(qid).can_decline else None,
            "csrf": await csrf_token(request),
        }
        return await render(request, "checkin_intro.html", context)
    return await _question_page(request, progress, qid)


async def safety_submit(request: web.Request) -> web.StreamResponse:
    """Record where the patient is and how to reach them for this session."""
    link, session_id = await patient_session(request)
    form = await read_form(request)
    opens = await _location_opens(request, link, session_id)
    if opens is not None:
        return await _not_yet_page(request, link, session_id, opens)
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        previous = await checkin_safety.previous_safety(conn, keyring, link.patient_id, session_id)
        answers, errors = parse_safety(form, previous)
        if not errors:
            await checkin_safety.save_safety_check(
                conn,
                keyring,
                session_id=session_id,
                patient_id=link.patient_id,
                answers=answers,
                now=request.app[CLOCK].now(),
                recorded_by=None,
            )
    if errors:
        fields = ("where", "address", "county", "callback_phone", "support_reachable")
        values = {k: form.get(k, "") for k in (*fields, "private_space")}
        values["zip"] = answers["zip"] if form.get("where") == "new" else ""
        return await _safety_page(request, link, session_id, values, errors)
    log.info("checkin.safety_recorded", patient_id=link.patient_id, session_id=session_id)
    if not answers["private_space"]:
        return await render(request, "checkin_private.html", {"program_phone": link.program_phone})
    raise web.HTTPSeeOther("/checkin")


async def answer_submit(request: web.Request) -> web.StreamResponse:
    """Store one answer as it is given; after the last, score, store and hand the level on."""
    link, session_id = await patient_session(request)
    form = await read_form(request)
    qid, value = form.get("qid", ""), form.get("answer", "")
    introduced = form.get("introduced", "")
    if introduction(introduced):
        # The introduction screen before the suicide questions was read: not an answer.
        session = await get_session(request)
        read = dict(session.get(INTRODUCED) or {})
        read[session_id] = [*read.get(session_id, ()), introduced]
        session[INTRODUCED] = read
        raise web.HTTPSeeOther("/checkin")
    keyring, now = request.app[KEYRING], request.app[CLOCK].now()
    error, finished, closing = "", False, {}
    async with crisis_publish.transaction(request.app) as conn:
        if await checkin_safety.safety_check_for(conn, session_id, link.patient_id) is None:
            raise web.HTTPSeeOther("/checkin")
        if await checkin_store.screening_for(conn, session_id, link.patient_id) is not None:
            raise web.HTTPSeeOther("/room")
        progress = await checkin_store.progress_for(
            conn, keyring, session_id, link.patient_id, now, lock=True
        )
        expected = next_question(progress.plan, progress.answers)
        if expected is None:
            raise web.HTTPSeeOther("/room")
        if qid != expected:
            raise web.HTTPSeeOther("/checkin")  # an old tab or the back button
        if not valid_answer(qid, value):
            error = "Choose one of the answers."
        else:
            await checkin_store.record_answer(
                conn,
                keyring,
                session_id=session_id,
                patient_id=link.patient_id,
                progress=progress,
                qid=qid,
                value=value,
                now=now,
            )
            finished = next_question(progress.plan, progress.answers) is None
            if finished:
                scored, _ = await checkin_store.save_screening(
                    conn,
                    keyring,
                    session_id=session_id,
                    patient_id=link.patient_id,
                    plan=progress.plan,
                    answers=progress.answers,
                    now=now,
                    raised_level=progress.raised_level,
                )
                closing = await _closing(conn, request, session_id, link, scored)
    if error:
        return await _question_page(request, progress, qid, error)
    log.info("checkin.answered", patient_id=link.patient_id, session_id=session_id)
    if not finished:
        raise web.HTTPSeeOther("/checkin")
    log.info("checkin.screened", patient_id=link.patient_id, session_id=session_id)
    return await render(request, "checkin_done.html", closing)


async def _closing(
    conn: AsyncConnection, request: web.Request, session_id: str, link: Any, scored: dict[str, Any]
) -> dict[str, Any]:
    """What the closing page says: the same calm close, plus, after a screen that needs
    staff now, that the program may call the session phone, and the area's crisis line."""
    context: dict[str, Any] = {"program_phone": link.program_phone, "call_now": False}
    level = scored["level"]
    if level == "none" and not scored["flags"]:
        return context
    check = await checkin_safety.safety_check_for(conn, session_id, link.patient_id)
    answers = json.loads(
        request.app[KEYRING].open(check.answers_enc, context=f"safety_checks/{check.id}")
    )
    local = await directory_store.resolve(
        conn,
        check.zip,
        check.county,
        request.app[CLOCK].now().date(),
        stale_days=request.app[SETTINGS].directory_stale_days,
    )
    # Example rows hold fictional numbers: a patient is never shown one as if it were real.
    line = next((r.entry for r in local.local if r.entry.crisis_line and not r.entry.example), None)
    context["crisis_line"] = None if line is None else format_phone(line.crisis_line or "")
    context["call_now"] = level in ("moderate", "high")
    context["session_phone"] = answers.get("callback_phone", "")
    return context


# Staff: the safety check taken by phone, and the measures page ------------------------------


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def staff_safety_check(request: web.Request) -> web.StreamResponse:
    """A clinician records the safety check for a patient on the phone."""
    form = await read_form(request)
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    keyring = request.app[KEYRING]
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
        session_id = form.get("session_id", "")
        upcoming = {s.session_id for s in await patient_sessions(conn, patient_id, now)}
        if session_id not in upcoming:
            raise web.HTTPBadRequest(reason="Choose one of the patient's coming sessions.")
        slot = await session_slot(conn, session_id)
        assert slot is not None
        opens = checkin_safety.location_opens_at(slot.starts_at, _window(request))
        if now < opens:
            raise web.HTTPConflict(
                reason="Where the patient is can be recorded from "
                f"{request.app[SETTINGS].checkin_location_window_minutes} minutes "
                "before the session starts."
            )
        previous = await checkin_safety.previous_safety(conn, keyring, patient_id, session_id)
        answers, errors = parse_safety(form, previous)
        if errors:
            raise web.HTTPBadRequest(reason="Check the fields: " + ", ".join(sorted(errors)) + ".")
        await checkin_safety.save_safety_check(
            conn,
            keyring,
            session_id=session_id,
            patient_id=patient_id,
            answers=answers,
            now=now,
            recorded_by=who.id,
        )
        await audit_event(
            request, conn, "checkin.safety_by_phone", target_type="patient", target_id=patient_id
        )
    raise web.HTTPSeeOther(f"/patients/{patient_id}/measures")


@requires(Action.PATIENTS_READ, phi=True)
async def measures_page(request: web.Request) -> web.Response:
    """Check-in history: PHQ-9 and GAD-7 trends, C-SSRS levels, safety checks (audited)."""
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
        history = await checkin_store.history(conn, keyring, patient_id)
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=patient_id,
            detail={"fields": "screenings_and_safety_checks"},
        )
        mood = await mood_store.history(conn, keyring, patient_id)
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=patient_id,
            detail={"fields": "mood_checks"},
        )
    context = {
        **mood,
        "patient_id": patient_id,
        "screenings": history["screenings"],
        "checks": history["checks"],
        "chart": trend_svg(history["screenings"]),
        "as_json": json.dumps,
    }
    return await render(request, "measures.html", context)


def trend_svg(screenings: list[dict[str, Any]], width: int = 640, height: int = 220) -> str:
    """PHQ-9 and GAD-7 totals over time as an inline SVG (no scripts, no external files)."""
    points: dict[str, list[tuple[int, int]]] = {"phq9": [], "gad7": []}
    for index, item in enumerate(sorted(screenings, key=lambda s: s["at"])):
        for name in points:
            total = (item["result"].get(name) or {}).get("total")
            if total is not None:
                points[name].append((index, int(total)))
    count = max(1, len(screenings) - 1)
    pad = 32

    def xy(index: int, value: int) -> str:
        x = pad + (width - 2 * pad) * index / count
        y = height - pad - (height - 2 * pad) * value / 27
        return f"{x:.1f},{y:.1f}"

    lines = []
    for name, colour, label in (("phq9", "#2f6f6a", "PHQ-9"), ("gad7", "#8a5a00", "GAD-7")):
        if points[name]:
            path = " ".join(xy(i, v) for i, v in points[name])
            lines.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{path}"/>'
            )
            for i, v in points[name]:
                x, y = xy(i, v).split(",")
                lines.append(
                    f'<circle cx="{x}" cy="{y}" r="3.5" fill="{colour}">'
                    f"<title>{label} {v}</title></circle>"
                )

    def row(v: int) -> str:
        y = height - pad - (height - 2 * pad) * v / 27
        return (
            f'<line x1="{pad}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dcd6"/>'
            f'<text x="4" y="{y + 4:.1f}" font-size="11">{v}</text>'
        )

    grid = "".join(row(v) for v in (0, 5, 10, 15, 20, 27))
    legend = (
        f'<text x="{pad}" y="16" font-size="12" fill="#2f6f6a">PHQ-9</text>'
        f'<text x="{pad + 60}" y="16" font-size="12" fill="#8a5a00">GAD-7</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="PHQ-9 and GAD-7 totals over time">{grid}{legend}{"".join(lines)}</svg>'
    )


def add_routes(app: web.Application) -> None:
    """Register the check-in pages."""
    app.router.add_get("/checkin", checkin_page)
    app.router.add_post("/checkin/safety", safety_submit)
    app.router.add_post("/checkin/answer", answer_submit)
    app.router.add_post("/patients/{patient_id}/safety-check", staff_safety_check)
    app.router.add_get("/patients/{patient_id}/measures", measures_page)

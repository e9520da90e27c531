"""Consent pages: the patient's steps, receipts and revocation; staff attestation; admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from markdown_it import MarkdownIt

from rooms.consent import (
    KIND_TITLES,
    KINDS,
    PATIENT_KINDS,
    SUPPORT_PERSON_KINDS,
    Document,
    TemplateError,
    parse_document,
)
from server.accounts import linksockets as link_sockets
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.joinlinks import patient_sessions
from server.accounts.permissions import Action
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.client_address import client_address
from server.consent import ledger as consent_ledger
from server.consent.templates import (
    all_versions,
    document_for,
    latest,
    owed_for,
    publish,
    session_terms,
)
from server.family import links as family_links
from server.logs import get_logger
from server.render import render
from server.roomsocket.access import patient_session
from server.storage.tables import consent_texts, staff

log = get_logger(__name__)
MARKDOWN = MarkdownIt("commonmark", {"html": False})
PRESENTED = "consent_presented"
REASONS = {
    "missing": "We need your agreement before you join.",
    "new_version": "This document has changed since you last agreed. Please read it again.",
    "optional": "This one is your choice. If you say no, you still join the session.",
}


def render_markdown(text: str) -> str:
    """Markdown to HTML with raw HTML disabled (so the output is safe to insert)."""
    return MARKDOWN.render(text)


async def consent_step(request: web.Request) -> web.StreamResponse:
    """The next consent the patient still owes, in full, on its own step."""
    link, session_id = await patient_session(request)
    async with request.app[ENGINE].begin() as conn:
        terms = await session_terms(conn, session_id)
        assert terms is not None
        missing = await owed_for(conn, request.app[KEYRING], link.patient_id, terms)
        if not missing:
            raise web.HTTPSeeOther("/room")
        owed = missing[0]
        template = await latest(conn, owed.kind)
        document = await document_for(conn, template, terms.values)
    session = await get_session(request)
    presented = dict(session.get(PRESENTED) or {})
    presented[owed.kind] = [template.id, request.app[CLOCK].now().isoformat()]
    session[PRESENTED] = presented
    steps = len(terms.required) + len(terms.offered)
    context = {
        "kind": owed.kind,
        "reason": REASONS[owed.reason],
        "optional": owed.reason == "optional",
        "document": document,
        "body_html": render_markdown(document.body),
        "step": steps - len(missing) + 1,
        "steps": steps,
        "template": template,
        "csrf": await csrf_token(request),
        "program_phone": link.program_phone,
    }
    return await render(request, "consent_step.html", context)


async def consent_submit(request: web.Request) -> web.StreamResponse:
    """Record the patient's agreement (or refusal) to one document."""
    link, session_id = await patient_session(request)
    form = await read_form(request)
    kind = request.match_info["kind"]
    session = await get_session(request)
    presented = (session.get(PRESENTED) or {}).get(kind)
    if kind not in PATIENT_KINDS or not presented:
        raise web.HTTPSeeOther("/consent")
    template_id, presented_at = presented
    now = request.app[CLOCK].now()
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        terms = await session_terms(conn, session_id)
        template = await latest(conn, kind)
        assert terms is not None
        if template is None or template.id != template_id:
            raise web.HTTPSeeOther("/consent")  # a new version appeared meanwhile
        document = await document_for(conn, template, terms.values)
        base = {
            "patient_id": link.patient_id,
            "kind": kind,
            "template_id": template.id,
            "template_version": template.version,
            "text_sha256": document.sha256(),
            "language": template.language,
            "session_id": session_id,
            "presented_at": dt.datetime.fromisoformat(presented_at),
            "recorded_at": now,
            "context": _capture_context(request),
        }
        declined = form.get("decision") == "refuse"
        if declined:
            await consent_ledger.append(conn, keyring, event="refused", **base)
            log.info("consent.refused", patient_id=link.patient_id)
            if kind not in terms.offered:
                return await render(
                    request,
                    "consent_refused.html",
                    {"title": KIND_TITLES[kind], "program_phone": link.program_phone},
                )
        error = None if declined else _check_agreement(form, document)
        if error is None and not declined:
            current = await consent_ledger.standing(conn, keyring, link.patient_id)
            superseded = current.get(kind)
            await consent_ledger.append(
                conn,
                keyring,
                event="consented",
                consented_at=now,
                method="e_signature",
                signer_role="patient",
                signature=form.get("full_name", "").strip(),
                supersedes=superseded.seq if superseded else None,
                **base,
            )
    if error is not None:
        context = {
            "kind": kind,
            "reason": error,
            "document": document,
            "body_html": render_markdown(document.body),
            "step": 1,
            "steps": 1,
            "template": template,
            "csrf": await csrf_token(request),
            "program_phone": link.program_phone,
            "error": error,
        }
        return await render(request, "consent_step.html", context, status=400)
    if not declined:  # an optional one declined goes on to the next step, like an agreement
        log.info("consent.recorded", patient_id=link.patient_id)
    raise web.HTTPSeeOther("/consent")


def _check_agreement(form: Any, document: Document) -> str | None:
    ticked = [form.get(f"ack_{i}") == "on" for i in range(len(document.acknowledgements))]
    if not all(ticked):
        return "Please tick each statement to agree, or choose “I do not agree”."
    name = form.get("full_name", "").strip()
    if not 2 <= len(name) <= 120:
        return "Please type your full name to sign."
    return None


def _capture_context(request: web.Request) -> dict[str, str]:
    return {
        "user_agent": request.headers.get("User-Agent", "")[:300],
        "address": client_address(request),
    }


# Receipts and revocation -----------------------------------------------------------------


async def _own_event(request: web.Request, link: Any, seq: int) -> tuple[dict[str, Any], str]:
    async with request.app[ENGINE].connect() as conn:
        events = await consent_ledger.events_of(
            conn, request.app[KEYRING], link.patient_id, reveal=True
        )
        event = next(
            (
                e
                for e in events
                if e["seq"] == seq
                and e["event"] == "consented"
                and e["kind"] not in SUPPORT_PERSON_KINDS  # the support person's, not hers
            ),
            None,
        )
        if event is None:
            raise web.HTTPNotFound(reason="There is no such consent of yours.")
        text = await conn.scalar(
            consent_texts.select()
            .with_only_columns(consent_texts.c.text)
            .where(consent_texts.c.sha256 == event["text_sha256"])
        )
    revoked = any(e["event"] == "revoked" and e["revokes"] == seq for e in events)
    return {**event, "revoked": revoked}, text or ""


async def _note_copy(request: web.Request, link: Any, event: dict[str, Any], how: str) -> None:
    async with request.app[ENGINE].begin() as conn:
        events = await consent_ledger.events_of(conn, request.app[KEYRING], link.patient_id)
        if any(e["event"] == "copy_provided" and e["supersedes"] == event["seq"] for e in events):
            return
        await consent_ledger.append(
            conn,
            request.app[KEYRING],
            patient_id=link.patient_id,
            kind=event["kind"],
            event="copy_provided",
            # `revokes` is not used for copies; the copy's subject is named in `supersedes`.
            supersedes=event["seq"],
            method=how,
            recorded_at=request.app[CLOCK].now(),
        )


async def receipts(request: web.Request) -> web.Response:
    """The patient's consents, each with its receipt."""
    link, _ = await patient_session(request)
    async with request.app[ENGINE].connect() as conn:
        events = await consent_ledger.events_of(conn, request.app[KEYRING], link.patient_id)
    revoked = {e["revokes"] for e in events if e["event"] == "revoked"}
    signed = [
        {**e, "title": KIND_TITLES[e["kind"]], "revoked": e["seq"] in revoked}
        for e in events
        if e["event"] == "consented" and e["kind"] not in SUPPORT_PERSON_KINDS
    ]
    return await render(request, "consent_receipts.html", {"signed": signed})


async def receipt(request: web.Request) -> web.Response:
    """A printable copy of what the patient signed."""
    link, _ = await patient_session(request)
    event, text = await _own_event(request, link, int(request.match_info["seq"]))
    await _note_copy(request, link, event, "receipt_page")
    document = parse_document(text)
    context = {
        "event": event,
        "document": document,
        "body_html": render_markdown(document.body),
        "csrf": await csrf_token(request),
    }
    return await render(request, "consent_receipt.html", context)


async def receipt_download(request: web.Request) -> web.Response:
    """The same copy as a text file."""
    link, _ = await patient_session(request)
    event, text = await _own_event(request, link, int(request.match_info["seq"]))
    await _note_copy(request, link, event, "download")
    signed = (
        f"\n---\nSigned by typing the name: {event['signature']}\n"
        f"Agreed at: {event['consented_at'].isoformat()}\n"
        f"Document version {event['template_version']}, SHA-256 {event['text_sha256']}\n"
        f"Record {event['seq']}, record hash {event['hash']}\n"
    )
    return web.Response(
        text=text + signed,
        content_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="consent-{event["seq"]}.txt"'},
    )


async def revoke_own(request: web.Request) -> web.StreamResponse:
    """The patient withdraws a consent; the gate closes for future sessions."""
    link, _ = await patient_session(request)
    form = await read_form(request)
    event, _ = await _own_event(request, link, int(request.match_info["seq"]))
    closed: list[str] = []
    if not event["revoked"]:
        async with request.app[ENGINE].begin() as conn:
            await consent_ledger.append(
                conn,
                request.app[KEYRING],
                patient_id=link.patient_id,
                kind=event["kind"],
                event="revoked",
                revokes=event["seq"],
                method="patient_receipt_page",
                reason=form.get("reason", "").strip()[:500] or None,
                recorded_at=request.app[CLOCK].now(),
            )
            if event["kind"] == family_links.RELEASE:
                closed = await family_links.revoke_all_of_patient(
                    conn, link.patient_id, None, request.app[CLOCK].now()
                )
        log.info("consent.revoked", patient_id=link.patient_id)
    await _support_links_closed(request, closed)
    raise web.HTTPSeeOther("/consent/receipts")


# Staff: verbal consent and revocation on the patient's behalf -------------------------------


async def staff_consents(request: web.Request, conn: Any, patient_id: str) -> list[dict[str, Any]]:
    """Each kind's current state for the patient page."""
    current = await consent_ledger.standing(conn, request.app[KEYRING], patient_id)
    return [
        {"kind": kind, "title": KIND_TITLES[kind], "standing": current.get(kind)}
        for kind in PATIENT_KINDS
    ]


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def attest_verbal(request: web.Request) -> web.StreamResponse:
    """A clinician records a patient's verbal consent, with a staff witness."""
    form = await read_form(request)
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    kind = form.get("kind", "")
    witness_id = form.get("witness_id", "")
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
        if kind not in PATIENT_KINDS:
            raise web.HTTPBadRequest(reason="Choose which consent was given.")
        witness = (
            await conn.execute(
                staff.select().where(
                    staff.c.id == witness_id,
                    staff.c.program_id == who.program_id,
                    staff.c.disabled.is_(False),
                )
            )
        ).first()
        if witness is None or witness.id == who.id:
            raise web.HTTPBadRequest(
                reason="Verbal consent needs a witness: another staff member who heard it."
            )
        upcoming = await patient_sessions(conn, patient_id, now)
        if not upcoming:
            raise web.HTTPBadRequest(reason="The patient has no session to consent for.")
        terms = await session_terms(conn, upcoming[0].session_id)
        template = await latest(conn, kind)
        assert terms is not None and template is not None
        document = await document_for(conn, template, terms.values)
        current = await consent_ledger.standing(conn, request.app[KEYRING], patient_id)
        superseded = current.get(kind)
        seq = await consent_ledger.append(
            conn,
            request.app[KEYRING],
            patient_id=patient_id,
            kind=kind,
            event="consented",
            template_id=template.id,
            template_version=template.version,
            text_sha256=document.sha256(),
            language=template.language,
            session_id=terms.session_id,
            presented_at=now,
            consented_at=now,
            method="verbal_attested",
            obtained_by=who.id,
            witness_id=witness.id,
            signer_role="patient",
            supersedes=superseded.seq if superseded else None,
            recorded_by=who.id,
            recorded_at=now,
        )
        await audit_event(
            request,
            conn,
            "consent.verbal_attested",
            target_type="patient",
            target_id=patient_id,
            detail={"consent_seq": seq, "kind": kind},
        )
    raise web.HTTPSeeOther(f"/patients/{patient_id}")


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def revoke_for_patient(request: web.Request) -> web.StreamResponse:
    """Staff record that the patient withdrew a consent, with the reason."""
    form = await read_form(request)
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    kind = form.get("kind", "")
    reason = form.get("reason", "").strip()
    if not reason:
        raise web.HTTPBadRequest(reason="Say why the consent is withdrawn.")
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
        current = await consent_ledger.standing(conn, request.app[KEYRING], patient_id)
        standing = current.get(kind)
        if standing is None:
            raise web.HTTPBadRequest(reason="There is no current consent of that kind.")
        seq = await consent_ledger.append(
            conn,
            request.app[KEYRING],
            patient_id=patient_id,
            kind=kind,
            event="revoked",
            revokes=standing.seq,
            method="staff_on_behalf",
            reason=reason[:500],
            recorded_by=who.id,
            recorded_at=request.app[CLOCK].now(),
        )
        await audit_event(
            request,
            conn,
            "consent.revoked",
            target_type="patient",
            target_id=patient_id,
            detail={"consent_seq": seq, "kind": kind},
        )
        closed: list[str] = []
        if kind == family_links.RELEASE:
            closed = await family_links.revoke_all_of_patient(
                conn, patient_id, who.id, request.app[CLOCK].now()
            )
    await _support_links_closed(request, closed)
    raise web.HTTPSeeOther(f"/patients/{patient_id}")


async def _support_links_closed(request: web.Request, link_ids: list[str]) -> None:
    """A withdrawn family-session release takes the room from the support person at once."""
    for link_id in link_ids:
        await link_sockets.link_revoked(request.app, link_id)


# Admin: versions ------------------------------------------------------------------------------


@requires(Action.PROGRAMS_MANAGE)
async def admin_templates(request: web.Request) -> web.Response:
    """Every version of every consent document, and a form to publish a new one."""
    return await _templates_view(request, {}, None)


async def _templates_view(
    request: web.Request, values: dict[str, Any], error: str | None, status: int = 200
) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        versions = await all_versions(conn)
    chosen = values.get("kind") or request.query.get("kind") or KINDS[0]
    if chosen not in KINDS:
        chosen = KINDS[0]
    current = next((v for v in versions if v.kind == chosen), None)
    context = {
        "versions": versions,
        "kinds": KINDS,
        "titles": KIND_TITLES,
        "chosen": chosen,
        "source": values.get("source") or (current.source if current else ""),
        "error": error,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_consents.html", context, status)


@requires(Action.PROGRAMS_MANAGE)
async def admin_template(request: web.Request) -> web.Response:
    """One version, readable forever."""
    async with request.app[ENGINE].connect() as conn:
        versions = await all_versions(conn)
    version = next((v for v in versions if v.id == request.match_info["template_id"]), None)
    if version is None:
        raise web.HTTPNotFound(reason="There is no such consent document.")
    document = parse_document(version.source)
    context = {
        "version": version,
        "document": document,
        "body_html": render_markdown(document.body),
    }
    return await render(request, "admin_consent.html", context)


@requires(Action.PROGRAMS_MANAGE)
async def admin_publish(request: web.Request) -> web.StreamResponse:
    """Publish a new version of a consent document."""
    form = await read_form(request)
    who = identity(request)
    kind = form.get("kind", "")
    source = form.get("source", "").replace("\r\n", "\n")
    values = {"kind": kind, "source": source}
    if kind not in KINDS:
        return await _templates_view(request, values, "Choose a kind of consent.", 400)
    if len(source) > 50_000:
        return await _templates_view(request, values, "The document is too long.", 400)
    try:
        parse_document(source)
    except TemplateError as exc:
        return await _templates_view(request, values, str(exc), 400)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        row = await publish(
            conn,
            kind=kind,
            source=source,
            requires_reconsent=form.get("requires_reconsent") == "on",
            effective_on=now.date(),
            by=who.id,
            now=now,
        )
        await audit_event(
            request,
            conn,
            "consent.template_published",
            target_type="consent_template",
            target_id=row.id,
            detail={"kind": kind, "version": row.version},
        )
    raise web.HTTPSeeOther(f"/admin/consents?kind={kind}")


def add_routes(app: web.Application) -> None:
    """Register the consent pages."""
    app.router.add_get("/consent", consent_step)
    app.router.add_post("/consent/{kind}", consent_submit)
    app.router.add_get("/consent/receipts", receipts)
    app.router.add_get("/consent/receipt/{seq:\\d+}", receipt)
    app.router.add_get("/consent/receipt/{seq:\\d+}/download", receipt_download)
    app.router.add_post("/consent/receipt/{seq:\\d+}/revoke", revoke_own)
    app.router.add_post("/patients/{patient_id}/consents/verbal", attest_verbal)
    app.router.add_post("/patients/{patient_id}/consents/revoke", revoke_for_patient)
    app.router.add_get("/admin/consents", admin_templates)
    app.router.add_post("/admin/consents", admin_publish)
    app.router.add_get("/admin/consents/{template_id}", admin_template)

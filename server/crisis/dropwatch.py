"""Dropped connection of a flagged patient: prompt the facilitators at once, log each step.

CLINICAL.md 7.5: when the video of a patient with an open crisis event drops, the host and
co-host are told straight away to call back on the session phone, with a countdown
(policy default 2 min); then the backup and alternate phones from intake (the telehealth
and emergency-plan consents promise this step); then the support person (only under a
release that has not been withdrawn); then a welfare check through the patient's local
dispatch center at the confirmed address (policy default 5 min). The prompt goes over the
room socket to the host and co-host only, never to a patient. Each step, taken or skipped
with a reason, is a `drop_follow_up` step on the event's timeline (`drop_step` message,
host and co-host); a step nobody can take (no phone on file, no release, a withdrawn
release) is logged as skipped by the server, with its reason, when the prompt goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from crisis import ledger
from crisis.directory import format_phone
from crisis.escalation import Concern, raise_concern
from rooms import outbound, protocol
from rooms.hub import RoomHub
from rooms.model import Member, Presence, RoomRole
from server import audit
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import store as catalog
from server.crisis import safety_data
from server.crisis import store as crisis_store
from server.crisis.concerns import SqlConcerns
from server.logs import get_logger
from server.storage.tables import sessions

log = get_logger(__name__)
FACILITATORS = frozenset({RoomRole.HOST, RoomRole.COHOST})
DROPPED = frozenset({Presence.RECONNECTING, Presence.LEFT})


def facilitators(hub: RoomHub) -> frozenset[str]:
    """The host and co-host member ids of the room (whoever is connected gets it)."""
    return frozenset(m.id for m in hub.room.members.values() if m.role in FACILITATORS)


def prompt_steps(
    data: safety_data.SafetyData, callback_s: float, welfare_s: float
) -> list[dict[str, Any]]:
    """The prompt's steps in order, each with when it becomes due (seconds after the drop).

    A step that cannot be taken carries `skipped` (the reason, no PHI); the server logs it
    as skipped on the timeline so the record shows why it was passed over.
    """
    # The telehealth and emergency-plan texts promise: session phone, then (after a few
    # minutes) the backup phone, then the support person; the welfare check comes last.
    support_s = callback_s + (welfare_s - callback_s) / 2
    steps: list[dict[str, Any]] = []
    session_phone = data.callback_phone
    steps.append(
        {
            "action": "call_back",
            "text": (
                f"Call back on {session_phone} (the session phone)"
                if session_phone
                else "Call back: no session phone was given at this session's check-in"
            ),
            "phone": session_phone,
            "phones": [session_phone] if session_phone else [],
            "after_s": 0,
            **({} if session_phone else {"skipped": "no session phone given at check-in"}),
        }
    )
    labelled = [
        (phone, label)
        for phone, label in (
            (data.patient.get("backup_phone"), "backup phone"),
            (data.patient.get("alternate_phone"), "alternate phone"),
        )
        if phone
    ]
    backup = [phone for phone, _ in labelled]
    if backup:
        text = "Call " + ", then ".join(f"{phone} ({label})" for phone, label in labelled)
    else:
        text = "Backup phone: no backup or alternate phone on file"
    steps.append(
        {
            "action": "backup_phone",
            "text": text,
            "phone": backup[0] if backup else None,
            "phones": backup,
            # With no session phone there is nothing to wait for: the backup phone is next now.
            "after_s": callback_s if session_phone else 0,
            **({} if backup else {"skipped": "no backup or alternate phone on file"}),
        }
    )
    person = data.support_person
    unavailable = data.support_unavailable
    if person is not None and unavailable is None:
        steps.append(
            {
                "action": "support_person",
                "text": f"Call the support person {person['name']}, {person['phone']}",
                "phone": person["phone"],
                "phones": [person["phone"]],
                "after_s": support_s,
            }
        )
    else:
        reason = unavailable or "no support person on file"
        steps.append(
            {
                "action": "support_person",
                "text": f"Support person: do not contact ({reason})",
                "phone": None,
                "phones": [],
                "after_s": support_s,
                "skipped": reason,
            }
        )
    psap = data.psap_phone
    where = data.address or "the patient's last known address (no location confirmed)"
    if psap:
        text = f"Welfare check through {format_phone(psap)} (local dispatch) at {where}"
    else:
        text = f"Welfare check at {where}: the directory has no dispatch line for this location"
    steps.append(
        {
            "action": "welfare_check",
            "text": text,
            "phone": psap,
            "phones": [psap] if psap else [],
            "after_s": welfare_s,
        }
    )
    return steps


class DropPrompts:
    """Open prompts by (room, member); the tasks that look them up are owned and awaited."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: dict[tuple[str, str], str] = {}  # -> event id
        self._pending: set[tuple[str, str]] = set()

    def member_changed(self, hub: RoomHub, member: Member) -> None:
        """A presence change in a room: a flagged patient's drop prompts; a return clears."""
        if member.role is not RoomRole.PARTICIPANT:
            return
        key = (hub.room.id, member.id)
        if member.presence in DROPPED:
            if key in self._active or key in self._pending:
                return
            self._pending.add(key)
            task = asyncio.create_task(self._prompt(hub, member), name=f"drop-prompt-{hub.room.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif member.presence is Presence.ADMITTED and key in self._active:
            event_id = self._active.pop(key)
            hub.publish(
                facilitators(hub),
                outbound.drop_prompt_reconnected(
                    event_id=event_id, patient=member, at=self._app[CLOCK].now()
                ),
            )

    async def _prompt(self, hub: RoomHub, member: Member) -> None:
        key = (hub.room.id, member.id)
        try:
            app = self._app
            now = app[CLOCK].now()
            async with app[ENGINE].begin() as conn:
                event = await crisis_store.open_event_for(conn, member.identity.id, hub.room.id)
                if event is None:
                    return
                data = await safety_data.load(
                    conn,
                    app[KEYRING],
                    event.patient_id,
                    event.session_id,
                    await catalog.program_today(conn, event.program_id, now),
                    stale_days=app[SETTINGS].directory_stale_days,
                )
                # Sending the phones and address to the facilitators is a read of safety data.
                await audit.record(
                    conn,
                    app[KEYRING],
                    actor=audit.SYSTEM,
                    action="safety.drop_prompt",
                    now=now,
                    target_type="patient",
                    target_id=event.patient_id,
                    detail={"event_id": event.id, "room_id": hub.room.id},
                )
                settings = app[SETTINGS]
                steps = prompt_steps(data, settings.drop_callback_s, settings.drop_welfare_s)
                if member.presence in DROPPED:
                    # A flagged patient dropping out is itself a trigger (CLINICAL.md 7):
                    # through the one entry point, it lands on the open event's timeline.
                    ends_at = await conn.scalar(
                        sa.select(sessions.c.ends_at).where(sessions.c.id == hub.room.id)
                    )
                    await raise_concern(
                        SqlConcerns(conn, app[KEYRING], ends_at),
                        Concern(
                            patient_id=event.patient_id,
                            session_id=event.session_id,
                            trigger="dropped",
                            level=event.level,
                            rule="a flagged patient's connection dropped",
                            at=now,
                        ),
                    )
                    # Steps nobody can take are logged as skipped, with the reason, at once.
                    for step in steps:
                        if "skipped" in step:
                            step["step_no"] = await crisis_store.record_step(
                                conn,
                                app[KEYRING],
                                event.id,
                                ledger.DropFollowUp.KIND,
                                {
                                    "action": step["action"],
                                    "outcome": "skipped",
                                    "reason": step["skipped"],
                                },
                                audit.SYSTEM,
                                now,
                            )
            if member.presence not in DROPPED:
                return  # back already: nothing to prompt
            self._active[key] = event.id
            hub.publish(
                facilitators(hub),
                outbound.drop_prompt_dropped(
                    event_id=event.id, patient=member, at=now, steps=steps
                ),
            )
            log.warning("crisis.drop_prompted", room_id=hub.room.id, event_id=event.id)
        except (SQLAlchemyError, OSError, ledger.LedgerError) as exc:
            # Nobody is prompted: say so loudly (ids only); the timeline is unaffected.
            log.error(
                "crisis.drop_prompt_failed", room_id=hub.room.id, error_type=type(exc).__name__
            )
        finally:
            self._pending.discard(key)

    async def record(self, hub: RoomHub, member: Member, message: protocol.DropStep) -> None:
        """A facilitator logs a prompt step as taken or skipped (the room checked who may);
        refusals are ProtocolErrors."""
        app = self._app
        now = app[CLOCK].now()
        actor = audit.Actor("staff", member.identity.id)
        data: dict[str, Any] = {"action": message.action, "outcome": message.outcome}
        if message.reason:
            data["reason"] = message.reason
        async with app[ENGINE].begin() as conn:
            try:
                event = await crisis_store.get_event(conn, message.event_id)
            except crisis_store.EventNotFoundError:
                raise protocol.ProtocolError("unknown_event", "no such crisis event") from None
            if event.session_id != hub.room.id:
                raise protocol.ProtocolError("unknown_event", "that event is not in this session")
            try:
                step_no = await crisis_store.record_step(
                    conn,
                    app[KEYRING],
                    event.id,
                    ledger.DropFollowUp.KIND,
                    data,
                    actor,
                    now,
                )
            except ledger.InvalidStepError as exc:
                raise protocol.ProtocolError("invalid", f"{exc.field}: {exc.reason}") from None
            except ledger.InvalidStateError as exc:
                raise protocol.ProtocolError("conflict", str(exc)) from None
            await audit.record(
                conn,
                app[KEYRING],
                actor=actor,
                action="crisis.step_recorded",
                now=now,
                target_type="crisis_event",
                target_id=event.id,
                detail={"kind": ledger.DropFollowUp.KIND, "step_no": step_no},
            )
        hub.publish(
            facilitators(hub),
            outbound.drop_step_logged(
                event_id=event.id,
                action=message.action,
                outcome=message.outcome,
                step_no=step_no,
                by=member.name,
                at=now,
            ),
        )

    async def close(self) -> None:
        """Cancel the look-ups still running and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


DROPS = web.AppKey("drops", DropPrompts)


async def _drops_ctx(app: web.Application) -> AsyncIterator[None]:
    app[DROPS] = DropPrompts(app)
    try:
        yield
    finally:
        await app[DROPS].close()


def setup(app: web.Application) -> None:
    """Hold the room prompts for the application's life."""
    app.cleanup_ctx.append(_drops_ctx)

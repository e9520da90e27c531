"""Server -> client messages: one constructor per type, the shapes of PROTOCOL.md.

Key order is part of the wire format (JSON keeps it), so each payload is built in the
order its fields have always been sent. `seq` is added when a message is published.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rooms.model import Member, Presence, Room

Payload = dict[str, Any]


def member_view(member: Member, *, staff: bool = False) -> Payload:
    """How a member is described on the wire (staff also get `staff_info`)."""
    view: Payload = {
        "id": member.id,
        "name": member.name,
        "role": member.role.value,
        "presence": member.presence.value,
        "since": member.since.isoformat(),
        "hand_raised": member.hand_raised,
        "audio_blocked": member.audio_blocked,
        "video_blocked": member.video_blocked,
        "unmute_requested": member.unmute_requested,
        "away": member.space is not None,
        "space": member.space,
    }
    if staff:
        view["staff_info"] = member.staff_info
    return view


def member(view: Payload) -> Payload:
    """A member's changed state, as one audience may see it."""
    return {"type": "member", "member": view}


def member_left(view: Payload) -> Payload:
    """A removed member as other patients see it: they only learn that someone left."""
    return member({**view, "presence": Presence.LEFT.value})


def room_state(room: Room) -> Payload:
    """The room went live, ended, or was (un)locked."""
    return {"type": "room", "state": room.state.value, "locked": room.locked}


def snapshot(
    *,
    seq: int,
    protocol: int,
    you: Payload,
    room: Room,
    members: list[Payload],
    clock: Payload | None,
    server_time: float,
    chat: list[Payload],
    breakouts: Payload | None = None,
) -> Payload:
    """Everything a viewer may see of the room now, to start or restart from."""
    return {
        "type": "snapshot",
        "seq": seq,
        "protocol": protocol,
        "you": you,
        "room": {
            "id": room.id,
            "title": room.title,
            "kind": room.kind,
            "starts_at": room.starts_at.isoformat(),
            "state": room.state.value,
            "locked": room.locked,
        },
        "members": members,
        "clock": clock,
        "server_time": server_time,
        "chat": chat,
        "breakouts": breakouts,
    }


def resync(seq: int, you: Payload) -> Payload:
    """The missed messages were replayed; the client is up to date at `seq`."""
    return {"type": "resync", "seq": seq, "you": you}


def pong(t: float, server_time: float) -> Payload:
    """The answer to a ping, for the client's clock-offset estimate."""
    return {"type": "pong", "t": t, "server_time": server_time}


def error(code: str, reason: str) -> Payload:
    """A refused message or connection."""
    return {"type": "error", "code": code, "reason": reason}


def rate_limited(kind: str, retry_after_s: float) -> Payload:
    """Too many messages of one kind: wait `retry_after_s` before the next."""
    return {
        "type": "error",
        "code": "rate_limited",
        "kind": kind,
        "reason": "too many messages: wait a moment and send again",
        "retry_after_s": retry_after_s,
    }


def reaction(sender: Member, kind: str) -> Payload:
    """A passing reaction."""
    return {"type": "reaction", "from": sender.id, "reaction": kind}


def _chat_base(sender: Member, text: str, at: dt.datetime) -> Payload:
    return {
        "type": "chat",
        "from": sender.id,
        "from_name": sender.name,
        "text": text,
        "at": at.isoformat(),
    }


def chat_room(sender: Member, text: str, at: dt.datetime) -> Payload:
    """A chat message to everyone in the room."""
    return {**_chat_base(sender, text, at), "channel": "room"}


def chat_private(sender: Member, text: str, at: dt.datetime, thread: str) -> Payload:
    """A private message between a patient (`thread`) and the clinicians."""
    return {**_chat_base(sender, text, at), "channel": "private", "thread": thread}


def note(sender: Member, about: str | None, text: str, at: dt.datetime) -> Payload:
    """A staff-only note."""
    return {
        "type": "chat",
        "channel": "note",
        "from": sender.id,
        "from_name": sender.name,
        "about": about,
        "text": text,
        "at": at.isoformat(),
    }


def help_alert(patient: Member, text: str, at: dt.datetime) -> Payload:
    """A patient pressed "I need help" (staff only)."""
    return {
        "type": "help",
        "from": patient.id,
        "name": patient.name,
        "text": text,
        "at": at.isoformat(),
    }


def help_received(at: dt.datetime, press_id: str | None) -> Payload:
    """The press is stored: the clinicians have been told (the patient only)."""
    confirmation: Payload = {"type": "help_received", "at": at.isoformat()}
    if press_id is not None:
        confirmation["press_id"] = press_id
    return confirmation


def clock(view: Payload | None, server_time: float) -> Payload:
    """The session clock's full state as of `server_time`."""
    return {"type": "clock", "clock": view, "server_time": server_time}


def handouts(shelf: list[Payload]) -> Payload:
    """The handouts this session offers (each with the phase it belongs to, or none)."""
    return {"type": "handouts", "handouts": shelf}


def handout_view(view: Payload | None) -> Payload:
    """The handout shown to everyone and its page, or None when nothing is shown."""
    return {"type": "handout_view", "view": view}


def private_room_closed(patient_id: str) -> Payload:
    """The patient is back in the group."""
    return {"type": "private_room", "open": False, "member_id": patient_id}


def private_room_opened(patient_id: str, keeper_id: str | None) -> Payload:
    """To the group: a patient stepped out; who runs the group now, or a short break."""
    return {
        "type": "private_room",
        "open": True,
        "member_id": patient_id,
        "keeper": keeper_id,
        "short_break": keeper_id is None,
    }


def private_room_mine(patient_id: str, clinician: Member) -> Payload:
    """To the two in the private room."""
    return {
        "type": "private_room",
        "open": True,
        "member_id": patient_id,
        "with": clinician.id,
        "with_name": clinician.name,
        "mine": True,
    }


def float_needed(patient_id: str, roster: list[dict[str, str]]) -> Payload:
    """No co-facilitator is left with the group: whom staff may call in (staff only)."""
    return {"type": "float_needed", "member_id": patient_id, "roster": roster}


def screen_allowed(member_id: str, allowed: bool) -> Payload:
    """A host let a participant share their screen, or took it back."""
    return {"type": "screen_allowed", "member_id": member_id, "allowed": allowed}


def speaker(member_id: str) -> Payload:
    """The active speaker changed (never replayed)."""
    return {"type": "speaker", "member_id": member_id}


def drop_prompt_dropped(
    *,
    event_id: str,
    patient: Member,
    at: dt.datetime,
    steps: list[dict[str, Any]],
) -> Payload:
    """A flagged patient's connection dropped: the steps to take (host and co-host)."""
    return {
        "type": "drop_prompt",
        "status": "dropped",
        "event_id": event_id,
        "member_id": patient.id,
        "name": patient.name,
        "at": at.isoformat(),
        "server_time": at.timestamp(),
        "steps": steps,
    }


def drop_prompt_reconnected(*, event_id: str, patient: Member, at: dt.datetime) -> Payload:
    """The flagged patient is back: the countdown stops."""
    return {
        "type": "drop_prompt",
        "status": "reconnected",
        "event_id": event_id,
        "member_id": patient.id,
        "name": patient.name,
        "at": at.isoformat(),
    }


def drop_step_logged(
    *, event_id: str, action: str, outcome: str, step_no: int, by: str, at: dt.datetime
) -> Payload:
    """A prompt step was logged on the event's timeline (host and co-host)."""
    return {
        "type": "drop_step_logged",
        "event_id": event_id,
        "action": action,
        "outcome": outcome,
        "step_no": step_no,
        "by": by,
        "at": at.isoformat(),
    }


def breakouts(view: Payload | None, server_time: float, recalled: str | None = None) -> Payload:
    """The breakout rooms as one audience may see them; None once everyone is back."""
    payload: Payload = {"type": "breakouts", "breakouts": view, "server_time": server_time}
    if recalled is not None:
        payload["recalled"] = recalled
    return payload


def breakout_broadcast(sender: Member, text: str, at: dt.datetime) -> Payload:
    """A facilitator's message to every breakout and the main room."""
    return {
        "type": "breakout_broadcast",
        "from": sender.id,
        "from_name": sender.name,
        "text": text,
        "at": at.isoformat(),
    }


def facilitator_call(
    patient: Member, breakout_id: str, breakout_name: str, at: dt.datetime
) -> Payload:
    """A patient in a breakout asks for a facilitator (staff only)."""
    return {
        "type": "facilitator_call",
        "member_id": patient.id,
        "name": patient.name,
        "breakout_id": breakout_id,
        "breakout_name": breakout_name,
        "at": at.isoformat(),
    }

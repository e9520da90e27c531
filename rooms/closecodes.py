"""The WebSocket close codes of the room and dashboard sockets: one code, one meaning.

Clients decide on the code alone whether to reconnect and what to tell the person; the
reason text that goes with a close is for people reading logs, never for branching. The
tables in rooms/PROTOCOL.md and the dashboard's protocol (server/dashboard/protocol.py)
list the same codes. Codes 4000-4999 are the application's own (RFC 6455 section 7.4.2);
where one fits, the last three digits echo the HTTP status of the same idea.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why the server closed a socket; each code has exactly one meaning."""

    SHUTDOWN = 1001
    """The server is shutting down (RFC 6455 "going away"): reconnect."""

    TRY_AGAIN = 1013
    """Multi-node: the room's previous node is stopping or unreachable and its lease has
    not run out yet (RFC 6455 "try again later"): reconnect with back-off."""

    REMOVED = 4001
    """A clinician removed this member from the room: do not reconnect."""

    ENDED = 4002
    """The session has ended: do not reconnect."""

    REPLACED = 4003
    """The same person opened the room on another device: do not reconnect."""

    REDIRECT = 4307
    """The room is on another node: reconnect at once where the `redirect` message says."""

    PROTOCOL = 4400
    """The client broke the protocol: no `hello` in time, another first message, another
    protocol version, or silence past the heartbeat deadline."""

    SIGNED_OUT = 4401
    """The staff account's sessions ended (signed out, or its sign-in details were reset):
    sign in again; do not reconnect."""

    ACCOUNT_DISABLED = 4402
    """The staff account was disabled: do not reconnect."""

    REFUSED = 4403
    """Not let into this room (it is locked or ended, this member was removed, or the
    patient is already in another session): do not reconnect."""

    SLOW = 4408
    """The client could not keep up (its outbox filled): reconnect and resync."""

    LINK_REVOKED = 4410
    """The patient's join link was revoked (also on a socket already open): do not
    reconnect; the patient needs a new link."""

    SCREEN_LOCKED = 4423
    """The staff screen is under the idle lock and not already in the live call: unlock
    it, then open the room again."""

    FLOOD = 4429
    """Too many invalid messages in a short time: reconnect."""

"""A room's connections and its sequenced message log, from which a reconnect resyncs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from rooms.closecodes import CloseCode

LOG_SIZE = 1000


class Participant(Protocol):
    """One connection as the room sees it (the server adapts a WebSocket to this)."""

    member_id: str

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; a connection that cannot keep up closes itself (False)."""

    async def close(self, code: int, reason: str) -> None:
        """Close the connection."""


Closing = tuple[Participant, int, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """A sequenced server message and who was entitled to it when it was sent."""

    seq: int
    recipients: frozenset[str]
    payload: dict[str, Any]


class Connections:
    """Who is connected, by member id, and every sequenced message sent to them."""

    def __init__(self, log_size: int = LOG_SIZE) -> None:
        self._by_member: dict[str, Participant] = {}
        self._log: deque[Entry] = deque(maxlen=log_size)
        self._seq = 0
        self._closing: list[Closing] = []

    @property
    def seq(self) -> int:
        """The last sequence number used."""
        return self._seq

    def __len__(self) -> int:
        return len(self._by_member)

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._by_member

    def __getitem__(self, member_id: str) -> Participant:
        return self._by_member[member_id]

    def get(self, member_id: str) -> Participant | None:
        """The member's connection, if connected."""
        return self._by_member.get(member_id)

    def is_current(self, participant: Participant) -> bool:
        """Whether `participant` is still its member's connection to this room."""
        return self._by_member.get(participant.member_id) is participant

    # Sending ------------------------------------------------------------------------------

    def publish(self, recipients: frozenset[str], payload: dict[str, Any]) -> Entry:
        """Give `payload` the next seq, log it, and send it to the connected recipients."""
        self._seq += 1
        entry = Entry(self._seq, recipients, {**payload, "seq": self._seq})
        self._log.append(entry)
        for member_id in recipients:
            self.send(member_id, entry.payload)
        return entry

    def broadcast(self, recipients: frozenset[str], payload: dict[str, Any]) -> None:
        """Send a passing notice (e.g. who is speaking) without a seq: never replayed."""
        for member_id in recipients:
            self.send(member_id, payload)

    def send(self, member_id: str, payload: dict[str, Any]) -> bool:
        """Send one unsequenced message to a member if connected (False if not)."""
        connection = self._by_member.get(member_id)
        if connection is None:
            return False
        # A connection whose outbox is full closes itself; the client resyncs on reconnect.
        connection.send(payload)
        return True

    # Attaching and letting go ------------------------------------------------------------

    def attach(self, member_id: str, participant: Participant) -> None:
        """Make `participant` the member's connection; one on another device is replaced."""
        previous = self._by_member.get(member_id)
        if previous is not None and previous is not participant:
            self.close_later(previous, CloseCode.REPLACED, "opened on another device")
        self._by_member[member_id] = participant

    def detach(self, participant: Participant) -> bool:
        """Forget a connection that ended; False if it was no longer the member's."""
        if not self.is_current(participant):
            return False
        del self._by_member[participant.member_id]
        return True

    def drop(self, member_id: str, code: CloseCode, reason: str) -> None:
        """Let a member's connection go, to be closed with `code`."""
        connection = self._by_member.pop(member_id, None)
        if connection is not None:
            self.close_later(connection, code, reason)

    def drop_all(self, code: CloseCode, reason: str) -> None:
        """Let every connection go, to be closed with `code`."""
        for connection in self._by_member.values():
            self.close_later(connection, code, reason)
        self._by_member.clear()

    def release(self) -> list[Participant]:
        """Forget every connection and hand them back (the room is shutting down)."""
        connections = list(self._by_member.values())
        self._by_member.clear()
        return connections

    def close_later(self, connection: Participant, code: int, reason: str) -> None:
        """Queue a close for the server to carry out after the current message."""
        self._closing.append((connection, code, reason))

    def take_closing(self) -> list[Closing]:
        """The connections the server must close now."""
        closing, self._closing = self._closing, []
        return closing

    # Resync -------------------------------------------------------------------------------

    def resync(self, participant: Participant, member_id: str, last_seq: int | None) -> bool:
        """Replay what the member missed since `last_seq`, if the log still holds it.

        False: the gap is too old (or the client is new), so it needs a snapshot instead.
        """
        oldest = self._log[0].seq if self._log else self._seq + 1
        if last_seq is None or not oldest - 1 <= last_seq <= self._seq:
            return False
        for entry in self._log:
            if entry.seq > last_seq and member_id in entry.recipients:
                participant.send(entry.payload)
        return True

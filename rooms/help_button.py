"""The patient's private "I need help": an alert to staff, a concern, a confirmation.

A press is never dropped. Within the help rate it alerts the staff in the room and is
raised as a concern; past it, presses fold into one step on the open event (no new page,
no alert in the room), at most one write in flight, each press confirmed once stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rooms import outbound
from rooms import protocol as p
from rooms.live import LiveRoom
from rooms.model import Member, RoomAction, check_role
from rooms.ratelimit import ConnectionLimits, Kind

# Different texts kept from presses folded into one write (the count is always kept).
FOLD_TEXTS = 20


@dataclass(slots=True)
class _Fold:
    """Help presses past the rate: at most one write in flight, the rest wait for it."""

    writing: bool = False
    presses: int = 0
    texts: list[str] = field(default_factory=list)
    confirmations: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str, confirmation: dict[str, Any]) -> None:
        self.presses += 1
        if text and text not in self.texts and len(self.texts) < FOLD_TEXTS:
            self.texts.append(text)
        self.confirmations.append(confirmation)

    def take(self) -> tuple[int, str, list[dict[str, Any]]]:
        taken = (self.presses, "\n".join(self.texts), self.confirmations)
        self.presses, self.texts, self.confirmations = 0, [], []
        return taken


class HelpButton:
    """Handles help presses for one room."""

    def __init__(self, live: LiveRoom, limits: ConnectionLimits) -> None:
        self._live = live
        self._limits = limits
        self._folds: dict[str, _Fold] = {}

    def on_help(self, member: Member, message: p.Help) -> None:
        """A press: alert staff, raise the concern, confirm once it is stored."""
        # Waiting patients may ask for help too: the button must never be out of reach.
        check_role(member, RoomAction.ASK_HELP)
        live = self._live
        now = live.now()
        text = message.text.strip()
        confirmation = outbound.help_received(now, message.press_id)
        if not self._limits.take(member.id, Kind.HELP, now.timestamp()):
            # Past the rate, a press is never dropped: it becomes a step on the open event
            # (no new page, no alert in the room), confirmed like any other once stored.
            fold = self._folds.setdefault(member.id, _Fold())
            fold.add(text, confirmation)
            if not fold.writing:
                self._write_fold(member, fold)
            return
        live.connections.publish(live.room.staff_ids(), outbound.help_alert(member, text, now))

        def stored() -> None:
            live.connections.publish(frozenset({member.id}), confirmation)

        live.events.help_pressed(member, text, now, stored)

    def _write_fold(self, member: Member, fold: _Fold) -> None:
        presses, text, confirmations = fold.take()
        fold.writing = True
        live = self._live

        def stored() -> None:
            for confirmation in confirmations:
                live.connections.publish(frozenset({member.id}), confirmation)
            fold.writing = False
            if fold.presses:
                self._write_fold(member, fold)
            elif self._folds.get(member.id) is fold:
                del self._folds[member.id]

        live.events.help_pressed(member, text, live.now(), stored, repeat=presses)

"""Telling people about a crisis event: the notification, the notifier interface, the stream.

A notification carries no PHI (CLINICAL.md section 8): ids, level, kind, roles and a link
to the event; whoever follows the link signs in to see more. The webhook notifier is the
real default; anything that can page a phone implements `Notifier`. In-process listeners
(the supervisor dashboard) subscribe to an `EventStream` fed the same notifications.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

KINDS = ("raised", "escalation", "acknowledged", "assigned", "concern_added", "signed_off")
SIGNATURE_HEADER = "X-IOP-Signature"
SUBSCRIBER_BUFFER = 256
# How many notification ids a stream remembers so a second copy (the outbox poll after the
# committing process published it directly) is not shown twice.
RECENT_IDS = 4096


@dataclass(frozen=True, slots=True)
class Notification:
    """What a notifier sends: ids, level, kind, who is paged, a link, a time. Never PHI."""

    id: str
    event_id: str
    program_id: str
    level: str
    kind: str
    roles: tuple[str, ...]
    at: dt.datetime
    url: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown notification kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        """The notification as the webhook body's object."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "program_id": self.program_id,
            "level": self.level,
            "kind": self.kind,
            "roles": list(self.roles),
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "url": self.url,
        }

    def body(self) -> bytes:
        """The exact bytes sent and signed: compact JSON with sorted keys."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification about no crisis event (a patient's daily reminder), sent as queued.

    Whoever queues one builds its body without PHI: opaque ids, a kind, a time, a link.
    """

    id: str
    payload: Mapping[str, Any]

    def body(self) -> bytes:
        """The exact bytes sent and signed: compact JSON with sorted keys."""
        return json.dumps(dict(self.payload), sort_keys=True, separators=(",", ":")).encode()


class DeliveryError(Exception):
    """A notification that did not arrive; `reason` is safe to store (no PHI, no URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Notifier(Protocol):
    """Something that delivers a notification or raises DeliveryError."""

    async def deliver(self, notification: Notification) -> None:
        """Deliver once; the caller retries."""


def signature(body: bytes, secret: bytes) -> str:
    """The `X-IOP-Signature` value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, secret: bytes, header: str) -> bool:
    """True when `header` is the signature of `body` under `secret` (constant time)."""
    return hmac.compare_digest(signature(body, secret), header)


def retry_delay(
    attempt: int,
    random: Callable[[], float],
    base: dt.timedelta = dt.timedelta(seconds=5),
    cap: dt.timedelta = dt.timedelta(minutes=10),
) -> dt.timedelta:
    """Exponential backoff with jitter before retry number `attempt` (1 = first retry).

    Half the delay is fixed and half random ("equal jitter"): retries still spread out when
    a receiver comes back for many programs at once, and never come sooner than half
    the exponential step.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    step = min(cap, base * (2 ** min(attempt - 1, 30)))
    half: dt.timedelta = step / 2
    return half + half * random()


class StreamClosedError(Exception):
    """The stream was closed, or this subscriber fell too far behind and was dropped."""


class Subscription:
    """One listener's bounded queue of notifications."""

    def __init__(self, stream: EventStream, buffer: int) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue(buffer)
        self.dropped = False

    def _offer(self, notification: Notification | None) -> bool:
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            return False
        return True

    async def next(self) -> Notification:
        """The next notification; StreamClosedError once the stream ends for this listener."""
        item = await self._queue.get()
        if item is None:
            raise StreamClosedError("dropped" if self.dropped else "closed")
        return item

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Notification]:
        while True:
            try:
                yield await self.next()
            except StreamClosedError:
                return

    def close(self) -> None:
        """Stop listening."""
        self._stream._remove(self)


class EventStream:
    """Fan-out of notifications to in-process subscribers; a slow one is dropped, not waited for."""

    def __init__(self, buffer: int = SUBSCRIBER_BUFFER, recent: int = RECENT_IDS) -> None:
        self._buffer = buffer
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_limit = recent

    def subscribe(self) -> Subscription:
        """A new listener that sees every notification published from now on."""
        if self._closed:
            raise StreamClosedError("closed")
        subscription = Subscription(self, self._buffer)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, notification: Notification) -> bool:
        """Offer a notification to every subscriber without waiting; False if seen before."""
        if notification.id in self._recent:
            return False
        self._recent[notification.id] = None
        if len(self._recent) > self._recent_limit:
            self._recent.popitem(last=False)
        for subscription in list(self._subscribers):
            if not subscription._offer(notification):
                # A full queue means the listener stopped reading; it must resync from storage.
                subscription.dropped = True
                self._subscribers.discard(subscription)
                subscription._queue.get_nowait()
                subscription._offer(None)
        return True

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.discard(subscription)
            if not subscription._offer(None):
                subscription._queue.get_nowait()
                subscription._offer(None)

    @property
    def subscribers(self) -> int:
        """How many listeners are attached."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (idempotent)."""
        self._closed = True
        for subscription in list(self._subscribers):
            self._remove(subscription)

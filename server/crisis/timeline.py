"""The crisis timeline: each event's steps, MAC-chained across every event, sealed at rest.

Steps are only ever appended, under the chain head's row lock, inside the caller's
transaction; `verify` walks the whole chain and names the first row that does not hold.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger
from crisis.ledger import Step
from server import audit, chain
from server.phi import Keyring
from server.rowmac import ChainSpec, sign
from server.storage.tables import crisis_events, crisis_head, crisis_steps


def step_context(seq: int) -> str:
    """The sealing context of a step's payload: it opens only as that row."""
    return f"crisis_steps/{seq}"


# Every stored column, by column-list version; the payload is MACed by its plain value so
# re-encryption under a new key leaves the chain intact.
CHAIN = ChainSpec(
    crisis_steps,
    crisis_head,
    versions={
        1: (
            "prev_hash",
            "seq",
            "event_id",
            "step_no",
            "kind",
            "actor_type",
            "actor_id",
            "at",
            "payload_enc",
        ),
    },
    sealed={"payload_enc": step_context},
)


async def append_step(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    step: Step,
    actor: audit.Actor,
    at: dt.datetime,
) -> int:
    """Append one step to an event's timeline (no state checks); return its step number."""
    return (await append_steps(conn, keyring, event_id, [(step, actor)], at))[-1]


async def append_steps(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    steps: list[tuple[Step, audit.Actor]],
    at: dt.datetime,
) -> list[int]:
    """Append steps in order under one hold of the chain head; return their step numbers.

    One round trip per statement, not per step: the crisis path's latency (a help press to
    the supervisor's screen) is mostly the number of statements a raise takes.
    """
    last = await conn.scalar(
        sa.select(sa.func.max(crisis_steps.c.step_no)).where(crisis_steps.c.event_id == event_id)
    )
    row = (
        await conn.execute(
            crisis_head.update()
            .where(crisis_head.c.id == 1)
            .values(seq=crisis_head.c.seq + len(steps))
            .returning(crisis_head.c.seq, crisis_head.c.hash)
        )
    ).one()
    first_seq, prev_hash = int(row.seq) - len(steps) + 1, str(row.hash)
    rows = []
    numbers = []
    for offset, (step, actor) in enumerate(steps):
        seq = first_seq + offset
        step_no = int(last or 0) + 1 + offset
        payload = json.dumps(step.payload(), sort_keys=True, separators=(",", ":"))
        fields: dict[str, Any] = {
            "seq": seq,
            "event_id": event_id,
            "step_no": step_no,
            "kind": step.KIND,
            "actor_type": actor.type,
            "actor_id": actor.id,
            "at": at.astimezone(dt.UTC),
        }
        macs = sign(CHAIN, keyring, fields | {"prev_hash": prev_hash, "payload_enc": payload})
        rows.append(
            {
                **fields,
                **macs,
                "payload_enc": keyring.seal(payload, context=step_context(seq)),
                "prev_hash": prev_hash,
            }
        )
        numbers.append(step_no)
        prev_hash = macs["hash"]
    await conn.execute(crisis_steps.insert(), rows)
    await chain.set_head(conn, CHAIN, keyring, first_seq + len(steps) - 1, prev_hash)
    return numbers


async def verify(conn: AsyncConnection, keyring: Keyring) -> chain.Verification:
    """Walk the crisis timeline chain and report the first step, and column, that does not hold."""
    return await chain.walk(conn, CHAIN, keyring)


async def timeline(conn: AsyncConnection, keyring: Keyring, event_id: str) -> list[dict[str, Any]]:
    """An event's steps, oldest first, payloads opened."""
    found = await conn.execute(
        sa.select(crisis_steps)
        .where(crisis_steps.c.event_id == event_id)
        .order_by(crisis_steps.c.step_no)
    )
    return [
        {
            "step_no": row.step_no,
            "kind": row.kind,
            "actor_type": row.actor_type,
            "actor_id": row.actor_id,
            "at": row.at.astimezone(dt.UTC).isoformat(),
            "data": json.loads(keyring.open(row.payload_enc, context=step_context(row.seq))),
        }
        for row in found
    ]


async def breaches(
    conn: AsyncConnection,
    keyring: Keyring,
    program_ids: list[str] | None,
    since: dt.datetime,
    until: dt.datetime,
) -> list[dict[str, Any]]:
    """Every missed acknowledgement deadline in the window, oldest first."""
    query = (
        sa.select(crisis_steps, crisis_events.c.program_id, crisis_events.c.level)
        .join(crisis_events, crisis_events.c.id == crisis_steps.c.event_id)
        .where(
            crisis_steps.c.kind == ledger.DeadlineMissed.KIND,
            crisis_steps.c.at >= since,
            crisis_steps.c.at < until,
        )
        .order_by(crisis_steps.c.seq)
    )
    if program_ids is not None:
        query = query.where(crisis_events.c.program_id.in_(program_ids))
    out = []
    for row in await conn.execute(query):
        data = json.loads(keyring.open(row.payload_enc, context=step_context(row.seq)))
        out.append(
            {
                "event_id": row.event_id,
                "program_id": row.program_id,
                "level": row.level,
                "purpose": data["purpose"],
                "due_at": data["due_at"],
                "recorded_at": row.at.astimezone(dt.UTC).isoformat(),
                "waiting_on": data["waiting_on"],
                "staff_ids": data["staff_ids"],
            }
        )
    return out

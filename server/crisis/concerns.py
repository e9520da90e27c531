"""Where crisis.escalation puts a concern: events go to the crisis ledger, review tasks to
crisis_requests (sealed, due by the end of the session).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.escalation import Concern
from server.catalog.store import new_id
from server.crisis import store as crisis_store
from server.phi import Keyring
from server.storage.tables import crisis_requests


class SqlConcerns:
    """crisis.escalation's store: events go to the crisis ledger, review tasks stay here."""

    def __init__(self, conn: AsyncConnection, keyring: Keyring, session_ends: dt.datetime) -> None:
        self._conn = conn
        self._keyring = keyring
        self._session_ends = session_ends

    async def _insert(self, concern: Concern, kind: str, due: dt.datetime | None) -> str:
        # Only review tasks (low) are written here; moderate and high concerns are events.
        request_id = new_id()
        detail = {"rule": concern.rule, **dict(concern.detail)}
        await self._conn.execute(
            crisis_requests.insert().values(
                id=request_id,
                patient_id=concern.patient_id,
                session_id=concern.session_id,
                kind=kind,
                trigger=concern.trigger,
                level=concern.level,
                detail_enc=self._keyring.seal(
                    json.dumps(detail, sort_keys=True),
                    context=f"crisis_requests/{request_id}",
                ),
                due_at=due,
                created_at=concern.at,
            )
        )
        return request_id

    async def open_event(self, concern: Concern) -> str:
        return await crisis_store.open_event(self._conn, self._keyring, concern)

    async def add_review_task(self, concern: Concern) -> str:
        return await self._insert(concern, "review_task", self._session_ends)

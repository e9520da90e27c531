"""What the benchmarks share: a free loopback port, the environment of a server that keeps
to loopback, and a seeded patient's consents and check-in."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is listening on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment minus any IOP_ settings, for a loopback server on `port`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOP_")}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "IOP_HOST": "127.0.0.1",
            "IOP_PORT": str(port),
            "IOP_PUBLIC_URL": f"https://127.0.0.1:{port}",
            "IOP_DATA_DIR": str(data_dir),
            "IOP_LOG_LEVEL": "warning",
            "IOP_LOG_FORMAT": "json",
            "IOP_ICE_HOSTS": "127.0.0.1",  # media stays on loopback too
            # The demo group's next session may be days away: check in for it now.
            "IOP_CHECKIN_LOCATION_WINDOW_MINUTES": str(14 * 24 * 60),
        }
    )
    return env


async def consent_and_check_in(conn: Any, keyring: Any, patient_id: str, session_id: str) -> None:
    """A seeded patient's consents and a calm check-in for one session (fictional data)."""
    from crisis.questions import next_question
    from server.checkin import safety_checks as checkin_safety
    from server.checkin import store as checkin_store
    from server.consent import ledger as consent_ledger
    from server.consent import templates as consent_templates

    now = dt.datetime.now(dt.UTC)
    terms = await consent_templates.session_terms(conn, session_id)
    assert terms is not None
    for kind in terms.required:
        template = await consent_templates.latest(conn, kind)
        document = await consent_templates.document_for(conn, template, terms.values)
        await consent_ledger.append(
            conn,
            keyring,
            patient_id=patient_id,
            kind=kind,
            event="consented",
            template_id=template.id,
            template_version=template.version,
            text_sha256=document.sha256(),
            language="en",
            session_id=session_id,
            presented_at=now,
            consented_at=now,
            method="e_signature",
            signer_role="patient",
            signature="Benchmark Patient",
            recorded_at=now,
        )
    await checkin_safety.save_safety_check(
        conn,
        keyring,
        session_id=session_id,
        patient_id=patient_id,
        answers={
            "address": "1 Example Street, Example Valley, CA 00000 (example)",
            "county": "Example County",
            "callback_phone": "(555) 010-0150",
            "support_reachable": "yes",
            "private_space": True,
            "same_as_last_time": False,
        },
        now=now,
        recorded_by=None,
    )
    plan = await checkin_store.plan_for(conn, session_id, patient_id, now)
    answers: dict[str, str] = {}
    while (qid := next_question(plan, answers)) is not None:
        answers[qid] = "no" if qid.startswith(("cssrs", "sud")) else "0"
    await checkin_store.save_screening(
        conn,
        keyring,
        session_id=session_id,
        patient_id=patient_id,
        plan=plan,
        answers=answers,
        now=now,
    )

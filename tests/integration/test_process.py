"""`python -m server` as a separate process: start-up, demo, shutdown and what it logs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest

from tests.conftest import ROOT, TEST_ENV, free_port

CANARY = {
    "legal_name": "Zebulon Canarywood",
    "display_name": "Zeb Canary",
    "backup_phone": "(555) 010-0177",
    "alternate_phone": "(555) 010-0178",
    "home_address": "4417 Canaryfeather Court, Modesto, CA 95354",
    "date_of_birth": "1977-07-17",
    "preferred_ed": "Canaryvale Memorial Hospital",
    "support_person": {
        "name": "Quentin Canarysupport",
        "relationship": "brother",
        "phone": "(555) 010-0179",
    },
    "support_release": True,
}
CANARY_VALUES = [
    "Zebulon",
    "Canarywood",
    "Zeb Canary",
    "010-0177",
    "010-0178",
    "010-0179",
    "4417 Canaryfeather",
    "1977-07-17",
    "Canaryvale",
    "Quentin",
    "Canarysupport",
]


def _env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOP_", "DATABASE_URL"))}
    env.update(
        {
            **TEST_ENV,
            "IOP_HOST": "127.0.0.1",
            "IOP_PORT": str(port),
            "IOP_PUBLIC_URL": f"https://127.0.0.1:{port}",
            "IOP_DATA_DIR": str(data_dir),
            "IOP_LOG_FORMAT": "json",
            "IOP_LOG_LEVEL": "debug",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    base_url: str
    ca_file: Path
    data_dir: Path
    output: bytearray = field(default_factory=bytearray)
    reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        """Drain the server's output as it comes, so a full pipe never blocks its logging."""

        async def read() -> None:
            assert self.process.stdout is not None
            while chunk := await self.process.stdout.read(65536):
                self.output.extend(chunk)

        self.reader = asyncio.create_task(read())

    def client(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=self.base_url,
            connector=aiohttp.TCPConnector(
                ssl=ssl.create_default_context(cafile=str(self.ca_file))
            ),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then everything the process printed."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), timeout=30)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, timeout=30)
        return self.process.returncode or 0, self.output.decode()


async def _start(data_dir: Path, port: int, **extra: str) -> ServerProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "serve",
        env=_env(data_dir, port, **extra),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = ServerProcess(
        process, f"https://127.0.0.1:{port}", data_dir / "certs" / "ca.crt", data_dir
    )
    running.start_reading()
    for _ in range(300):
        if process.returncode is not None:
            break
        if running.ca_file.exists():
            try:
                async with running.client() as client, client.get("/healthz") as response:
                    if response.status == 200:
                        return running
            except (aiohttp.ClientError, ssl.SSLError, OSError):
                pass
        await asyncio.sleep(0.1)
    code, output = await running.stop()
    raise AssertionError(f"server did not start (exit {code}):\n{output}")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, dict[str, Any]]]:
    data_dir = tmp_path / "data"
    port = free_port()
    demo = _run(["demo", "--json"], _env(data_dir, port))
    assert demo.returncode == 0, demo.stderr
    running = await _start(data_dir, port)
    try:
        yield running, json.loads(demo.stdout)
    finally:
        if running.process.returncode is None:
            await running.stop()


def test_a_bad_port_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _run(["serve"], _env(tmp_path, 8443, IOP_PORT="abc"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "IOP_PORT" in lines[0] and "abc" in lines[0]
    assert not (tmp_path / "secret.key").exists()


def test_a_bad_database_url_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _run(["migrate"], _env(tmp_path, 8443, DATABASE_URL="mysql://x"))
    assert result.returncode != 0
    assert result.stderr.strip().startswith("configuration error: DATABASE_URL")


def test_demo_json_describes_staff_and_a_group_of_eight_once(tmp_path: Path) -> None:
    env = _env(tmp_path, 9443)
    first = _run(["demo", "--json"], env)
    assert first.returncode == 0, first.stderr
    demo = json.loads(first.stdout)
    assert demo["base_url"] == "https://127.0.0.1:9443"
    roles = sorted(member["role"] for member in demo["staff"])
    assert roles == ["admin", "clinician", "clinician", "supervisor"]
    assert all(len(member["password"]) >= 12 for member in demo["staff"])
    (group,) = demo["groups"]
    assert len(group["patients"]) == 8
    assert set(group["patients"][0]) == {"id", "display_name", "join_url", "join_session_id"}
    assert all(p["join_url"].startswith("https://127.0.0.1:9443/j/") for p in group["patients"])
    assert all(len(member["totp_secret"]) == 32 for member in demo["staff"])
    again = _run(["demo", "--json"], env)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_key_rotation_command_reencrypts_and_leaves_the_audit_chain_intact(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, 9443)
    assert _run(["demo", "--json"], env).returncode == 0
    rotated = _run(["keys", "rotate", "--batch", "3"], env)
    # At least 8 patients x 5 sealed fields in the demo, 4 staff TOTP secrets, one
    # patient's safety plan and aftercare plan (46), plus the demo's homework and mood
    # entries; each rotation re-encrypts every one of them again.
    assert rotated.returncode == 0, rotated.stderr
    first = re.search(r"new key k2 is current; re-encrypted (\d+) values", rotated.stdout)
    assert first is not None, rotated.stdout
    again = _run(["keys", "rotate"], env)
    second = re.search(r"new key k3 is current; re-encrypted (\d+) values", again.stdout)
    assert second is not None, again.stdout
    assert int(first.group(1)) == int(second.group(1)) > 46
    verified = _run(["audit", "verify"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit trail intact" in verified.stdout


def test_migrate_command_reports_the_schema(tmp_path: Path) -> None:
    result = _run(["migrate"], _env(tmp_path, 9443))
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    assert (tmp_path / "iop.sqlite3").exists()


async def test_serves_https_verified_by_the_dev_ca_and_stops_cleanly_on_sigterm(
    served: tuple[ServerProcess, dict[str, Any]],
) -> None:
    running, _demo = served
    async with running.client() as client:
        assert await (await client.get("/readyz")).json() == {"status": "ready", "database": "ok"}
    code, output = await running.stop()
    assert code == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "server.listening" in events
    assert events[-2:] == ["storage.closed", "server.stopped"]


async def test_phi_sent_through_the_api_never_reaches_the_logs(
    served: tuple[ServerProcess, dict[str, Any]],
) -> None:
    running, demo = served
    admin = next(m for m in demo["staff"] if m["role"] == "admin")
    program_id = demo["program"]["id"]
    async with running.client() as client:
        signed = await client.post(
            "/api/auth/session",
            json={
                "email": admin["email"],
                "password": admin["password"],
                "code": pyotp.TOTP(admin["totp_secret"]).now(),
            },
        )
        assert signed.status == 200
        created = await client.post("/api/patients", json={"program_id": program_id, **CANARY})
        assert created.status == 201, await created.text()
        patient_id = (await created.json())["id"]
        listed = await client.get("/api/patients")
        assert CANARY["legal_name"] in await listed.text()
        record = await client.get(f"/api/patients/{patient_id}")
        assert (await record.json())["support_person"]["name"] == "Quentin Canarysupport"
        page = await client.get(f"/patients/{patient_id}")
        assert "Canaryvale Memorial Hospital" in await page.text()
        edit = await client.get(f"/admin/patients/{patient_id}/edit")
        assert "Quentin Canarysupport" in await edit.text()
        link = await client.post(f"/api/patients/{patient_id}/join-links", json={"standing": True})
        assert link.status == 201
        async with running.client() as phone:
            landing = await phone.get((await link.json())["url"])
            assert landing.status == 200
        refused = await client.post(
            "/api/patients",
            json={"program_id": program_id, **CANARY, "backup_phone": "Canary QX0177 x"},
        )
        assert refused.status == 422
        unknown = await client.post("/api/patients", json={**CANARY, "surprise": CANARY})
        assert unknown.status == 422
        await client.get("/api/patients?name=Zebulon+Canarywood")
        await client.get("/nowhere/Zebulon-Canarywood")
    code, output = await running.stop()
    assert code == 0
    assert "patient.created" in output
    for value in CANARY_VALUES:
        assert value not in output, f"a PHI canary reached the logs: {value}"
    # Not "0177" alone: that also turns up in timestamps' microseconds.
    assert "Canary" not in output and "QX0177" not in output and "0100177" not in output
    assert "patient.phi_read" in output
    database = (running.data_dir / "iop.sqlite3").read_bytes()
    wal = running.data_dir / "iop.sqlite3-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    for value in CANARY_VALUES:
        assert value.encode() not in stored, f"PHI stored in plain text: {value}"


async def test_signatures_check_in_answers_and_addresses_never_reach_the_logs(
    served: tuple[ServerProcess, dict[str, Any]],
) -> None:
    running, demo = served
    patient = demo["groups"][0]["patients"][0]
    signature = "Zebulon Q. Canarysignature"
    async with running.client() as phone:
        assert (await phone.get(patient["join_url"])).status == 200
        for _ in range(3):
            page = await (await phone.get("/consent")).text()
            kind = re.search(r'action="/consent/([a-z_0-9]+)"', page)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert kind is not None and token is not None
            acks = len(re.findall(r'name="ack_\d+"', page))
            form = {"csrf_token": token.group(1), "full_name": signature, "decision": "agree"}
            form |= {f"ack_{i}": "on" for i in range(acks)}
            await phone.post(f"/consent/{kind.group(1)}", data=form)
        page = await (await phone.get("/checkin")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        safety = await phone.post(
            "/checkin/safety",
            data={
                "csrf_token": token.group(1),
                "where": "new",
                "address": "9911 Canarycheck Lane, Fresno, CA 93701",
                "zip": "93701",
                "county": "Canarycounty",
                "callback_phone": "(555) 010-0191",
                "support_reachable": "yes",
                "private_space": "yes",
            },
        )
        assert safety.status == 200
        for _ in range(40):
            page = await (await phone.get("/checkin")).text()
            intro = re.search(r'name="introduced" value="([a-z0-9_]+)"', page)
            if intro is not None:  # the screen before the suicide questions
                data = {"csrf_token": token.group(1), "introduced": intro.group(1)}
                await phone.post("/checkin/answer", data=data)
                continue
            qid = re.search(r'name="qid" value="([a-z0-9_]+)"', page)
            if qid is None:
                break
            answer = "yes" if qid.group(1) in ("phq9_9", "cssrs_q1") else "no"
            answer = "1" if qid.group(1).startswith(("phq9", "gad7")) else answer
            await phone.post(
                "/checkin/answer",
                data={"csrf_token": token.group(1), "qid": qid.group(1), "answer": answer},
            )
        assert (await phone.get("/room")).status == 200
    code, output = await running.stop()
    assert code == 0
    assert "consent.recorded" in output and "checkin.screened" in output
    for secret in (
        "Canarysignature",
        "Zebulon",
        "Your clinician for this session is",
        "Canarycheck",
        "Canarycounty",
        "010-0191",
        "phq9_",
        "cssrs_q1",
        "Little interest or pleasure",
    ):
        assert secret not in output

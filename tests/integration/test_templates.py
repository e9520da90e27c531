"""Session templates: the command, the admin editor, a session's own plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import CSRF, ROOT, RunningServer, signed_in, staff_login


def test_templates_json_prints_every_shipped_template(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "templates", "--json"],
        env={"IOP_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = {t["name"]: t for t in json.loads(result.stdout)}
    assert {name: t["minutes"] for name, t in found.items()} == {
        "evening-group-180": 180,
        "group-90": 90,
        "individual-50": 50,
        "psychiatry-25": 25,
        "tech-test-10": 10,
        "family-50": 50,
    }
    evening = found["evening-group-180"]
    assert set(evening) == {"name", "minutes", "phases"}
    assert evening["phases"][2] == {
        "kind": "checkin_round",
        "title": "Check-in round",
        "minutes": 25,
    }
    assert sum(p["minutes"] for p in evening["phases"]) == 180


async def test_admins_edit_a_template_with_clear_errors(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await (await admin.get("/admin/templates/group-90")).text()
        token = CSRF.search(page)
        assert token is not None
        form = [
            ("csrf_token", token.group(1)),
            ("template_title", "Short group"),
            ("kind", "arrival"),
            ("title", "Arrive"),
            ("minutes", "5"),
            ("exercise", ""),
            ("turn_seconds", ""),
            ("kind", "checkin_round"),
            ("title", "Check-in"),
            ("minutes", "20"),
            ("exercise", ""),
            ("turn_seconds", "90"),
            ("kind", ""),
            ("title", ""),
            ("minutes", ""),
            ("exercise", ""),
            ("turn_seconds", ""),
        ]
        saved = await admin.post("/admin/templates/group-90", data=form, allow_redirects=False)
        assert saved.status == 303
        listing = await (await admin.get("/admin/templates")).text()
        assert "Short group" in listing and "Arrive 5 · Check-in 20" in listing
        bad = [(k, "abc" if k == "minutes" else v) for k, v in form]
        refused = await admin.post("/admin/templates/group-90", data=bad)
        assert refused.status == 400 and "whole number" in await refused.text()
        new = await admin.get("/admin/templates/new?name=weekend-group", allow_redirects=False)
        assert new.headers["Location"] == "/admin/templates/weekend-group"

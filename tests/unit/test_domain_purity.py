import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("aiohttp", "aiortc", "sqlalchemy", "av", "asyncpg", "redis")


def _import_in_fresh_interpreter(modules: list[str], report: str) -> str:
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print({report})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return result.stdout.strip()


def _domain_modules(*, media: bool) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("rooms", "crisis")
        for path in (ROOT / package).rglob("*.py")
        if (media or "media" not in path.parent.relative_to(ROOT).parts)
        and path.name != "__init__.py"
    ) + ["rooms", "crisis"]


def test_domain_packages_import_no_web_media_storage_or_bus_library() -> None:
    loaded = _import_in_fresh_interpreter(
        _domain_modules(media=False),
        f"','.join(m for m in {FORBIDDEN!r} if m in sys.modules)",
    )
    assert loaded == ""


def test_rooms_outside_the_sfu_never_import_the_sfu() -> None:
    # The room reaches media through the MediaPort the server injects, never directly.
    loaded = _import_in_fresh_interpreter(
        _domain_modules(media=False),
        "','.join(m for m in sys.modules if m == 'rooms.media' or m.startswith('rooms.media.'))",
    )
    assert loaded == ""

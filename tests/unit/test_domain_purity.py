import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("aiohttp", "aiortc", "sqlalchemy", "av")


def test_domain_packages_import_no_web_media_or_storage_library() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("rooms", "crisis")
        for path in (ROOT / package).rglob("*.py")
        if "media" not in path.parts and path.name != "__init__.py"
    ) + ["rooms", "crisis"]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""

"""What every benchmark needs to run the server under test: a free loopback port and the
environment of a server that keeps to loopback."""

from __future__ import annotations

import os
import socket
from pathlib import Path


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
        }
    )
    return env

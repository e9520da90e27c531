"""`serve --workers N`: N nodes on consecutive ports under one supervising process.

One Python process per core is the unit of capacity (the SFU forwards packets in the
event loop). The supervisor restarts a worker that exits on its own, with a back-off so
a worker that cannot start does not spin, and passes SIGTERM/SIGINT on to every worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from server.config import Settings
from server.logs import get_logger

log = get_logger(__name__)
POLL_S = 0.2
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
# A worker that ran this long before exiting is restarted at once next time.
STABLE_S = 60.0


@dataclass
class Worker:
    """One node process and when to start it again."""

    index: int
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = RESTART_MIN_S
    restart_at: float = field(default=0.0)

    def start(self) -> None:
        """Start (or restart) the node process."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], env=self.env, stdin=subprocess.DEVNULL
        )
        self.started = time.monotonic()
        log.info("worker.started", worker=self.index, port=self.port, pid=self.process.pid)


def worker_env(settings: Settings, index: int, environ: dict[str, str]) -> dict[str, str]:
    """A worker's environment: its own port, and its own node id when one was given."""
    env = dict(environ)
    env["IOP_PORT"] = str(settings.port + index)
    if environ.get("IOP_NODE_ID"):
        env["IOP_NODE_ID"] = f"{environ['IOP_NODE_ID']}-{index + 1}"
    return env


def supervise(settings: Settings, count: int) -> int:
    """Run `count` workers until SIGTERM or SIGINT; return the supervisor's exit code."""
    workers = [
        Worker(i, settings.port + i, worker_env(settings, i, dict(os.environ)))
        for i in range(count)
    ]
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("supervisor.started", workers=count, ports=[w.port for w in workers])
    try:
        for worker in workers:
            worker.start()
        while not stopping:
            time.sleep(POLL_S)
            now = time.monotonic()
            for worker in workers:
                _watch(worker, now)
    finally:
        _stop_all(workers, settings.shutdown_timeout_s + 5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("supervisor.stopped")
    return 0


def _watch(worker: Worker, now: float) -> None:
    process = worker.process
    if process is None:
        if now >= worker.restart_at:
            worker.start()
        return
    code = process.poll()
    if code is None:
        return
    ran = now - worker.started
    worker.backoff = RESTART_MIN_S if ran > STABLE_S else min(RESTART_MAX_S, worker.backoff * 2)
    worker.process = None
    worker.restart_at = now + (0.0 if ran > STABLE_S else worker.backoff)
    wait = round(worker.restart_at - now, 1)
    log.warning("worker.exited", worker=worker.index, exit_code=code, restart_in_s=wait)


def _stop_all(workers: list[Worker], timeout_s: float) -> None:
    running = [w.process for w in workers if w.process is not None and w.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""HTTP benchmark: requests per second and latency of the API on loopback.

Starts `python -m server` in its own process on a temporary SQLite database with the demo
program, then drives it from this process with C concurrent clients for D seconds per
route: /readyz (one database round trip) and GET /api/groups as the signed-in
clinician (session cookie, role check, two queries).

    python bench/api_load.py [--seconds 5] [--concurrency 16] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

ROOT = Path(__file__).resolve().parent.parent
from processes import free_port, server_env  # noqa: E402  (bench/processes.py)


async def _wait_ready(base: str, ssl_ctx: ssl.SSLContext) -> None:
    for _ in range(300):
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as client,
                client.get(base + "/healthz") as response,
            ):
                if response.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


async def _drive(
    client: aiohttp.ClientSession, url: str, seconds: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with client.get(url) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
    }


async def run(seconds: float, concurrency: int) -> dict[str, Any]:
    """Start a server, measure each route, stop the server."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        env = server_env(data_dir, port)
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "demo",
            "--json",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await demo.communicate()
        clinician = next(m for m in json.loads(out)["staff"] if m["role"] == "clinician")
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
        )
        try:
            base = f"https://127.0.0.1:{port}"
            ca = data_dir / "certs" / "ca.crt"
            for _ in range(300):
                if ca.exists():
                    break
                await asyncio.sleep(0.1)
            ssl_ctx = ssl.create_default_context(cafile=str(ca))
            await _wait_ready(base, ssl_ctx)
            connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=concurrency)
            async with aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)
            ) as client:
                signed = await client.post(
                    base + "/api/auth/session",
                    json={
                        "email": clinician["email"],
                        "password": clinician["password"],
                        "code": pyotp.TOTP(clinician["totp_secret"]).now(),
                    },
                )
                signed.raise_for_status()
                results = {
                    "readyz": await _drive(client, base + "/readyz", seconds, concurrency),
                    "api_groups": await _drive(client, base + "/api/groups", seconds, concurrency),
                }
        finally:
            server.send_signal(signal.SIGTERM)
            await server.wait()
    return {
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "seconds": seconds,
        "concurrency": concurrency,
        **results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.concurrency))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['machine']}; {args.concurrency} clients, {args.seconds:g} s per route")
    for route in ("readyz", "api_groups"):
        r = result[route]
        print(
            f"  {route:<11} {r['rps']:>8.1f} req/s  p50 {r['p50_ms']:.2f} ms  "
            f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}"
        )


if __name__ == "__main__":
    main()

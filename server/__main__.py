"""`python -m server [serve|migrate|demo]`: the server's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from sqlalchemy.exc import SQLAlchemyError

from server.app import create_app, tls_context
from server.clock import utcnow
from server.config import ConfigError, Settings
from server.demo import DemoExistsError, database_is_empty, describe, seed_demo
from server.logs import configure_logging, get_logger
from server.phi import KeyFileError, Keyring, ensure_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade

log = get_logger("server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server", description="Virtual IOP session platform server."
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve HTTPS (the default command)")
    serve.add_argument(
        "--demo-if-empty", action="store_true", help="seed the demo program into an empty database"
    )
    commands.add_parser("migrate", help="apply database migrations and exit")
    demo = commands.add_parser("demo", help="create the demo program")
    demo.add_argument("--json", action="store_true", help="print the demo as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; configuration problems exit non-zero with a one-line reason."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    command = args.command or "serve"
    # The server logs to stdout; one-shot commands keep stdout for their own output.
    configure_logging(
        settings.log_level,
        settings.log_format,
        stream=sys.stdout if command == "serve" else sys.stderr,
    )
    # aiohttp-session keeps its own state under string request keys; the warning is noise.
    warnings.filterwarnings(
        "ignore", message="It is recommended to use web.RequestKey", category=NotAppKeyWarning
    )
    try:
        keyring, created = ensure_keyring(settings.secret_key_file)
    except (KeyFileError, OSError) as exc:
        print(f"configuration error: IOP_SECRET_KEY_FILE: {exc}", file=sys.stderr)
        return 2
    if created:
        log.info("secrets.created")
    try:
        if command == "migrate":
            return asyncio.run(_migrate(settings))
        if command == "demo":
            return asyncio.run(_demo(settings, keyring, as_json=args.json))
        return _serve(settings, keyring, demo_if_empty=getattr(args, "demo_if_empty", False))
    except (SQLAlchemyError, OSError) as exc:
        print(f"cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        log.error("startup.failed", error_type=type(exc).__name__)
        return 1


async def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        return await work(engine)
    finally:
        await engine.dispose()


async def _migrate(settings: Settings) -> int:
    async def done(engine: Any) -> int:
        print(f"database is at the newest schema ({engine.dialect.name})")
        return 0

    return await _with_engine(settings, done)


async def _demo(settings: Settings, keyring: Keyring, *, as_json: bool) -> int:
    async def seed(engine: Any) -> int:
        try:
            demo = await seed_demo(
                engine, keyring, settings.public_url, utcnow(), settings.schedule_horizon_days
            )
        except DemoExistsError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(json.dumps(demo, indent=2) if as_json else describe(demo))
        return 0

    return await _with_engine(settings, seed)


def _serve(settings: Settings, keyring: Keyring, *, demo_if_empty: bool) -> int:
    if demo_if_empty:

        async def seed_if_empty(engine: Any) -> int:
            if await database_is_empty(engine):
                demo = await seed_demo(
                    engine, keyring, settings.public_url, utcnow(), settings.schedule_horizon_days
                )
                print(describe(demo), flush=True)
            return 0

        asyncio.run(_with_engine(settings, seed_if_empty))
    context = tls_context(settings)
    app = create_app(settings, keyring)

    def announce(_message: str) -> None:
        # run_app calls this once its sites are listening.
        log.info(
            "server.listening", url=settings.public_url, host=settings.host, port=settings.port
        )

    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=context,
        access_log=None,
        print=announce,
        shutdown_timeout=settings.shutdown_timeout_s,
        handle_signals=True,
    )
    log.info("server.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

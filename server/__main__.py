"""`python -m server [serve|migrate|demo]`: the server's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from server import audit
from server.app import create_app, prepare_database, tls_context
from server.clock import utcnow
from server.cluster.nodes import (
    DRAIN_NOW,
    DRAIN_SAFE,
    bus_channel,
    live_nodes,
    request_drain,
    rooms_of,
)
from server.cluster.processes import supervise
from server.config import ConfigError, Settings
from server.consent import ledger as consent_ledger
from server.crisis import timeline as crisis_timeline
from server.demo import DemoExistsError, database_is_empty, describe, seed_demo
from server.keyrotation import reencrypt
from server.logs import configure_logging, get_logger
from server.phi import (
    KeyFileError,
    Keyring,
    add_key,
    add_mac_key,
    add_signing_key,
    ensure_keyring,
    load_keyring,
)
from server.storage.engine import create_engine
from server.storage.migrate import MigrationRefusedError
from server.structure.store import templates as all_templates

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
    serve.add_argument(
        "--workers",
        type=int,
        nargs="?",
        const=os.cpu_count() or 1,
        default=None,
        metavar="N",
        help="run N nodes on consecutive ports under a supervisor (no N: one per core); "
        "needs REDIS_URL",
    )
    drain = commands.add_parser(
        "drain", help="move a node's rooms to other nodes (multi-node mode)"
    )
    drain.add_argument("--node", required=True, help="the node's id (see `nodes`)")
    drain.add_argument(
        "--now", action="store_true", help="move every room at once, not between clock phases"
    )
    drain.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait and report moves (default 30)"
    )
    commands.add_parser("nodes", help="list the live nodes (multi-node mode)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    demo = commands.add_parser("demo", help="create the demo program")
    demo.add_argument("--json", action="store_true", help="print the demo as one JSON object")
    keys = commands.add_parser("keys", help="PHI encryption keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_commands.add_parser(
        "rotate",
        help="add a new PHI key and re-encrypt every PHI value under it; add a new chain MAC "
        "key for new rows (old rows keep verifying under theirs)",
    )
    rotate.add_argument("--batch", type=int, default=200, help="rows per transaction")
    keys_commands.add_parser(
        "rotate-signing", help="add a new consent signing key (older ones still verify)"
    )
    consent = commands.add_parser("consent", help="the consent ledger")
    consent_commands = consent.add_subparsers(dest="consent_command", required=True)
    consent_commands.add_parser(
        "verify", help="check every row's keyed MAC, the chain and every signature"
    )
    export = consent_commands.add_parser("export", help="one patient's consents as JSON")
    export.add_argument("--patient", required=True, help="patient id")
    templates_cmd = commands.add_parser("templates", help="session templates")
    templates_cmd.add_argument("--json", action="store_true", help="print them as a JSON array")
    audit_cmd = commands.add_parser("audit", help="the audit trail")
    audit_commands = audit_cmd.add_subparsers(dest="audit_command", required=True)
    audit_commands.add_parser(
        "verify",
        help="check every row's keyed MAC and the chain; name the first changed row and column",
    )
    crisis_cmd = commands.add_parser("crisis", help="the crisis event timelines")
    crisis_commands = crisis_cmd.add_subparsers(dest="crisis_command", required=True)
    crisis_commands.add_parser(
        "verify",
        help="check every step's keyed MAC and the chain; name the first changed step and column",
    )
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
    if command in ("drain", "nodes"):
        if settings.redis_url is None:
            print(f"configuration error: REDIS_URL: `{command}` needs it", file=sys.stderr)
            return 2
        configure_logging(settings.log_level, settings.log_format, stream=sys.stderr)
        try:
            if command == "nodes":
                return asyncio.run(_nodes(settings))
            mode = DRAIN_NOW if args.now else DRAIN_SAFE
            return asyncio.run(_drain(settings, args.node, mode, args.wait))
        except (RedisError, OSError) as exc:
            print(f"cannot reach Redis: {type(exc).__name__}", file=sys.stderr)
            return 1
    workers = getattr(args, "workers", None)
    if workers is not None and (workers < 1 or (workers > 1 and settings.redis_url is None)):
        reason = "at least 1" if workers < 1 else "several nodes need REDIS_URL (multi-node mode)"
        print(f"configuration error: --workers: {reason}", file=sys.stderr)
        return 2
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
    if not settings.mfa_required:
        log.warning(
            "auth.mfa_relaxed",
            reason="IOP_MFA_REQUIRED is off: staff without two-step sign-in get in with a password",
        )
    try:
        if command == "migrate":
            return asyncio.run(_migrate(settings))
        if command == "demo":
            return asyncio.run(_demo(settings, keyring, as_json=args.json))
        if command == "keys" and args.keys_command == "rotate-signing":
            print(f"new signing key {add_signing_key(settings.secret_key_file)} is current")
            return 0
        if command == "keys":
            return asyncio.run(_rotate(settings, args.batch))
        if command == "templates":
            return asyncio.run(_templates(settings, as_json=args.json))
        if command == "consent":
            return asyncio.run(_consent(settings, keyring, args))
        if command == "audit":
            return asyncio.run(_verify_audit(settings, keyring))
        if command == "crisis":
            return asyncio.run(_verify_crisis(settings, keyring))
        demo_if_empty = getattr(args, "demo_if_empty", False)
        if workers is not None:
            return _supervise(settings, keyring, workers, demo_if_empty=demo_if_empty)
        return _serve(settings, keyring, demo_if_empty=demo_if_empty)
    except MigrationRefusedError as exc:
        print(f"database migration refused: {exc}", file=sys.stderr)
        log.error("startup.migration_refused")
        return 1
    except (SQLAlchemyError, OSError) as exc:
        print(f"cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        log.error("startup.failed", error_type=type(exc).__name__)
        return 1


async def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    engine = create_engine(settings.database_url)
    try:
        # The migration that keys the chains re-MACs existing rows with the key file's key.
        await prepare_database(engine, utcnow(), load_keyring(settings.secret_key_file))
        return await work(engine)
    finally:
        await engine.dispose()


async def _migrate(settings: Settings) -> int:
    async def done(engine: Any) -> int:
        print(f"database is at the newest schema ({engine.dialect.name})")
        return 0

    return await _with_engine(settings, done)


async def _seed(engine: Any, keyring: Keyring, settings: Settings) -> dict[str, Any]:
    return await seed_demo(
        engine,
        keyring,
        settings.public_url,
        utcnow(),
        settings.schedule_horizon_days,
        settings.join_link_grace_minutes,
    )


async def _demo(settings: Settings, keyring: Keyring, *, as_json: bool) -> int:
    async def seed(engine: Any) -> int:
        try:
            demo = await _seed(engine, keyring, settings)
        except DemoExistsError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        print(json.dumps(demo, indent=2) if as_json else describe(demo))
        return 0

    return await _with_engine(settings, seed)


async def _rotate(settings: Settings, batch: int) -> int:
    key_id = add_key(settings.secret_key_file)
    mac_key_id = add_mac_key(settings.secret_key_file)
    keyring = load_keyring(settings.secret_key_file)

    async def work(engine: Any) -> int:
        count = await reencrypt(engine, keyring, batch_size=max(1, batch))
        async with engine.begin() as conn:
            await audit.record(
                conn,
                keyring,
                actor=audit.SYSTEM,
                action="keys.rotated",
                now=utcnow(),
                detail={"key_id": key_id, "mac_key_id": mac_key_id, "rewritten": count},
            )
        print(
            f"new key {key_id} is current; re-encrypted {count} values; "
            f"new chain rows are MACed with {mac_key_id}"
        )
        return 0

    return await _with_engine(settings, work)


async def _verify_audit(settings: Settings, keyring: Keyring) -> int:
    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            result = await audit.verify(conn, keyring)
        if result.ok:
            print(f"audit trail intact: {result.rows} rows")
            return 0
        print(f"audit trail broken: {result.describe()}")
        return 1

    return await _with_engine(settings, work)


async def _verify_crisis(settings: Settings, keyring: Keyring) -> int:
    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            result = await crisis_timeline.verify(conn, keyring)
        if result.ok:
            print(f"crisis timelines intact: {result.rows} steps")
            return 0
        print(f"crisis timelines broken: {result.describe()}")
        return 1

    return await _with_engine(settings, work)


async def _templates(settings: Settings, *, as_json: bool) -> int:
    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await all_templates(conn)
        if as_json:
            print(json.dumps([t.summary() for t in found], indent=2))
            return 0
        for t in found:
            phases = ", ".join(f"{p.title} {p.minutes}" for p in t.phases)
            print(f"{t.name} ({t.minutes} min): {phases}")
        return 0

    return await _with_engine(settings, work)


async def _consent(settings: Settings, keyring: Keyring, args: argparse.Namespace) -> int:
    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            if args.consent_command == "export":
                print(
                    json.dumps(await consent_ledger.export(conn, keyring, args.patient), indent=2)
                )
                return 0
            result = await consent_ledger.verify(conn, keyring)
        if result.ok:
            print(f"consent ledger intact: {result.rows} rows, every signature valid")
            return 0
        print(f"consent ledger broken: {result.describe()}")
        return 1

    return await _with_engine(settings, work)


def _prepare(settings: Settings, keyring: Keyring, *, demo_if_empty: bool) -> None:
    async def seed_if_empty(engine: Any) -> int:
        if demo_if_empty and await database_is_empty(engine):
            print(describe(await _seed(engine, keyring, settings)), flush=True)
        return 0

    asyncio.run(_with_engine(settings, seed_if_empty))


def _supervise(settings: Settings, keyring: Keyring, workers: int, *, demo_if_empty: bool) -> int:
    # Migrations, the demo and the development certificate once, before the workers race.
    _prepare(settings, keyring, demo_if_empty=demo_if_empty)
    tls_context(settings)
    return supervise(settings, workers)


async def _nodes(settings: Settings) -> int:
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        for node in await live_nodes(redis, settings.redis_prefix):
            print(f"{node.id}\t{node.state}\t{node.rooms} rooms\t{node.url}")
    finally:
        await redis.aclose()
    return 0


async def _drain(settings: Settings, node_id: str, mode: str, wait_s: float) -> int:
    prefix = settings.redis_prefix
    redis = Redis.from_url(str(settings.redis_url), decode_responses=True)
    pubsub = redis.pubsub()
    try:
        nodes = await live_nodes(redis, prefix)
        if node_id not in {n.id for n in nodes}:
            live = ", ".join(n.id for n in nodes) or "none"
            print(f"no live node {node_id} (live nodes: {live})", file=sys.stderr)
            return 1
        await pubsub.subscribe(bus_channel(prefix, "rooms"))
        held = await rooms_of(redis, prefix, node_id)
        await request_drain(redis, prefix, node_id, mode)
        when = "now" if mode == DRAIN_NOW else "at each room's next phase change"
        print(f"node {node_id} draining ({when}): {len(held)} rooms", flush=True)
        moved: dict[str, str | None] = {}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
            if item is not None:
                body = json.loads(item["data"])
                if body.get("event") == "moved" and body.get("from") == node_id:
                    moved[body["room"]] = body.get("to")
                    print(f"moved room {body['room']} to node {body.get('to')}", flush=True)
            if not await rooms_of(redis, prefix, node_id) and set(moved) >= held:
                break
        left = await rooms_of(redis, prefix, node_id)
        print(
            f"node {node_id}: {len(moved)} rooms moved, {len(left)} still here"
            + (f" ({', '.join(sorted(left))})" if left else ""),
            flush=True,
        )
        return 0
    finally:
        await pubsub.aclose()
        await redis.aclose()


def _serve(settings: Settings, keyring: Keyring, *, demo_if_empty: bool) -> int:
    if demo_if_empty:
        _prepare(settings, keyring, demo_if_empty=True)
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

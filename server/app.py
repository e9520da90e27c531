"""The application factory: settings in, a ready aiohttp application out."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

import web as web_assets
from certs import ensure_development_certificates
from crisis.notify import EventStream
from server import (
    admin_pages,
    api,
    attendance_pages,
    checkin_pages,
    cluster_views,
    consent_pages,
    crisis_api,
    crisis_bus,
    crisis_pages,
    dashboard,
    directory_pages,
    directory_store,
    help_pages,
    link_sockets,
    media,
    pages,
    patient_pages,
    room_pages,
    safety_plan_pages,
    signin,
    silence,
    staff_pages,
    staff_sockets,
    template_pages,
    ws,
)
from server.appkeys import BACKGROUND, CLOCK, CRISIS_STREAM, ENGINE, KEYRING, SETTINGS
from server.catalog import extend_all_group_sessions
from server.clock import Clock
from server.config import Settings
from server.consent_templates import ensure_shipped
from server.crisis_workers import crisis_workers
from server.logs import get_logger
from server.middleware import request_context, same_origin
from server.phi import Keyring
from server.storage.engine import create_engine
from server.storage.migrate import startup_lock, upgrade
from server.structure_store import ensure_shipped as ensure_shipped_templates

log = get_logger(__name__)
MAX_BODY_BYTES = 64 * 1024
SCHEDULE_REFRESH_S = 3600.0
SESSION_COOKIE = "iop_session"


def create_app(settings: Settings, keyring: Keyring, clock: Clock | None = None) -> web.Application:
    """Build the application; storage opens and background work starts on startup."""
    app = web.Application(
        middlewares=[request_context, same_origin], client_max_size=MAX_BODY_BYTES
    )
    app[SETTINGS] = settings
    app[KEYRING] = keyring
    app[CLOCK] = clock or Clock()
    app[BACKGROUND] = set()
    app[CRISIS_STREAM] = EventStream()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(web_assets.TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        context_processors=[aiohttp_jinja2.request_processor],
    )
    env.filters["zip"] = lambda first, second: zip(first, second, strict=False)
    setup_sessions(
        app,
        EncryptedCookieStorage(
            keyring.session_key,
            cookie_name=SESSION_COOKIE,
            secure=True,
            httponly=True,
            samesite="Lax",
            max_age=12 * 3600,
        ),
    )
    pages.add_routes(app)
    signin.add_routes(app)
    staff_pages.add_routes(app)
    admin_pages.add_routes(app)
    patient_pages.add_routes(app)
    room_pages.add_routes(app)
    consent_pages.add_routes(app)
    attendance_pages.add_routes(app)
    template_pages.add_routes(app)
    checkin_pages.add_routes(app)
    help_pages.add_routes(app)
    directory_pages.add_routes(app)
    api.add_routes(app)
    crisis_api.add_routes(app)
    crisis_pages.add_routes(app)
    safety_plan_pages.add_routes(app)
    app.router.add_static("/static/", web_assets.STATIC, name="static", append_version=True)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_schedule_refresher)
    media.setup(app)
    app.cleanup_ctx.append(crisis_workers)
    ws.setup(app)
    crisis_bus.setup(app)
    staff_sockets.setup(app)
    link_sockets.setup(app)
    cluster_views.setup(app)
    app.cleanup_ctx.append(silence.silence_ctx)
    dashboard.setup(app)
    return app


async def prepare_database(
    engine: AsyncEngine, now: dt.datetime, keyring: Keyring | None = None
) -> str | None:
    """Migrate, then install what ships with the code (consent texts, session templates,
    example directory rows); safe when several nodes start at once. The revision now current.
    `keyring` is needed when a migration re-MACs existing chained rows.
    """
    revision = await upgrade(engine, keyring=keyring)
    async with engine.begin() as conn:
        await startup_lock(conn)
        await ensure_shipped(conn, now)
        await ensure_shipped_templates(conn, now)
        await directory_store.ensure_examples(conn, now.date(), now)
    return revision


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database_url)
    revision = await prepare_database(engine, app[CLOCK].now(), app[KEYRING])
    log.info("storage.ready", engine=engine.dialect.name, revision=revision)
    app[ENGINE] = engine
    try:
        yield
    finally:
        await engine.dispose()
        log.info("storage.closed", engine=engine.dialect.name)


async def _schedule_refresher(app: web.Application) -> AsyncIterator[None]:
    """Keep group sessions created out to the scheduling horizon as days pass."""

    async def loop() -> None:
        while True:
            try:
                async with app[ENGINE].begin() as conn:
                    created = await extend_all_group_sessions(
                        conn, app[CLOCK].now(), app[SETTINGS].schedule_horizon_days
                    )
            except (SQLAlchemyError, OSError) as exc:
                # The next pass retries; sessions already scheduled are unaffected.
                log.warning("schedule.extend_failed", error_type=type(exc).__name__)
            else:
                if created:
                    log.info("schedule.extended", count=created)
            await asyncio.sleep(SCHEDULE_REFRESH_S)

    task = asyncio.create_task(loop(), name="schedule-refresher")
    app[BACKGROUND].add(task)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[BACKGROUND].discard(task)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The server's TLS context: the configured pair, or the development certificate."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        cert, key = settings.tls_cert, settings.tls_key
    else:
        paths = ensure_development_certificates(settings.certs_dir)
        cert, key = paths.server_cert, paths.server_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context

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
from server import pages
from server.accounts import linksockets as link_sockets
from server.accounts import livesockets as staff_sockets
from server.accounts import patient_entry as patient_pages
from server.accounts import signin
from server.admin import pages as admin_pages
from server.appkeys import BACKGROUND, CLOCK, CRISIS_STREAM, ENGINE, KEYRING, SETTINGS
from server.attendance import pages as attendance_pages
from server.caseload import pages as staff_pages
from server.catalog import api
from server.catalog.schedule import extend_all_group_sessions
from server.checkin import pages as checkin_pages
from server.clock import Clock
from server.cluster import roomcounts as cluster_views
from server.config import Settings
from server.consent import pages as consent_pages
from server.consent.templates import ensure_shipped
from server.crisis import api as crisis_api
from server.crisis import bus as crisis_bus
from server.crisis import help_pages, safety_plan_pages, silence
from server.crisis import oncall_api as crisis_oncall_api
from server.crisis import pages as crisis_pages
from server.crisis.workers import crisis_workers
from server.dashboard import hub as dashboard
from server.directory import pages as directory_pages
from server.directory import store as directory_store
from server.family import pages as family_pages
from server.family import release as family_release
from server.handouts import pages as handout_pages
from server.homework import pages as homework_pages
from server.logs import get_logger
from server.middleware import request_context, same_origin
from server.mood import pages as mood_pages
from server.mood import reminders as mood_reminders
from server.outcomes import aftercare_pages
from server.outcomes import pages as outcome_pages
from server.phi import Keyring
from server.roomsocket import media, ws
from server.roomsocket import pages as room_pages
from server.storage.engine import create_engine
from server.storage.migrate import startup_lock, upgrade
from server.structure import pages as template_pages
from server.structure.store import ensure_shipped as ensure_shipped_templates
from server.techcheck import echo as techcheck_echo
from server.techcheck import pages as techcheck_pages

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
    crisis_oncall_api.add_routes(app)
    crisis_pages.add_routes(app)
    safety_plan_pages.add_routes(app)
    outcome_pages.add_routes(app)
    aftercare_pages.add_routes(app)
    techcheck_pages.add_routes(app)
    homework_pages.add_routes(app)
    handout_pages.add_routes(app)
    mood_pages.add_routes(app)
    family_pages.add_routes(app)
    family_release.add_routes(app)
    app.router.add_static("/static/", web_assets.STATIC, name="static", append_version=True)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_schedule_refresher)
    media.setup(app)
    app.cleanup_ctx.append(crisis_workers)
    app.cleanup_ctx.append(mood_reminders.reminder_worker)
    ws.setup(app)
    techcheck_echo.setup(app)
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

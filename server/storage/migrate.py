"""Applying Alembic migrations on an async engine, at start-up or from the CLI."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.phi import Keyring

MIGRATIONS = Path(__file__).with_name("migrations")
# Nodes starting at once (serve --workers, or several machines) migrate and install the
# shipped rows one after another: PostgreSQL's transaction-scoped advisory lock, keyed by
# this number, serialises them. SQLite is single-node and needs none.
STARTUP_LOCK = 0x10F_5E55


class MigrationRefusedError(Exception):
    """A migration will not run on this database as it is; nothing was changed."""


def alembic_config() -> Config:
    """The Alembic configuration, without an alembic.ini on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(
    engine: AsyncEngine, revision: str = "head", *, keyring: Keyring | None = None
) -> str | None:
    """Bring the schema up to `revision`; return the revision now current.

    Migrations that re-MAC chained rows read `keyring` (the key file's keys); one that meets
    rows and has no keyring refuses, and the whole upgrade rolls back.
    """

    def run(connection: Connection) -> str | None:
        _lock(connection)
        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["keyring"] = keyring
        command.upgrade(config, revision)
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.begin() as conn:
        return await conn.run_sync(run)


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": STARTUP_LOCK})


async def startup_lock(conn: AsyncConnection) -> None:
    """Wait for other starting nodes' set-up transactions; held until this one ends."""
    await conn.run_sync(_lock)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None for an empty database."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def head_revision() -> str | None:
    """The newest revision the code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()

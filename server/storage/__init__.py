"""Storage: SQLAlchemy Core over aiosqlite or asyncpg, with Alembic migrations."""

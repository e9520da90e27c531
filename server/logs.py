"""structlog set-up: JSON or console lines that carry ids, never PHI."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

# Only these keys reach a log line. Everything else is dropped and its key name noted,
# so a developer who logs `name=` or `phone=` by mistake leaks a key name, not a value.
ALLOWED_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "exception",
        "request_id",
        "user_id",
        "role",
        "program_id",
        "group_id",
        "patient_id",
        "session_id",
        "room_id",
        "appointment_id",
        "node_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "host",
        "port",
        "url",
        "database",
        "engine",
        "revision",
        "count",
        "reason",
        "error",
        "error_type",
        "variable",
        "signal",
        "created",
        "redacted",
        "event_id",
        "purpose",
        "lease_ms",
        "mode",
        "to_node",
        "worker",
        "workers",
        "pid",
        "ports",
        "exit_code",
        "restart_in_s",
    }
)

# Keys that are known to carry PHI are refused even if someone adds them to the list above.
PHI_KEYS = frozenset(
    {
        "name",
        "legal_name",
        "display_name",
        "first_name",
        "last_name",
        "email",
        "phone",
        "backup_phone",
        "alternate_phone",
        "address",
        "home_address",
        "date_of_birth",
        "dob",
        "support_person",
        "answers",
        "signature",
        "body",
        "password",
        "token",
        "query",
    }
)


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Keep only allow-listed keys; record which keys were dropped."""
    dropped = sorted(key for key in event if key not in ALLOWED_KEYS or key in PHI_KEYS)
    for key in dropped:
        del event[key]
    if dropped:
        event["redacted"] = dropped
    return event


def _add_logger_name(
    logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None:
        event["logger"] = record.name
    return event


def _renderer(log_format: str) -> Any:
    if log_format == "auto":
        log_format = "console" if sys.stdout.isatty() else "json"
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback, colors=sys.stdout.isatty()
        )
    return structlog.processors.JSONRenderer()


def configure_logging(
    level: str = "info", log_format: str = "auto", stream: TextIO | None = None
) -> None:
    """Route structlog and the standard library through one redacting pipeline."""
    numeric = getattr(logging, level.upper())
    # show_locals=False: a traceback's local variables would carry PHI.
    exceptions = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exceptions,
            redact_event,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log prints raw URLs (join tokens); requests are logged by our middleware.
    logging.getLogger("aiohttp.access").disabled = True
    # SQL statements and their parameters never go to the log.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for noisy in ("aiosqlite", "asyncio", "asyncpg"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.INFO))


def get_logger(name: str) -> Any:
    """A structlog logger bound to a module name."""
    return structlog.stdlib.get_logger(name)

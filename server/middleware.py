"""Request middleware: ids and logging, error pages, security headers, origin checks."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import MutableMapping
from urllib.parse import urlsplit

import aiohttp_jinja2
import structlog
from aiohttp import web

from server.appkeys import SETTINGS
from server.logs import get_logger

log = get_logger(__name__)
REQUEST_ID = web.RequestKey("request_id", str)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

POLICY = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]


@functools.cache
def content_security_policy(public_url: str, node_url: str) -> str:
    """The policy: every fetch and socket goes back to this server, nowhere else.

    The browser code fetches its own origin and opens its sockets to it (a room moved to
    another node is a socket to the same name, or a page navigation to the other host);
    ICE and TURN are not fetches and are not governed by connect-src. 'self' covers wss:
    only from Safari 16 on, so this server's own names are also listed as wss: origins.
    """
    sockets = dict.fromkeys(f"wss://{urlsplit(url).netloc}" for url in (public_url, node_url))
    connect = " ".join(["connect-src 'self'", *sockets])
    return "; ".join(connect if part.startswith("connect-src") else part for part in POLICY)


SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self), "
    "geolocation=()",
}


# Only the static assets (no patient data, versioned URLs) may be kept by a browser or a
# proxy; every other response is a page, a download or an API answer that may carry PHI,
# and a per-route list would be one new page away from missing one.
CACHEABLE_PREFIX = "/static/"


def _secure(request: web.Request, headers: MutableMapping[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    settings = request.app[SETTINGS]
    headers.setdefault(
        "Content-Security-Policy",
        content_security_policy(settings.public_url, settings.node_url),
    )
    if not request.path.startswith(CACHEABLE_PREFIX):
        headers["Cache-Control"] = "no-store"
    elif "v" not in request.query:
        # Pages load their entry scripts by versioned URL (?v=<hash of the file>), but ES
        # modules import one another by plain URL (no build step writes versions into the
        # imports): those are revalidated on every load (a 304 while the file is unchanged),
        # so a new page never runs with an old shared module from the browser's cache.
        headers.setdefault("Cache-Control", "no-cache")


class ApiError(Exception):
    """A refusal with a status, a machine-readable code, a reason and per-field messages."""

    def __init__(
        self, status: int, code: str, reason: str, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason
        self.fields = fields or []


def _route_name(request: web.Request) -> str:
    # The route's pattern, never the raw path: paths may carry join tokens or ids.
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


KEPT_ERROR_HEADERS = ("Retry-After", "Allow")


def wants_json(request: web.Request) -> bool:
    """API and health callers get JSON; browsers get pages and redirects."""
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")


def _error_response(request: web.Request, status: int, reason: str) -> web.Response:
    request_id = request.get(REQUEST_ID, "")
    if wants_json(request):
        return web.json_response(
            {"error": _code(status), "reason": reason, "request_id": request_id},
            status=status,
        )
    return aiohttp_jinja2.render_template(
        "error.html",
        request,
        {"status": status, "reason": reason, "request_id": request_id},
        status=status,
    )


def _code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
        422: "invalid_input",
        429: "too_many_requests",
        500: "internal_error",
        503: "unavailable",
    }.get(status, "error")


@web.middleware
async def request_context(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Give every request an id, log its outcome, and turn failures into clear pages."""
    request_id = secrets.token_hex(8)
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            body: dict[str, object] = {
                "error": exc.code,
                "reason": exc.reason,
                "request_id": request_id,
            }
            if exc.fields:
                body["fields"] = exc.fields
            response = web.json_response(body, status=exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                status = exc.status
                _secure(request, exc.headers)
                raise
            response = _error_response(request, exc.status, exc.reason)
            # What the client is to do next travels with the error page (RFC 9110 15.5.6,
            # 10.2.3): when to retry a 503, which methods a 405 allows.
            for name in KEPT_ERROR_HEADERS:
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
        except Exception as exc:
            log.exception("request.failed", error_type=type(exc).__name__)
            response = _error_response(
                request, 500, "Something went wrong on our side. Nothing you entered was lost."
            )
        status = response.status
        _secure(request, response.headers)
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        log.info(
            "request",
            method=request.method,
            route=_route_name(request),
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )


@web.middleware
async def same_origin(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Refuse state-changing requests that another site's page started."""
    if request.method in UNSAFE_METHODS:
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            raise web.HTTPForbidden(reason="cross-site request refused")
        origin = request.headers.get("Origin")
        if origin is not None and origin != "null":
            public = urlsplit(request.app[SETTINGS].public_url)
            here = f"{request.scheme}://{request.host}"
            if origin not in (f"{public.scheme}://{public.netloc}", here):
                raise web.HTTPForbidden(reason="cross-origin request refused")
        if request.path.startswith("/api/") and request.can_read_body:
            if request.content_type != "application/json":
                raise web.HTTPUnsupportedMediaType(reason="send application/json")
    return await handler(request)

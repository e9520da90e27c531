"""Typed settings, read once from the environment at start-up."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
FANOUTS = ("c", "python")


class ConfigError(Exception):
    """A configuration variable holds a value the server cannot run with."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable about one server process."""

    host: str = "localhost"
    port: int = 8443
    public_url: str = "https://localhost:8443"
    data_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    secret_key_file: Path = Path("var/secret.key")
    log_level: str = "info"
    log_format: str = "auto"
    ice_hosts: tuple[str, ...] = ()
    schedule_horizon_days: int = 28
    shutdown_timeout_s: float = 10.0
    mfa_required: bool = True
    idle_lock_minutes: int = 15
    join_link_grace_minutes: int = 60
    standing_link_days: int = 30
    signin_window_minutes: int = 15
    signin_max_failures_account: int = 5
    signin_max_failures_address: int = 20
    signin_max_delay_s: int = 60
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    reconnect_grace_s: float = 30.0
    ws_help_burst: int = 3
    ws_help_per_minute: float = 3.0
    ws_chat_burst: int = 10
    ws_chat_per_minute: float = 30.0
    ws_react_burst: int = 5
    ws_react_per_minute: float = 20.0
    room_chat_kept: int = 500
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 4 * 3600
    ice_force_relay: bool = False
    video_kbps: int = 500
    screen_kbps: int = 1500
    video_codecs: tuple[str, ...] = ("vp8", "h264")
    fanout: str = "python"  # the SFU's fan-out: c (rooms/media/_fanout.c) or python
    directory_stale_days: int = 180
    timer_poll_s: float = 1.0
    webhook_retry_base_s: float = 5.0
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 12
    drop_callback_s: float = 120.0
    drop_welfare_s: float = 300.0
    silence_alert_s: float = 120.0
    silence_check_s: float = 5.0
    break_glass_minutes: int = 60
    checkin_location_window_minutes: int = 120
    help_presses_per_minute: int = 3
    mood_reminder_poll_s: float = 60.0
    node_id: str = "local"
    node_url: str = "https://localhost:8443"
    lease_s: float = 10.0
    rooms_per_node: int = 0  # 0: no limit
    redis_prefix: str = "iop:"

    @property
    def certs_dir(self) -> Path:
        """Where the development CA and server certificate live."""
        return self.data_dir / "certs"

    @property
    def is_sqlite(self) -> bool:
        """True when storage is the single-file SQLite database."""
        return self.database_url.startswith("sqlite")

    @property
    def multi_node(self) -> bool:
        """True when rooms are placed across nodes through Redis."""
        return self.redis_url is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables, refusing bad values by name."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        host = reader.get("IOP_HOST", "localhost", _host)
        port = reader.get("IOP_PORT", 8443, _port)
        default_public = f"https://{_url_host(host)}:{port}"
        public_url = reader.get("IOP_PUBLIC_URL", default_public, _https_url)
        data_dir = reader.get("IOP_DATA_DIR", Path("var"), _path)
        database_url = reader.get(
            "DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'iop.sqlite3'}", _database_url
        )
        redis_url = reader.get("REDIS_URL", None, _redis_url)
        tls_cert = reader.get("IOP_TLS_CERT", None, _existing_file)
        tls_key = reader.get("IOP_TLS_KEY", None, _existing_file)
        if (tls_cert is None) != (tls_key is None):
            missing = "IOP_TLS_KEY" if tls_key is None else "IOP_TLS_CERT"
            raise ConfigError(missing, "IOP_TLS_CERT and IOP_TLS_KEY must be set together")
        secret_key_file = reader.get("IOP_SECRET_KEY_FILE", data_dir / "secret.key", _path)
        log_level = reader.get("IOP_LOG_LEVEL", "info", _choice(LOG_LEVELS))
        log_format = reader.get("IOP_LOG_FORMAT", "auto", _choice(LOG_FORMATS))
        ice_hosts = reader.get("IOP_ICE_HOSTS", (), _ip_list)
        horizon = reader.get("IOP_SCHEDULE_HORIZON_DAYS", 28, _int_between(1, 366))
        mfa_required = reader.get("IOP_MFA_REQUIRED", True, _bool)
        idle = reader.get("IOP_IDLE_LOCK_MINUTES", 15, _int_between(1, 240))
        link_grace = reader.get("IOP_JOIN_LINK_GRACE_MINUTES", 60, _int_between(0, 24 * 60))
        standing = reader.get("IOP_STANDING_LINK_DAYS", 30, _int_between(1, 366))
        window = reader.get("IOP_SIGNIN_WINDOW_MINUTES", 15, _int_between(1, 24 * 60))
        per_account = reader.get("IOP_SIGNIN_MAX_FAILURES_ACCOUNT", 5, _int_between(1, 1000))
        per_address = reader.get("IOP_SIGNIN_MAX_FAILURES_ADDRESS", 20, _int_between(1, 10000))
        max_delay = reader.get("IOP_SIGNIN_MAX_DELAY_SECONDS", 60, _int_between(1, 3600))
        trusted_proxies = reader.get("IOP_TRUSTED_PROXIES", (), _networks)
        grace = reader.get("IOP_RECONNECT_GRACE_SECONDS", 30, _int_between(1, 600))
        help_burst = reader.get("IOP_WS_HELP_BURST", 3, _int_between(1, 100))
        help_rate = reader.get("IOP_WS_HELP_PER_MINUTE", 3.0, _float_between(0.1, 600))
        chat_burst = reader.get("IOP_WS_CHAT_BURST", 10, _int_between(1, 1000))
        chat_rate = reader.get("IOP_WS_CHAT_PER_MINUTE", 30.0, _float_between(0.1, 6000))
        react_burst = reader.get("IOP_WS_REACT_BURST", 5, _int_between(1, 1000))
        react_rate = reader.get("IOP_WS_REACT_PER_MINUTE", 20.0, _float_between(0.1, 6000))
        chat_kept = reader.get("IOP_ROOM_CHAT_KEPT", 500, _int_between(10, 100_000))
        turn_urls = reader.get("IOP_TURN_URLS", (), _turn_urls)
        turn_secret = reader.get("IOP_TURN_SECRET_FILE", None, _secret_file)
        if turn_urls and turn_secret is None:
            raise ConfigError("IOP_TURN_SECRET_FILE", "TURN servers need their shared secret")
        turn_ttl = reader.get("IOP_TURN_TTL_SECONDS", 4 * 3600, _int_between(60, 48 * 3600))
        force_relay = reader.get("IOP_ICE_FORCE_RELAY", False, _bool)
        if force_relay and not turn_urls:
            raise ConfigError("IOP_ICE_FORCE_RELAY", "relay-only media needs IOP_TURN_URLS")
        video_kbps = reader.get("IOP_VIDEO_MAX_KBPS", 500, _int_between(100, 4000))
        screen_kbps = reader.get("IOP_SCREEN_MAX_KBPS", 1500, _int_between(100, 8000))
        codecs = reader.get("IOP_VIDEO_CODECS", ("vp8", "h264"), _video_codecs)
        built = _fanout_built()
        fanout = reader.get("IOP_FANOUT", "c" if built else "python", _choice(FANOUTS))
        if fanout == "c" and not built:
            raise ConfigError(
                "IOP_FANOUT",
                "the compiled fan-out (rooms/media/_fanout.c) is not built: install gcc and "
                "python3-dev (make system-deps), run `pip install -e .` again, "
                "or set IOP_FANOUT=python",
            )
        stale_days = reader.get("IOP_DIRECTORY_STALE_DAYS", 180, _int_between(1, 3650))
        timer_poll = reader.get("IOP_TIMER_POLL_SECONDS", 1.0, _float_between(0.01, 60))
        retry_base = reader.get("IOP_WEBHOOK_RETRY_BASE_SECONDS", 5.0, _float_between(0.1, 3600))
        webhook_timeout = reader.get("IOP_WEBHOOK_TIMEOUT_SECONDS", 10.0, _float_between(0.5, 120))
        max_attempts = reader.get("IOP_WEBHOOK_MAX_ATTEMPTS", 12, _int_between(1, 100))
        drop_callback = reader.get("IOP_DROP_CALLBACK_SECONDS", 120.0, _float_between(5, 3600))
        drop_welfare = reader.get("IOP_DROP_WELFARE_SECONDS", 300.0, _float_between(5, 7200))
        if drop_welfare <= drop_callback:
            raise ConfigError(
                "IOP_DROP_WELFARE_SECONDS", "must be longer than IOP_DROP_CALLBACK_SECONDS"
            )
        silence_alert = reader.get("IOP_SILENCE_ALERT_SECONDS", 120.0, _float_between(0.5, 3600))
        silence_check = reader.get("IOP_SILENCE_CHECK_SECONDS", 5.0, _float_between(0.05, 60))
        break_glass = reader.get("IOP_BREAK_GLASS_MINUTES", 60, _int_between(5, 720))
        location_window = reader.get(
            "IOP_CHECKIN_LOCATION_WINDOW_MINUTES", 120, _int_between(15, 14 * 24 * 60)
        )
        help_presses = reader.get("IOP_HELP_PRESSES_PER_MINUTE", 3, _int_between(1, 60))
        mood_poll = reader.get("IOP_MOOD_REMINDER_POLL_SECONDS", 60.0, _float_between(0.05, 3600))
        node_id = reader.get("IOP_NODE_ID", _default_node_id(port), _node_id)
        node_url = reader.get("IOP_NODE_URL", public_url, _https_url)
        lease_s = reader.get("IOP_LEASE_SECONDS", 10, _int_between(1, 300))
        rooms_per_node = reader.get("IOP_ROOMS_PER_NODE", 0, _int_between(0, 1000))
        redis_prefix = reader.get("IOP_REDIS_PREFIX", "iop:", _redis_prefix)
        if redis_url is not None and database_url.startswith("sqlite"):
            # Every node must see every record: one SQLite file cannot be shared by nodes.
            raise ConfigError(
                "REDIS_URL", "multi-node mode needs PostgreSQL: set DATABASE_URL=postgresql://..."
            )
        return cls(
            host=host,
            port=port,
            public_url=public_url.rstrip("/"),
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            tls_cert=tls_cert,
            tls_key=tls_key,
            secret_key_file=secret_key_file,
            log_level=log_level,
            log_format=log_format,
            ice_hosts=ice_hosts,
            schedule_horizon_days=horizon,
            mfa_required=mfa_required,
            idle_lock_minutes=idle,
            join_link_grace_minutes=link_grace,
            standing_link_days=standing,
            signin_window_minutes=window,
            signin_max_failures_account=per_account,
            signin_max_failures_address=per_address,
            signin_max_delay_s=max_delay,
            trusted_proxies=trusted_proxies,
            reconnect_grace_s=float(grace),
            ws_help_burst=help_burst,
            ws_help_per_minute=help_rate,
            ws_chat_burst=chat_burst,
            ws_chat_per_minute=chat_rate,
            ws_react_burst=react_burst,
            ws_react_per_minute=react_rate,
            room_chat_kept=chat_kept,
            turn_urls=turn_urls,
            turn_secret=turn_secret,
            turn_ttl_s=turn_ttl,
            ice_force_relay=force_relay,
            video_kbps=video_kbps,
            screen_kbps=screen_kbps,
            video_codecs=codecs,
            fanout=fanout,
            directory_stale_days=stale_days,
            timer_poll_s=timer_poll,
            webhook_retry_base_s=retry_base,
            webhook_timeout_s=webhook_timeout,
            webhook_max_attempts=max_attempts,
            drop_callback_s=drop_callback,
            drop_welfare_s=drop_welfare,
            silence_alert_s=silence_alert,
            silence_check_s=silence_check,
            break_glass_minutes=break_glass,
            checkin_location_window_minutes=location_window,
            help_presses_per_minute=help_presses,
            mood_reminder_poll_s=mood_poll,
            node_id=node_id,
            node_url=node_url.rstrip("/"),
            lease_s=float(lease_s),
            rooms_per_node=rooms_per_node,
            redis_prefix=redis_prefix,
        )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(name, str(exc)) from None


def _fanout_built() -> bool:
    # Looked up, not imported: the extension loads with the SFU, not with the settings.
    return importlib.util.find_spec("rooms.media._fanout") is not None


def _default_node_id(port: int) -> str:
    # Unique per process start: a restarted node is a new node to the cluster.
    host = socket.gethostname().split(".")[0] or "node"
    return f"{_slug(host)}-{port}-{secrets.token_hex(2)}"


def _slug(raw: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in raw.lower())[:40]


def _node_id(raw: str) -> str:
    if not 1 <= len(raw) <= 64 or any(not (ch.isalnum() or ch in "-_") for ch in raw):
        raise ValueError("letters, digits, - and _ only, at most 64 characters")
    return raw


def _redis_prefix(raw: str) -> str:
    if len(raw) > 64 or any(ch.isspace() for ch in raw):
        raise ValueError("at most 64 characters, no spaces")
    return raw


def _host(raw: str) -> str:
    if any(ch.isspace() for ch in raw) or "/" in raw:
        raise ValueError(f"not a host name or address: {raw!r}")
    return raw


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"must be a port number 1-65535, got {raw!r}") from None
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a port number 1-65535, got {value}")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number {low}-{high}, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a whole number {low}-{high}, got {value}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number {low:g}-{high:g}, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a number {low:g}-{high:g}, got {value:g}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _https_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("must be an https:// URL such as https://iop.example.org")
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _database_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return raw.replace("sqlite://", "sqlite+aiosqlite://", 1) if scheme == "sqlite" else raw
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        rest = raw.split("://", 1)[1]
        return f"postgresql+asyncpg://{rest}"
    raise ValueError("must be a sqlite:/// or postgresql:// URL")


def _redis_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis:// or rediss:// URL")
    return raw


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _turn_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ValueError(f"not a turn: or turns: URL: {url!r}")
    return urls


def _secret_file(raw: str) -> str:
    path = Path(raw)
    if not path.is_file():
        raise ValueError("no such file")
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise ValueError("the shared secret must be at least 16 characters")
    return secret


def _video_codecs(raw: str) -> tuple[str, ...]:
    codecs = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    if not codecs or any(c not in ("vp8", "h264") for c in codecs) or "vp8" not in codecs:
        raise ValueError("a list of vp8 and h264 that includes vp8 (every browser has it)")
    return codecs


def _ip_list(raw: str) -> tuple[str, ...]:
    hosts = tuple(part.strip() for part in raw.split(",") if part.strip())
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"not an IP address: {host!r}") from None
    return hosts


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError:
            raise ValueError(
                f"not an address or CIDR network (host bits must be zero): {part!r}"
            ) from None
    return tuple(networks)

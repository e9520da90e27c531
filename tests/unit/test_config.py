from pathlib import Path

import pytest

from server.config import ConfigError, Settings


def test_defaults_serve_https_on_8443_with_sqlite_under_the_data_dir() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8443
    assert settings.host == "localhost"
    assert settings.public_url == "https://localhost:8443"
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite+aiosqlite:///var/iop.sqlite3"
    assert settings.secret_key_file == Path("var/secret.key")
    assert settings.redis_url is None
    assert settings.tls_cert is None and settings.tls_key is None
    assert settings.ice_hosts == ()


def test_every_variable_is_read(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    key = tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    settings = Settings.from_env(
        {
            "IOP_HOST": "0.0.0.0",
            "IOP_PORT": "9443",
            "IOP_PUBLIC_URL": "https://iop.example.org/",
            "IOP_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/iop",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "IOP_TLS_CERT": str(cert),
            "IOP_TLS_KEY": str(key),
            "IOP_SECRET_KEY_FILE": str(tmp_path / "keys.json"),
            "IOP_LOG_LEVEL": "DEBUG",
            "IOP_LOG_FORMAT": "console",
            "IOP_ICE_HOSTS": "127.0.0.1, ::1",
            "IOP_SCHEDULE_HORIZON_DAYS": "14",
            "IOP_DIRECTORY_STALE_DAYS": "90",
            "IOP_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1",
            "IOP_SIGNIN_MAX_DELAY_SECONDS": "120",
        }
    )
    assert settings.host == "0.0.0.0"
    assert settings.port == 9443
    assert settings.public_url == "https://iop.example.org"
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/iop"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.tls_cert == cert and settings.tls_key == key
    assert settings.secret_key_file == tmp_path / "keys.json"
    assert settings.log_level == "debug"
    assert settings.log_format == "console"
    assert settings.ice_hosts == ("127.0.0.1", "::1")
    assert settings.schedule_horizon_days == 14
    assert settings.directory_stale_days == 90
    assert [str(net) for net in settings.trusted_proxies] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    assert settings.signin_max_delay_s == 120
    assert not settings.is_sqlite


def test_public_url_follows_host_and_port_when_unset() -> None:
    assert Settings.from_env({"IOP_PORT": "9000"}).public_url == "https://localhost:9000"
    assert Settings.from_env({"IOP_HOST": "::1"}).public_url == "https://[::1]:8443"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IOP_PORT", "abc"),
        ("IOP_PORT", "0"),
        ("IOP_PORT", "70000"),
        ("IOP_HOST", "local host"),
        ("IOP_PUBLIC_URL", "http://insecure.example.org"),
        ("DATABASE_URL", "mysql://root@localhost/iop"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("IOP_TLS_CERT", "/nonexistent/cert.pem"),
        ("IOP_LOG_LEVEL", "loud"),
        ("IOP_LOG_FORMAT", "xml"),
        ("IOP_ICE_HOSTS", "127.0.0.1,not-an-ip"),
        ("IOP_SCHEDULE_HORIZON_DAYS", "0"),
        ("IOP_NODE_ID", "node one"),
        ("IOP_NODE_URL", "http://node1.example.org"),
        ("IOP_LEASE_SECONDS", "0"),
        ("IOP_REDIS_PREFIX", "iop key:"),
        ("IOP_TRUSTED_PROXIES", "nginx"),
        ("IOP_TRUSTED_PROXIES", "10.0.0.1/8"),
        ("IOP_SIGNIN_MAX_DELAY_SECONDS", "0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"IOP_TLS_CERT": str(cert)})
    assert caught.value.variable == "IOP_TLS_KEY"


def test_blank_values_mean_the_default() -> None:
    assert Settings.from_env({"IOP_PORT": "  ", "REDIS_URL": ""}).port == 8443


def test_directory_staleness_defaults_to_180_days_and_refuses_nonsense() -> None:
    assert Settings.from_env({}).directory_stale_days == 180
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"IOP_DIRECTORY_STALE_DAYS": "0"})
    assert caught.value.variable == "IOP_DIRECTORY_STALE_DAYS"


POSTGRES = "postgresql://postgres@127.0.0.1:5432/iop"


def test_multi_node_settings_default_to_one_public_name_and_a_fresh_node_id() -> None:
    env = {"DATABASE_URL": POSTGRES, "REDIS_URL": "redis://127.0.0.1:6379/0", "IOP_PORT": "9001"}
    first, second = Settings.from_env(env), Settings.from_env(env)
    assert first.multi_node
    assert first.node_url == first.public_url == "https://localhost:9001"
    assert first.lease_s == 10.0
    assert first.redis_prefix == "iop:"
    assert "-9001-" in first.node_id and first.node_id != second.node_id
    assert not Settings.from_env({}).multi_node


def test_multi_node_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": POSTGRES,
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "IOP_NODE_ID": "web-1",
            "IOP_NODE_URL": "https://node1.iop.example.org/",
            "IOP_LEASE_SECONDS": "3",
            "IOP_REDIS_PREFIX": "clinic-a:",
        }
    )
    assert settings.node_id == "web-1"
    assert settings.node_url == "https://node1.iop.example.org"
    assert settings.lease_s == 3.0
    assert settings.redis_prefix == "clinic-a:"


def test_multi_node_mode_on_sqlite_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert caught.value.variable == "REDIS_URL"
    assert "needs PostgreSQL" in str(caught.value) and "\n" not in str(caught.value)


def test_the_fan_out_is_the_compiled_one_when_built_and_python_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server import config

    monkeypatch.setattr(config, "_fanout_built", lambda: True)
    assert Settings.from_env({}).fanout == "c"
    assert Settings.from_env({"IOP_FANOUT": "python"}).fanout == "python"
    monkeypatch.setattr(config, "_fanout_built", lambda: False)
    assert Settings.from_env({}).fanout == "python"
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"IOP_FANOUT": "c"})
    assert refused.value.variable == "IOP_FANOUT" and "not built" in refused.value.reason
    with pytest.raises(ConfigError):
        Settings.from_env({"IOP_FANOUT": "rust"})

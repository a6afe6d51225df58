"""Config precedence, directory resolution and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.config import Config, load_config, parse_listen, redacted
from tether.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_flags_env_file_defaults(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[gateway]\nlisten = "127.0.0.1:1"\n[limits]\nidle_timeout = 5\nmax_frame_bytes = 200000\n',
    )
    env = {
        "HOME": str(tmp_path),
        "TETHER_LIMITS__MAX_FRAME_BYTES": "300000",
        "TETHER_LIMITS__IDLE_TIMEOUT": "6",
    }
    c = load_config(config_file=cfg, env=env, flags={"limits": {"idle_timeout": 7.0}})
    assert c.gateway.listen == "127.0.0.1:1"  # file
    assert c.limits.max_frame_bytes == 300000  # env over file
    assert c.limits.idle_timeout == 7.0  # flag over env
    assert c.limits.hello_timeout == Config().limits.hello_timeout  # default


def test_tether_config_env_names_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "x.toml", 'log_level = "debug"\n')
    c = load_config(env={"HOME": str(tmp_path), "TETHER_CONFIG": str(cfg)})
    assert c.log_level == "debug"


def test_default_file_in_config_dir(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    write(tmp_path / "cfg" / "config.toml", 'log_format = "json"\n')
    c = load_config(env={"HOME": str(tmp_path), "TETHER_CONFIG_DIR": str(tmp_path / "cfg")})
    assert c.log_format == "json"


def test_directories(tmp_path: Path) -> None:
    c = load_config(env={"HOME": str(tmp_path)})
    assert c.data_dir == str(tmp_path / ".local/share/tether")
    assert c.runtime_dir == str(tmp_path / ".local/share/tether/run")
    assert c.config_dir == str(tmp_path / ".config/tether")
    c = load_config(
        env={"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/5", "XDG_DATA_HOME": "/d"}
    )
    assert (c.runtime_dir, c.data_dir) == ("/run/user/5/tether", "/d/tether")
    c = load_config(
        env={"HOME": str(tmp_path), "TETHER_RUNTIME_DIR": "/r", "TETHER_DATA_DIR": "/x"}
    )
    assert (c.runtime_dir, c.data_dir) == ("/r", "/x")
    c = load_config(env={"HOME": str(tmp_path)}, flags={"data_dir": "/flag"})
    assert c.data_dir == "/flag"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"TETHER_LIMITS__MAX_FRAME_BYTES": "lots"},
            "'limits.max_frame_bytes': Expected int, got str "
            "(from environment variable TETHER_LIMITS__MAX_FRAME_BYTES)",
        ),
        ({"TETHER_LIMITS__IDLE_TIMEOUT": "-1"}, "'limits.idle_timeout': Expected float > 0.0"),
        ({"TETHER_GATEWAY__LISTEN": "8080"}, "'gateway.listen': expected HOST:PORT"),
        ({"TETHER_GATEWAY__LISTEN": "h:99999"}, "out of range"),
        ({"TETHER_LOG_LEVEL": "loud"}, "'log_level'"),
    ],
)
def test_bad_env_values_name_key_type_and_source(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HOME": str(tmp_path), **env})
    assert needle in str(info.value)


def test_bad_file_values(tmp_path: Path) -> None:
    bad_type = write(tmp_path / "a.toml", '[limits]\nmax_frame_bytes = "x"\n')
    with pytest.raises(ConfigError, match=r"limits.max_frame_bytes.*Expected int.*config file"):
        load_config(config_file=bad_type, env={"HOME": str(tmp_path)})
    unknown = write(tmp_path / "b.toml", '[gateway]\nlisen = "x"\n')
    with pytest.raises(ConfigError, match="unknown field lisen"):
        load_config(config_file=unknown, env={"HOME": str(tmp_path)})
    broken = write(tmp_path / "c.toml", "[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=broken, env={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml", env={"HOME": str(tmp_path)})


def test_a_frame_too_small_for_an_event_is_refused(tmp_path: Path) -> None:
    """Every event goes out whole in one frame, so a frame limit below what an event may
    hold inline would drop events on the wire: refused when the config is read."""
    small = {"HOME": str(tmp_path), "TETHER_LIMITS__MAX_FRAME_BYTES": "65536"}
    with pytest.raises(ConfigError, match=r"max_frame_bytes \(65536\) must be at least"):
        load_config(env=small)
    fits = load_config(env={**small, "TETHER_LEDGER__INLINE_PAYLOAD_BYTES": "32768"})
    assert fits.limits.max_frame_bytes == 65536


def test_unrelated_env_is_ignored(tmp_path: Path) -> None:
    c = load_config(env={"HOME": str(tmp_path), "TETHER_TEST_SCALE": "3", "TETHER_NOPE__X": "1"})
    assert c == load_config(env={"HOME": str(tmp_path)})


def test_lists_and_maps_from_env(tmp_path: Path) -> None:
    c = load_config(
        env={
            "HOME": str(tmp_path),
            "TETHER_RUNNER__WORKSPACES": "app=/src/app,docs=/src/docs",
            "TETHER_RUNNER__DENIED_PATHS": "/etc,/root",
        }
    )
    assert c.runner.workspaces == {"app": "/src/app", "docs": "/src/docs"}
    assert c.runner.denied_paths == ["/etc", "/root"]


def test_secrets_are_redacted(tmp_path: Path) -> None:
    c = load_config(
        env={"HOME": str(tmp_path), "TETHER_DATABASE_URL": "postgresql+asyncpg://u:hunter2@db/t"}
    )
    assert c.ledger.database_url == "postgresql+asyncpg://u:hunter2@db/t"
    shown = redacted(c)
    assert "hunter2" not in str(shown)
    assert shown["ledger"]["database_url"] == "postgresql+asyncpg://u:***@db/t"


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("::1:80")


def test_routines_section_and_named_tables(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        "[routines]\n"
        'timezone = "Asia/Shanghai"\n'
        'catch_up = "skip"\n'
        "poll_interval = 0.5\n"
        "[routines.standup]\n"
        'cron = "0 9 * * 1-5"\n'
        'session = "ses_1"\n'
        'input = "summarise yesterday"\n'
        'owner = "alice"\n'
        "[routines.ping]\n"
        'cron = "* * * * * */30"\n'
        'tz = "UTC"\n'
        'session = "ses_2"\n'
        'input = "say hi"\n'
        'catch_up = "once"\n',
    )
    c = load_config(config_file=cfg, env={"HOME": str(tmp_path)})
    assert (c.routines.timezone, c.routines.catch_up, c.routines.poll_interval) == (
        "Asia/Shanghai",
        "skip",
        0.5,
    )
    assert sorted(c.routines.entries) == ["ping", "standup"]
    assert c.routines.entries["standup"].owner == "alice"
    assert c.routines.entries["standup"].tz is None  # the section's timezone applies
    assert c.routines.entries["ping"].catch_up == "once"
    env = {"HOME": str(tmp_path), "TETHER_ROUTINES__POLL_INTERVAL": "2"}
    assert load_config(config_file=cfg, env=env).routines.poll_interval == 2.0


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('cron = "61 * * * *"\nsession = "s"\ninput = "x"\n', "'routines.bad.cron': invalid cron"),
        (
            'cron = "@daily"\ntz = "Mars/Base"\nsession = "s"\ninput = "x"\n',
            "'routines.bad.tz': unknown time",
        ),
        ('cron = "@daily"\nsession = "s"\ninput = "/new"\n', "may not be a / command"),
        ('cron = "@daily"\nsession = "s"\ninput = "x"\nextra = 1\n', "unknown field extra"),
    ],
)
def test_a_bad_routine_in_the_config_is_named(tmp_path: Path, body: str, said: str) -> None:
    cfg = write(tmp_path / "c.toml", "[routines.bad]\n" + body)
    with pytest.raises(ConfigError, match="routines") as caught:
        load_config(config_file=cfg, env={"HOME": str(tmp_path)})
    assert said in str(caught.value)


def test_a_bad_routine_name_or_zone_is_refused(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml", '[routines."-bad"]\ncron = "@daily"\nsession = "s"\ninput = "x"\n'
    )
    with pytest.raises(ConfigError, match="routine name"):
        load_config(config_file=cfg, env={"HOME": str(tmp_path)})
    cfg = write(tmp_path / "d.toml", '[routines]\ntimezone = "Nowhere"\n')
    with pytest.raises(ConfigError, match="timezone"):
        load_config(config_file=cfg, env={"HOME": str(tmp_path)})


def test_feishu_and_lark_domains_are_the_sdks_own() -> None:
    import lark_oapi

    from tether.config import FeishuConfig

    assert FeishuConfig(domain="feishu").base_url == lark_oapi.FEISHU_DOMAIN
    assert FeishuConfig(domain="lark").base_url == lark_oapi.LARK_DOMAIN
    assert FeishuConfig(domain="https://open.example.test/").base_url == "https://open.example.test"

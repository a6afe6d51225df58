"""``tether feishu setup`` through the real CLI against the stand-in: it checks the app's
credentials, bot, permissions and long connection, says what is missing, and writes
``[channels.feishu]`` into the config file with the rest of the file kept."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pexpect

from tests.support.feishu import FeishuStandIn, stand_in
from tests.support.process import SCALE, run_cli, tether_env

__all__ = ["stand_in"]

SECRET_ENV = "TEST_FEISHU_SECRET"
GRANTED = {
    "im:message:send_as_bot": 1,
    "im:message.p2p_msg:readonly": 1,
    "im:message.group_at_msg:readonly": 1,
    "im:message:readonly": 2,  # asked for, not granted
}


def setup(
    home: Path, stand_in: FeishuStandIn, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"NO_PROXY": "127.0.0.1,localhost"}
    if secret is not None:
        env[SECRET_ENV] = secret
    return run_cli(
        home,
        "feishu", "setup", "--app-id", stand_in.app_id, "--domain", stand_in.url,
        "--secret-env", SECRET_ENV, "--no-input", *args,
        env=env,
    )  # fmt: skip


def written(home: Path) -> dict[str, object]:
    config = tomllib.loads((home / "config" / "config.toml").read_text())
    section: dict[str, object] = config["channels"]["feishu"]
    return section


def test_a_ready_app_is_checked_and_its_section_written_with_the_file_kept(
    home: Path, stand_in: FeishuStandIn
) -> None:
    stand_in.scopes = dict(GRANTED)
    (home / "config").mkdir()
    (home / "config" / "config.toml").write_text(
        '# my settings\nlog_level = "info"\n\n[channels.feishu]\ngroup_trigger = "all"  # all\n'
    )
    stand_in.scopes["im:message.group_msg"] = 1  # group_trigger = "all" needs it
    done = setup(home, stand_in, "--json", secret=stand_in.app_secret)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "credentials", "bot", "permissions", "long connection",
    ]  # fmt: skip
    assert all(c["ok"] for c in report["checks"])
    assert report["bot"] == "tether"
    missing = {m["scope"]: m["required"] for m in report["missing_scopes"]}
    assert missing == {"im:message:readonly": False, "contact:user.base:readonly": False}
    assert report["events"][0]["event"] == "im.message.receive_v1"
    text = (home / "config" / "config.toml").read_text()
    assert text.startswith("# my settings\n")
    assert 'group_trigger = "all"  # all' in text
    assert written(home) == {
        "group_trigger": "all",
        "app_id": stand_in.app_id,
        "domain": stand_in.url,
        "mode": "long_connection",
        "app_secret_env": SECRET_ENV,
    }
    assert stand_in.app_secret not in text  # the secret is never written
    shown = json.loads(run_cli(home, "--json", "config", "show").stdout)
    assert shown["channels"]["feishu"]["app_id"] == stand_in.app_id


def test_a_missing_permission_is_named_with_why_and_the_command_fails(
    home: Path, stand_in: FeishuStandIn
) -> None:
    stand_in.scopes = {k: v for k, v in GRANTED.items() if "group_at" not in k}
    done = setup(home, stand_in, secret=stand_in.app_secret)
    assert done.returncode == 1
    assert "✓ credentials" in done.stdout
    assert "✗ permissions: missing: im:message.group_at_msg:readonly" in done.stdout
    assert "read group messages that @-mention the bot" in done.stdout
    assert "im.message.receive_v1" in done.stdout
    assert "Not ready yet" in done.stdout
    assert written(home)["app_id"] == stand_in.app_id  # the credentials work: kept


def test_a_wrong_secret_is_refused_and_nothing_is_written(
    home: Path, stand_in: FeishuStandIn
) -> None:
    done = setup(home, stand_in, secret="not-the-secret")
    assert done.returncode == 1
    assert "✗ credentials: Feishu refused them (10014)" in done.stdout
    assert "bot" not in [line.split(":")[0].strip("✓✗ ") for line in done.stdout.splitlines()]
    assert not (home / "config" / "config.toml").exists()
    assert "not-the-secret" not in done.stdout + done.stderr


def test_without_a_secret_and_without_a_terminal_it_says_which_variable(
    home: Path, stand_in: FeishuStandIn
) -> None:
    done = setup(home, stand_in)
    assert done.returncode == 2
    assert f"${SECRET_ENV}" in done.stderr
    assert stand_in.calls == []


def test_a_bad_domain_is_refused_before_anything_is_sent(
    home: Path, stand_in: FeishuStandIn
) -> None:
    done = run_cli(
        home, "feishu", "setup", "--app-id", "cli_x", "--domain", "http://example.com",
        "--no-input", env={"TETHER_FEISHU_APP_SECRET": "x"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "http only on the loopback address" in done.stderr


def test_a_refused_long_connection_and_a_missing_bot_are_said(
    home: Path, stand_in: FeishuStandIn
) -> None:
    stand_in.scopes = dict(GRANTED)
    stand_in.discovery_code = 1000040351
    stand_in.bot_open_id = ""
    done = setup(home, stand_in, secret=stand_in.app_secret)
    assert done.returncode == 1
    assert "✗ bot:" in done.stdout
    assert "enable the app's Bot capability" in done.stdout
    assert "✗ long connection: refused (1000040351)" in done.stdout
    # webhook mode needs no long connection, and says what the gateway needs instead
    stand_in.bot_open_id = "ou_bot"
    done = setup(home, stand_in, "--mode", "webhook", secret=stand_in.app_secret)
    assert done.returncode == 0, done.stdout
    assert "long connection" not in done.stdout.split("Subscribe")[0]
    assert "/channels/feishu" in done.stdout
    assert "TETHER_FEISHU_ENCRYPT_KEY" in done.stdout


def test_in_a_terminal_it_asks_and_the_secret_is_not_echoed(
    home: Path, stand_in: FeishuStandIn
) -> None:
    stand_in.scopes = dict(GRANTED)
    env = tether_env(home, {"NO_PROXY": "127.0.0.1,localhost"})
    child = pexpect.spawn(
        sys.executable, ["-m", "tether", "feishu", "setup"], env=env, encoding="utf-8",
        timeout=30 * SCALE,
    )  # fmt: skip
    try:
        child.expect("App ID")
        child.sendline(stand_in.app_id)
        child.expect("Domain")
        child.sendline(stand_in.url)
        child.expect("Mode")
        child.sendline("")  # the default: long_connection
        child.expect("App secret")
        child.sendline(stand_in.app_secret)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    shown = child.before or ""
    assert child.exitstatus == 0, shown
    assert stand_in.app_secret not in shown
    assert "The gateway reads the secret from $TETHER_FEISHU_APP_SECRET" in shown
    assert written(home)["domain"] == stand_in.url

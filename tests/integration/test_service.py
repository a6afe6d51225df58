"""`tether service`, `tether logs` and `tether status` through the real CLI, in a temporary
HOME. The service manager's commands (`systemctl`, `journalctl`) are stand-ins on PATH that
record what they were asked, so no test ever touches a real user manager; the unit file
itself is checked by the real `systemd-analyze verify` where it is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.process import SCALE, GatewayProcess, RunnerProcess, run_cli

MakeRunner = Callable[..., RunnerProcess]

STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STAND_IN_LOG"
if [ -n "$STAND_IN_FAIL" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
[ "$2" = is-active ] && echo active
exit 0
"""
ON_BOX = {
    "TETHER_RUNS__DEFAULT_AGENT": "operator",
    "TETHER_RUNS__DEFAULT_RUNNER": "box",
    "TETHER_RUNS__DEFAULT_WORKSPACE": "app",
}


def stand_ins(home: Path, *, fail: bool = False) -> dict[str, str]:
    """An environment whose systemctl and journalctl only write down their arguments."""
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("systemctl", "journalctl"):
        path = bin_dir / name
        path.write_text(STAND_IN)
        path.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STAND_IN_LOG": str(home / "called")}
    if fail:
        env["STAND_IN_FAIL"] = "1"
    return env


def called(home: Path) -> list[str]:
    log = home / "called"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def unit_path(home: Path, name: str = "tether-gateway.service") -> Path:
    return home / "home" / ".config" / "systemd" / "user" / name


def settings(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def verify(home: Path, unit: Path) -> None:
    """`systemd-analyze verify --user` finds nothing to say about the unit."""
    runtime = home / "xdg-run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "HOME": str(home / "home"), "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * SCALE,
        check=False,
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert (done.returncode, said) == (0, []), done.stdout + done.stderr


def test_install_writes_a_user_unit_and_uninstall_removes_it(home: Path) -> None:
    env = stand_ins(home)
    unit = unit_path(home)
    out = run_cli(home, "service", "install", "gateway", "--no-start", env=env)
    assert out.returncode == 0, out.stderr
    assert f"wrote {unit}" in out.stdout
    assert "systemctl --user enable --now tether-gateway.service" in out.stdout
    assert "loginctl enable-linger" in out.stdout
    assert "tether console --open" in out.stdout  # how to get into a service's console
    assert called(home) == []  # --no-start: the manager is not asked anything

    text = unit.read_text()
    assert settings(text, "ExecStart") == [f"{sys.executable} -m tether gateway"]
    env_lines = settings(text, "Environment")
    for name, sub in (("DATA", "data"), ("CONFIG", "config"), ("RUNTIME", "run")):
        assert f'"TETHER_{name}_DIR={home / sub}"' in env_lines
    assert settings(text, "Restart") == ["on-failure"]
    assert settings(text, "TimeoutStopSec") == ["15"]  # the default 10 s grace, and some

    again = run_cli(home, "service", "install", "gateway", "--no-start", env=env)
    assert (again.returncode, f"unchanged {unit}" in again.stdout) == (0, True), again.stderr

    unit.write_text(text.replace("RestartSec=2", "RestartSec=30"))  # edited by hand
    refused = run_cli(home, "service", "install", "gateway", "--no-start", env=env)
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert "RestartSec=30" in unit.read_text()
    forced = run_cli(home, "service", "install", "gateway", "--no-start", "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert unit.read_text() == text

    gone = run_cli(home, "--json", "service", "uninstall", "gateway", env=env)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["removed"] is True
    assert not unit.exists()
    assert called(home) == [
        "systemctl --user disable --now tether-gateway.service",
        "systemctl --user daemon-reload",
    ]
    twice = run_cli(home, "service", "uninstall", "gateway", env=env)
    assert twice.returncode == 0, twice.stderr
    assert "tether-gateway.service is not installed" in twice.stdout


def test_secrets_reach_the_service_only_with_env_in_a_file_only_its_user_reads(
    home: Path,
) -> None:
    key = "sk-test-0123456789abcdef"
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "config.toml").write_text('[agents.openai]\nmodel = "m"\n')
    env = {**stand_ins(home), "OPENAI_API_KEY": key}
    unit = unit_path(home)
    secrets = home / "config" / "gateway.env"

    plain = run_cli(home, "--json", "service", "install", "gateway", "--no-start", env=env)
    assert plain.returncode == 0, plain.stderr
    said = json.loads(plain.stdout)
    # the key the config reads is set here, and the service would not have it: said so
    assert (said["secrets"], said["secrets_not_carried"]) == ([], ["OPENAI_API_KEY"])
    human = run_cli(home, "service", "install", "gateway", "--no-start", env=env)
    assert "install again with --env OPENAI_API_KEY" in human.stdout
    assert not secrets.exists()
    assert settings(unit.read_text(), "EnvironmentFile") == [f"-{secrets}"]

    carried = run_cli(
        home, "service", "install", "gateway", "--no-start", "--env", "OPENAI_API_KEY", env=env
    )
    assert carried.returncode == 0, carried.stderr
    assert f"kept OPENAI_API_KEY in {secrets} (mode 0600)" in carried.stdout
    assert f"unchanged {unit}" in carried.stdout  # the unit only names the file
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert f"OPENAI_API_KEY={key}" in secrets.read_text().splitlines()
    assert key not in unit.read_text() + carried.stdout + carried.stderr
    if shutil.which("systemd-analyze") is not None:
        verify(home, unit)

    again = run_cli(home, "--json", "service", "install", "gateway", "--no-start", env=env)
    assert json.loads(again.stdout)["secrets_not_carried"] == []  # kept across installs
    assert (json.loads(again.stdout)["secrets"], secrets.exists()) == (["OPENAI_API_KEY"], True)

    # a line written by hand in systemd's quoting stays as it is; a new value replaces the old
    secrets.write_text(secrets.read_text() + 'TETHER_HAND="two words"\n')
    rotated = {**env, "OPENAI_API_KEY": "sk-rotated"}
    args = ("service", "install", "gateway", "--no-start", "--env", "OPENAI_API_KEY")
    assert run_cli(home, *args, env=rotated).returncode == 0
    held = secrets.read_text().splitlines()
    assert [line for line in held if "OPENAI_API_KEY=" in line] == ["OPENAI_API_KEY=sk-rotated"]
    assert 'TETHER_HAND="two words"' in held
    assert secrets.stat().st_mode & 0o777 == 0o600

    # a running service restarts to take a new secret; with nothing new it is left alone
    called(home)
    started = run_cli(home, "service", "install", "gateway", "--env", "OPENAI_API_KEY", env=env)
    assert started.returncode == 0, started.stderr
    assert "restarted if it ran" in started.stdout
    assert called(home) == [
        "systemctl --user daemon-reload",
        "systemctl --user try-restart tether-gateway.service",
        "systemctl --user enable --now tether-gateway.service",
    ]
    assert run_cli(home, "service", "install", "gateway", env=env).returncode == 0
    assert called(home) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now tether-gateway.service",
    ]

    before = secrets.read_text()
    for name, value, why in (
        ("NOT_SET_ANYWHERE", None, "is not set in this environment"),
        ("OPENAI_API_KEY", 'sk-"quoted" $HOME', "cannot carry unambiguously"),
    ):
        bad = {**env, "OPENAI_API_KEY": value} if value else env
        refused = run_cli(
            home, "service", "install", "gateway", "--no-start", "--env", name, env=bad
        )
        assert (refused.returncode, why in refused.stderr) == (2, True), refused.stderr
        assert secrets.read_text() == before  # nothing written

    gone = run_cli(home, "--json", "service", "uninstall", "gateway", env=env)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["files"] == [str(unit), str(secrets)]
    assert not secrets.exists()  # no secret is left behind


NO_ANALYZE = "systemd-analyze is not installed here: systemd itself cannot check the unit"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=NO_ANALYZE)
def test_systemd_accepts_the_gateway_unit(home: Path) -> None:
    env = stand_ins(home)
    quirky = {**env, "TETHER_DATA_DIR": str(home / "my data %h $USER")}
    out = run_cli(home, "service", "install", "gateway", "--no-start", env=quirky)
    assert out.returncode == 0, out.stderr
    verify(home, unit_path(home))


def test_install_starts_the_unit_or_says_how(home: Path) -> None:
    env = stand_ins(home)
    started = run_cli(home, "service", "install", "gateway", env=env)
    assert started.returncode == 0, started.stderr
    assert "tether-gateway.service is enabled and running" in started.stdout
    assert called(home) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now tether-gateway.service",
    ]
    shown = run_cli(home, "--json", "status", env=env)  # no gateway here, but the unit
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["services"] == {
        "gateway": {"unit": "tether-gateway.service", "state": "active"}
    }

    # no user manager to talk to (a container, an ssh session without one)
    failing = stand_ins(home, fail=True)
    other = home / "xdg"
    broken = run_cli(
        home, "service", "install", "gateway", env={**failing, "XDG_CONFIG_HOME": str(other)}
    )
    assert broken.returncode == 1
    assert (other / "systemd" / "user" / "tether-gateway.service").exists()  # honours XDG
    assert "could not start it: `systemctl --user daemon-reload` failed: Failed to connect" in (
        broken.stdout
    )
    assert "  systemctl --user enable --now tether-gateway.service" in broken.stdout


def test_logs_read_the_journal_of_installed_units(home: Path) -> None:
    env = stand_ins(home)
    nothing = run_cli(home, "logs", env=env)
    assert nothing.returncode == 1
    assert "neither the gateway nor the runner is installed as a service" in nothing.stderr
    assert run_cli(home, "logs", "runner", env=env).returncode == 1

    assert run_cli(home, "service", "install", "gateway", "--no-start", env=env).returncode == 0
    follow = run_cli(home, "logs", "-f", "-n", "5", env=env)
    assert follow.returncode == 0, follow.stderr
    assert called(home) == ["journalctl --user -u tether-gateway.service -f -n 5"]

    no_journal = {**env, "PATH": str(home / "empty")}
    missing = run_cli(home, "logs", env=no_journal)
    assert missing.returncode == 1
    assert "journalctl is not installed" in missing.stderr


def test_the_runner_installs_only_once_enrolled(
    gateway: GatewayProcess, make_runner: MakeRunner, home: Path
) -> None:
    env = stand_ins(home)
    mine = {**env, "TETHER_CONFIG_DIR": str(home / "runner-box")}
    refused = run_cli(home, "service", "install", "runner", "--no-start", env=mine)
    assert refused.returncode == 2
    assert "not enrolled yet" in refused.stderr
    assert "tether runner enroll" in refused.stderr
    assert not unit_path(home, "tether-runner.service").exists()

    make_runner(gateway, "box", start=False)
    done = run_cli(home, "service", "install", "runner", "--no-start", env=mine)
    assert done.returncode == 0, done.stderr
    text = unit_path(home, "tether-runner.service").read_text()
    assert settings(text, "ExecStart") == [f"{sys.executable} -m tether runner"]
    assert f'"TETHER_CONFIG_DIR={home / "runner-box"}"' in settings(text, "Environment")
    assert settings(text, "NoNewPrivileges") == []  # bubblewrap's sandbox needs its privileges
    if shutil.which("systemd-analyze") is not None:
        verify(home, unit_path(home, "tether-runner.service"))


def wait_status(home: Path, ready: Callable[[dict[str, object]], bool]) -> dict[str, object]:
    deadline = time.monotonic() + 20 * SCALE
    while True:
        out = run_cli(home, "--json", "status")
        report: dict[str, object] = json.loads(out.stdout)
        if ready(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def test_status_shows_runners_runs_requests_and_a_gateway_that_is_down(
    home: Path, make_runner: MakeRunner
) -> None:
    gw = GatewayProcess(home, env=ON_BOX)
    gw.start()
    try:
        runner = make_runner(gw, "box")
        started = run_cli(home, "--json", "runs", "start", "!echo hi")
        assert started.returncode == 0, started.stderr
        report = wait_status(home, lambda r: r["requests"]["open"] == 1)  # type: ignore[index]
        assert report["requests"]["open"] == 1  # type: ignore[index]
        assert report["runs"] == {"running": 0, "waiting": 1, "queued": 0, "more": False}
        assert report["runners"] == {"online": ["box"], "offline": [], "pending": []}
        assert report["deliveries"] == {"overdue": 0, "dead": 0}
        gateway = report["gateway"]
        assert isinstance(gateway, dict)
        assert (gateway["up"], gateway["url"], gateway["ledger"]) == (True, gw.url, "sqlite")
        assert report["healthy"] is True

        shown = run_cli(home, "status")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert f"gateway     up: tether {gateway['version']} at {gw.url}" in shown.stdout
        assert "runners     1/1 online (box)" in shown.stdout
        assert "runs        0 running, 1 waiting, 0 queued" in shown.stdout
        assert "requests    1 open (oldest " in shown.stdout
        assert "deliveries  0 overdue, 0 given up" in shown.stdout

        runner.stop()
        wait_status(home, lambda r: r["runners"]["offline"] == ["box"])  # type: ignore[index]
        offline = run_cli(home, "status")
        assert offline.returncode == 3, offline.stdout + offline.stderr
        assert "attention   runner offline: box" in offline.stdout
    finally:
        gw.stop()

    down = run_cli(home, "status")
    assert down.returncode == 1
    assert "gateway not running; start it with `tether up` or `tether service install gateway`" in (
        down.stdout
    )
    as_json = run_cli(home, "--json", "status")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["gateway"]["up"] is False

"""The service definitions `tether service install` writes: what they run, how values are
quoted for systemd, and what cannot be written at all."""

from __future__ import annotations

import plistlib

import pytest

from tether.cli.service_units import (
    ServiceSpec,
    environment_file_line,
    environment_line,
    exec_word,
    launchd_plist,
    stop_timeout,
    systemd_unit,
    unit_name,
)
from tether.errors import ConfigError

PYTHON = "/home/ann/venvs/tether/bin/python"


def lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_the_gateway_unit_runs_this_interpreter_and_restarts_on_failure() -> None:
    spec = ServiceSpec("gateway", PYTHON, {"TETHER_DATA_DIR": "/home/ann/data"}, stop_timeout=15)
    text = systemd_unit(spec)
    assert unit_name("gateway") == "tether-gateway.service"
    assert lines(text, "ExecStart") == [f"{PYTHON} -m tether gateway"]
    assert lines(text, "Environment") == ['"TETHER_DATA_DIR=/home/ann/data"']
    assert lines(text, "Restart") == ["on-failure"]
    assert lines(text, "RestartSec") == ["2"]
    assert lines(text, "RestartPreventExitStatus") == ["2"]  # a bad config stays down
    assert lines(text, "KillSignal") == ["SIGTERM"]
    assert lines(text, "KillMode") == ["mixed"]
    assert lines(text, "TimeoutStopSec") == ["15"]
    assert lines(text, "WantedBy") == ["default.target"]
    assert lines(text, "NoNewPrivileges") == ["yes"]
    assert text.index("[Unit]") < text.index("[Service]") < text.index("[Install]")
    assert text.endswith("\n")


def test_the_runner_unit_leaves_its_sandbox_alone() -> None:
    text = systemd_unit(ServiceSpec("runner", PYTHON, stop_timeout=stop_timeout(10.0)))
    assert lines(text, "ExecStart") == [f"{PYTHON} -m tether runner"]
    assert lines(text, "TimeoutStopSec") == ["15"]
    # a rejected credential (3) or one already in use (4) will not get better by retrying
    assert lines(text, "RestartPreventExitStatus") == ["2 3 4"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "RestrictNamespaces"):
        assert not lines(text, hardening), hardening


def test_stop_timeout_is_a_little_above_the_grace() -> None:
    assert (stop_timeout(10.0), stop_timeout(2.5), stop_timeout(0.0)) == (15, 8, 5)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("/srv/tether", '"NAME=/srv/tether"'),
        ("/home/ann/My Data", '"NAME=/home/ann/My Data"'),  # spaces: inside the quotes
        ("50%", '"NAME=50%%"'),  # a specifier otherwise
        ("$HOME/x", '"NAME=$HOME/x"'),  # no expansion in Environment=: kept
        ('say "hi"', '"NAME=say \\"hi\\""'),
        ("C:\\dir", '"NAME=C:\\\\dir"'),
    ],
)
def test_environment_values_are_quoted_as_systemd_reads_them(value: str, written: str) -> None:
    assert environment_line("NAME", value) == f"Environment={written}"


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/opt/my tools/python", '"/opt/my tools/python"'),
        ("/opt/100%/python", "/opt/100%%/python"),
        ("/opt/$venv/python", "/opt/$$venv/python"),  # ExecStart= expands $VAR
        ("/opt/a b$c%d/python", '"/opt/a b$$c%%d/python"'),
    ],
)
def test_exec_words_are_escaped_for_specifiers_and_expansion(word: str, written: str) -> None:
    assert exec_word(word) == written


def test_a_path_with_spaces_in_the_unit() -> None:
    spec = ServiceSpec("gateway", "/opt/my venv/bin/python", {"TETHER_DATA_DIR": "/d/%h"})
    text = systemd_unit(spec)
    assert lines(text, "ExecStart") == ['"/opt/my venv/bin/python" -m tether gateway']
    assert lines(text, "Environment") == ['"TETHER_DATA_DIR=/d/%%h"']


@pytest.mark.parametrize("bad", ["/tmp/a\nExecStartPre=/bin/rm", "x\ry", "nul\x00"])
def test_values_that_a_unit_cannot_hold_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot hold"):
        environment_line("TETHER_DATA_DIR", bad)
    with pytest.raises(ConfigError, match="cannot hold"):
        systemd_unit(ServiceSpec("gateway", bad))
    with pytest.raises(ConfigError, match="cannot hold"):
        launchd_plist(ServiceSpec("gateway", PYTHON, {"TETHER_DATA_DIR": bad}), "/tmp/log")


def test_a_bad_variable_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        environment_line("A B", "x")


def test_the_launchd_agent() -> None:
    spec = ServiceSpec(
        "gateway", PYTHON, {"TETHER_DATA_DIR": "/Users/ann/My <Data> & more"}, stop_timeout=15
    )
    data = plistlib.loads(launchd_plist(spec, "/Users/ann/data/logs/gateway.log").encode())
    assert data == {
        "Label": "dev.tether.gateway",
        "ProgramArguments": [PYTHON, "-m", "tether", "gateway"],
        "EnvironmentVariables": {"TETHER_DATA_DIR": "/Users/ann/My <Data> & more"},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restarted when it fails, not after a stop
        "ExitTimeOut": 15,
        "StandardOutPath": "/Users/ann/data/logs/gateway.log",
        "StandardErrorPath": "/Users/ann/data/logs/gateway.log",
        "ProcessType": "Background",
    }


def test_secrets_stay_out_of_the_unit_in_a_file_it_names() -> None:
    spec = ServiceSpec("gateway", PYTHON, environment_file="/home/ann/.config/tether/100%.env")
    text = systemd_unit(spec)
    assert lines(text, "EnvironmentFile") == [
        "-/home/ann/.config/tether/100%%.env"
    ]  # may be missing
    assert systemd_unit(ServiceSpec("gateway", PYTHON)).count("EnvironmentFile") == 0
    with pytest.raises(ConfigError, match="cannot hold"):
        systemd_unit(ServiceSpec("gateway", PYTHON, environment_file="/x\nExecStartPre=/bin/rm"))


@pytest.mark.parametrize(
    "value",
    ["sk-proj-AbC_123", "0123abcdef", "dGhpcyBpcyBhIHNlY3JldA==", "a+b/c=d:e,f.g~h^i@j%k"],
)
def test_a_secret_is_written_unquoted_when_every_systemd_reads_it_one_way(value: str) -> None:
    assert environment_file_line("OPENAI_API_KEY", value) == f"OPENAI_API_KEY={value}"


@pytest.mark.parametrize(
    "bad", ["", "two words", 'quo"te', "it's", "$HOME", "back\\slash", "a#b", "x\ny", "`id`"]
)
def test_a_secret_systemd_could_read_two_ways_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot carry unambiguously"):
        environment_file_line("KEY", bad)
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        environment_file_line("A=B", "x")


def test_on_macos_secrets_go_into_the_agent_itself() -> None:
    spec = ServiceSpec("gateway", PYTHON, {"PATH": "/usr/bin"}, secrets={"OPENAI_API_KEY": "k"})
    data = plistlib.loads(launchd_plist(spec, "/tmp/log").encode())
    assert data["EnvironmentVariables"] == {"PATH": "/usr/bin", "OPENAI_API_KEY": "k"}

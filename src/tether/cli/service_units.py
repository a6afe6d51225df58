"""The text of the service definitions ``tether service install`` writes: a systemd user
unit on Linux, a launchd agent on macOS. Pure: no file, process or platform is touched
here, so every quoting rule is tested by rendering.

systemd rules applied (systemd.service(5), systemd.exec(5), systemd.unit(5)):

- ``ExecStart=``: each word is double-quoted when it needs to be, with ``\\`` and ``"``
  escaped; ``%`` (a specifier) becomes ``%%`` and ``$`` (variable expansion) ``$$``.
- ``Environment=``: one quoted assignment per line; ``\\`` and ``"`` escaped, ``%`` becomes
  ``%%``; ``$`` has no meaning there and stays as it is.
- A value with a newline, a carriage return or a NUL cannot be written in a unit line at
  all: it is refused (:class:`~tether.errors.ConfigError`), never silently changed.
- ``EnvironmentFile=-PATH``: the service's secrets, kept out of the unit (which is
  world-readable) in a file only its user reads; ``%`` in the path becomes ``%%``. Each
  line of that file is ``NAME=value`` with the value unquoted, so only values every
  systemd reads the same way are written: letters, digits and ``_@%+=:,./~^-`` (API keys,
  hex, base64). Anything else is refused, never quoted in the hope it parses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tether.errors import ConfigError

__all__ = [
    "SERVICES",
    "Service",
    "ServiceSpec",
    "environment_file_line",
    "environment_line",
    "exec_word",
    "launchd_label",
    "launchd_plist",
    "stop_timeout",
    "systemd_unit",
    "unit_name",
]

Service = Literal["gateway", "runner"]
SERVICES: tuple[Service, ...] = ("gateway", "runner")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+\Z")
_UNWRITABLE = {"\n": "newline", "\r": "carriage return", "\x00": "NUL"}
_FILE_VALUE = re.compile(r"[A-Za-z0-9_@%+=:,./~^-]+\Z")

# Exit statuses after which restarting cannot help (see `tether gateway --help` and
# `tether runner --help`): a bad config, a rejected credential, a credential in use.
_NO_RESTART: dict[Service, str] = {"gateway": "2", "runner": "2 3 4"}


@dataclass(frozen=True)
class ServiceSpec:
    """What a service runs and with which environment."""

    service: Service
    python: str
    """Absolute path of the interpreter (a venv's ``bin/python`` works as it is)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    stop_timeout: int = 15
    """Seconds the service manager waits after SIGTERM before it kills the process."""
    environment_file: str | None = None
    """systemd: the file of the service's secrets (it may be missing)."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """launchd: the secrets themselves (it has no environment file; the agent is 0600)."""

    @property
    def argv(self) -> list[str]:
        return [self.python, "-m", "tether", self.service]


def unit_name(service: Service) -> str:
    return f"tether-{service}.service"


def launchd_label(service: Service) -> str:
    return f"dev.tether.{service}"


def stop_timeout(grace: float) -> int:
    """A stop timeout a little above a shutdown grace: the process finishes in time, and
    the manager's SIGKILL comes only when it did not."""
    return math.ceil(grace) + 5


def _check(what: str, value: str) -> None:
    for bad, label in _UNWRITABLE.items():
        if bad in value:
            raise ConfigError(
                f"{what} contains a {label}, which a service definition cannot hold; "
                "choose a value without one"
            )


def exec_word(word: str) -> str:
    """One word of ``ExecStart=``, quoted and escaped as systemd reads it."""
    _check(f"the command word {word!r}", word)
    escaped = word.replace("%", "%%").replace("$", "$$")
    if word and _PLAIN_WORD.match(word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def environment_line(name: str, value: str) -> str:
    """``Environment="NAME=value"`` with the value escaped as systemd reads it."""
    if not _ENV_NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid environment variable name")
    _check(f"the value of {name}", value)
    text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{text}"'


def environment_file_line(name: str, value: str) -> str:
    """``NAME=value``, one line of an environment file, for a value systemd cannot read
    two ways (see the module docstring); anything else is refused."""
    if not _ENV_NAME.match(name):
        raise ConfigError(f"{name!r} is not a valid environment variable name")
    if not _FILE_VALUE.match(value):
        raise ConfigError(
            f"the value of {name} is empty or has characters (spaces, quotes, $, \\ …) an "
            "environment file cannot carry unambiguously; write it into the file yourself "
            "in systemd's quoting, or use a value of letters, digits and _@%+=:,./~^-"
        )
    return f"{name}={value}"


def systemd_unit(spec: ServiceSpec) -> str:
    """The ``tether-<service>.service`` user unit."""
    service = spec.service
    lines = [
        f"# Written by `tether service install {service}`; "
        f"`tether service uninstall {service}` removes it.",
        "[Unit]",
        f"Description=tether {service}",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(exec_word(w) for w in spec.argv),
        *(environment_line(k, v) for k, v in spec.environment.items()),
        *_environment_file(spec.environment_file),
        "Restart=on-failure",
        "RestartSec=2",
        f"RestartPreventExitStatus={_NO_RESTART[service]}",
        "KillSignal=SIGTERM",
        # SIGTERM to tether alone: it stops its own children within its grace; whatever
        # is left when the timeout runs out is killed
        "KillMode=mixed",
        f"TimeoutStopSec={spec.stop_timeout}",
        f"SyslogIdentifier=tether-{service}",
    ]
    if service == "gateway":
        # the runner gets none: its bubblewrap sandbox needs namespaces and, where bwrap
        # is installed setuid, privileges these would take away
        lines += ["NoNewPrivileges=yes", "UMask=0077"]
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines)


def _environment_file(path: str | None) -> list[str]:
    if path is None:
        return []
    _check(f"the path {path!r}", path)
    return ["EnvironmentFile=-" + path.replace("%", "%%")]


def launchd_plist(spec: ServiceSpec, log_file: str) -> str:
    """The ``dev.tether.<service>.plist`` launchd agent (restarted when it fails, output
    appended to ``log_file``)."""
    import plistlib

    environment = {**spec.environment, **spec.secrets}
    for name, value in environment.items():
        _check(f"the value of {name}", value)
    data = {
        "Label": launchd_label(spec.service),
        "ProgramArguments": spec.argv,
        "EnvironmentVariables": environment,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": spec.stop_timeout,
        "StandardOutPath": log_file,
        "StandardErrorPath": log_file,
        "ProcessType": "Background",
    }
    return plistlib.dumps(data, sort_keys=False).decode()

"""``tether service install|uninstall`` and ``tether logs``: the gateway or the runner as a
service of this user's service manager (systemd on Linux; launchd on macOS, untested).

The unit runs the interpreter that ran the install (so a virtualenv keeps working) with
the directories and config file in effect at install time; what it says is rendered by
:mod:`tether.cli.service_units`. Units are per user: no root needed, and nothing here
touches the system manager.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli import context
from tether.cli.help import examples
from tether.cli.service_secrets import (
    carried_secrets,
    env_file,
    names_in_env_file,
    secret_names,
    write_env_file,
)
from tether.cli.service_units import (
    SERVICES,
    Service,
    ServiceSpec,
    launchd_label,
    launchd_plist,
    stop_timeout,
    systemd_unit,
    unit_name,
)
from tether.errors import ConfigError, Conflict, NotFound, TetherError

if TYPE_CHECKING:
    from tether.config import Config

__all__ = ["Installed", "installed", "register", "service_app", "unit_state"]

service_app = typer.Typer(
    help="Run the gateway or the runner as a service of this user (systemd; launchd on macOS).",
    no_args_is_help=True,
    epilog=examples(
        "tether service install gateway",
        "tether service install runner       # after `tether runner enroll`",
        "tether service uninstall gateway",
    ),
)

ServiceArg = Annotated[
    str, typer.Argument(metavar="gateway|runner", help="Which daemon: gateway or runner.")
]
CARRIED = ("TETHER_CONFIG", "TETHER_CONFIG_DIR", "TETHER_DATA_DIR", "TETHER_RUNTIME_DIR")
"""Written into the unit (resolved); other ``TETHER_*`` variables are not."""
NOT_NOTED = frozenset({*CARRIED, "TETHER_TOKEN"})


@dataclass(frozen=True)
class Installed:
    """Where a service's definition lives on this machine, and which manager reads it."""

    service: Service
    manager: str
    """``systemd`` or ``launchd``."""
    path: Path
    name: str
    """The unit name (systemd) or the agent's label (launchd)."""


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _is_macos() -> bool:
    return sys.platform == "darwin"


def installed(service: Service) -> Installed:
    """Where ``service``'s definition is (or would be) on this platform."""
    if _is_macos():
        label = launchd_label(service)
        return Installed(
            service, "launchd", _home() / "Library" / "LaunchAgents" / f"{label}.plist", label
        )
    base = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    name = unit_name(service)
    return Installed(service, "systemd", Path(base) / "systemd" / "user" / name, name)


def _service(value: str) -> Service:
    for service in SERVICES:
        if value == service:
            return service
    raise ConfigError(f"expected gateway or runner, got {value!r}")


def _run(*argv: str) -> subprocess.CompletedProcess[str] | None:
    """Run a service-manager command; None when it is not installed."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def unit_state(where: Installed) -> str:
    """``active``, ``inactive``, ``failed`` ... as the manager says; ``unknown`` when it
    cannot be asked."""
    if where.manager == "launchd":
        done = _run("launchctl", "list", where.name)
        if done is None:
            return "unknown"
        return "loaded" if done.returncode == 0 else "not loaded"
    done = _run("systemctl", "--user", "is-active", where.name)
    if done is None:
        return "unknown"
    state = done.stdout.strip()
    return state if state and "\n" not in state else "unknown"


def _environment(config: Config) -> dict[str, str]:
    cli = context.current()
    env: dict[str, str] = {}
    explicit = cli.config_file or os.environ.get("TETHER_CONFIG")
    if explicit:
        env["TETHER_CONFIG"] = str(Path(explicit).expanduser().absolute())
    env["TETHER_CONFIG_DIR"] = str(config.config_path)
    env["TETHER_DATA_DIR"] = str(config.data_path)
    env["TETHER_RUNTIME_DIR"] = str(config.runtime_path)
    # the agent programs and tools found from this shell are found by the service too
    env["PATH"] = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return env


def _check_runner(config: Config) -> None:
    from tether.runner.identity import IDENTITY_FILE, load_identity

    path = config.config_path / IDENTITY_FILE
    if not path.exists():
        raise ConfigError(
            f"this machine's runner is not enrolled yet ({path} is missing): run "
            "`tether runner enroll --gateway URL --code CODE` first (a code comes from "
            "`tether runners add NAME` on the gateway)"
        )
    identity = load_identity(config.config_path)
    if not identity.workspaces and not config.runner.workspaces:
        raise ConfigError(
            "the runner has no workspaces: enrol with --workspace NAME=PATH or set "
            "[runner.workspaces] in the config file, then install the service"
        )


def _spec(service: Service, config: Config, secrets: dict[str, str]) -> ServiceSpec:
    grace = config.limits.shutdown_grace if service == "gateway" else config.runner.shutdown_grace
    return ServiceSpec(
        service=service,
        python=str(Path(sys.executable).absolute()),
        environment=_environment(config),
        stop_timeout=stop_timeout(grace),
        environment_file=str(env_file(config, service)),
        secrets=secrets,
    )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    tmp.replace(path)


def _manual(where: Installed) -> list[str]:
    if where.manager == "launchd":
        return [f"launchctl load -w {where.path}"]
    return ["systemctl --user daemon-reload", f"systemctl --user enable --now {where.name}"]


def _start(where: Installed, *, restart: bool = False) -> str | None:
    """Enable and start the service (``restart``: restart it first if it runs, so new
    settings apply); None when done, else why not."""
    steps = (
        [("launchctl", "load", "-w", str(where.path))]
        if where.manager == "launchd"
        else [
            ("systemctl", "--user", "daemon-reload"),
            *([("systemctl", "--user", "try-restart", where.name)] if restart else []),
            ("systemctl", "--user", "enable", "--now", where.name),
        ]
    )
    for argv in steps:
        done = _run(*argv)
        if done is None:
            return f"{argv[0]} is not installed"
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            return f"`{' '.join(argv)}` failed: {detail[-1] if detail else done.returncode}"
    return None


@service_app.command(
    "install",
    epilog=examples(
        "tether service install gateway",
        "tether service install gateway --env OPENAI_API_KEY --env TETHER_FEISHU_APP_SECRET",
        "tether service install runner --no-start",
        "tether --config ~/tether.toml service install gateway --force",
        after="The unit runs this Python (`-m tether gateway` or `runner`) with the config "
        "file and the config, data and runtime directories in effect now, and this PATH; "
        "other TETHER_* variables are not carried (put settings in the config file). "
        "Secrets (the API keys and channel secrets the config names) are carried only with "
        "--env NAME, into <config dir>/SERVICE.env (mode 0600; kept across installs, removed "
        "by uninstall); the install names those set here that the service will not have. It "
        "restarts on failure (not after a bad config or a rejected credential) and logs to "
        "the journal. Exit status: 0 when written (and started); 1 when a different unit "
        "is already there (use --force) or the service manager could not start it (the "
        "commands to run are printed); 2 for a bad argument, or a runner not enrolled yet.",
    ),
)
def install(
    service: ServiceArg,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Only write the unit; do not enable or start it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a different unit file already there.")
    ] = False,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="NAME",
            help="Give the service this variable's value from here (an API key, a channel "
            "secret), kept in <config dir>/SERVICE.env (mode 0600), not in the unit. "
            "Repeat for more.",
        ),
    ] = None,
) -> None:
    """Write the service's unit (a launchd agent on macOS), then enable and start it."""
    cli = context.current()
    which = _service(service)
    config = cli.config()
    if which == "runner":
        _check_runner(config)
    where = installed(which)
    launchd = where.manager == "launchd"
    given = carried_secrets(sorted(set(env or [])))
    secrets_file = env_file(config, which)
    spec = _spec(which, config, given if launchd else {})
    log_file = config.data_path / "logs" / f"{which}.log"
    text = launchd_plist(spec, str(log_file)) if launchd else systemd_unit(spec)
    old = where.path.read_text(encoding="utf-8") if where.path.exists() else None
    if old is not None and old != text and not force:
        raise Conflict(
            f"{where.path} exists and differs from what would be written: "
            "give --force to replace it (or `tether service uninstall` first)"
        )
    carried = set(given)
    if not launchd:
        if given:
            write_env_file(secrets_file, given)
        carried |= names_in_env_file(secrets_file)
    if old != text:
        if launchd:
            log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(where.path, text, 0o600 if given and launchd else 0o644)
    # a service that may be running with the old unit or secrets is restarted
    refresh = old is not None and (old != text or bool(given))
    problem = "not started (--no-start)" if no_start else _start(where, restart=refresh)
    needed = [n for n in secret_names(config, which) if n in os.environ and n not in carried]
    not_carried = sorted(
        k
        for k in os.environ
        if k.startswith("TETHER_") and k not in NOT_NOTED and k not in carried and k not in needed
    )
    logs = "tether logs -f" + ("" if which == "gateway" else " runner")
    data: dict[str, Any] = {
        "service": which,
        "manager": where.manager,
        "unit": where.name,
        "path": str(where.path),
        "changed": old != text,
        "started": problem is None,
        "problem": None if no_start else problem,
        "commands": _manual(where) if problem is not None else [],
        "not_carried": not_carried,
        "env_file": None if launchd else str(secrets_file),
        "secrets": sorted(carried),
        "secrets_not_carried": needed,
    }

    def human() -> None:
        verb = "wrote" if old != text else "unchanged"
        lines = [f"{verb} {where.path}"]
        if problem is None:
            again = " (restarted if it ran: the new settings apply)" if refresh else ""
            lines.append(f"{where.name} is enabled and running{again}")
        else:
            if not no_start:
                lines.append(f"could not start it: {problem}")
            lines.append("start it with:")
            lines += [f"  {c}" for c in _manual(where)]
        if given:
            where_kept = where.path if launchd else f"{secrets_file} (mode 0600)"
            lines.append(f"kept {', '.join(sorted(given))} in {where_kept}")
        if needed:
            lines.append(
                f"note: the service will not have {', '.join(needed)} (set here, read by the "
                "config): install again with " + " ".join(f"--env {n}" for n in needed)
            )
        if not_carried:
            lines.append(
                "note: not written to the unit (put them in the config file): "
                + ", ".join(not_carried)
            )
        lines.append(f"see it with: tether status, {logs}")
        if which == "gateway":
            lines.append("open its web console with: tether console --open")
        if where.manager == "systemd":
            lines.append(
                "to keep it running without a login session: "
                f"loginctl enable-linger {os.environ.get('USER') or '$USER'}"
            )
        typer.echo("\n".join(lines))

    cli.emit(data, human)
    if problem is not None and not no_start:
        raise typer.Exit(context.EXIT_FAILURE)


@service_app.command(
    "uninstall",
    epilog=examples(
        "tether service uninstall gateway",
        "tether service uninstall runner --json",
        after="Stops and disables the service and removes its unit file, and its file of "
        "secrets (<config dir>/SERVICE.env); nothing installed is not an error. Exit status: 0 when it is gone (or was never there); 2 for a bad "
        "argument.",
    ),
)
def uninstall(service: ServiceArg) -> None:
    """Stop and disable the service and remove its unit file (a launchd agent on macOS)."""
    cli = context.current()
    which = _service(service)
    where = installed(which)
    if not where.path.exists():
        cli.emit(
            {"service": which, "path": str(where.path), "removed": False, "warnings": []},
            f"{where.name} is not installed (nothing at {where.path})",
        )
        return
    warnings: list[str] = []
    steps = (
        [("launchctl", "unload", "-w", str(where.path))]
        if where.manager == "launchd"
        else [("systemctl", "--user", "disable", "--now", where.name)]
    )
    for argv in steps:
        done = _run(*argv)
        if done is not None and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            warnings.append(f"`{' '.join(argv)}` failed: {detail[-1] if detail else ''}")
    where.path.unlink(missing_ok=True)
    removed = [str(where.path)]
    if where.manager == "systemd":
        done = _run("systemctl", "--user", "daemon-reload")
        if done is not None and done.returncode != 0:
            warnings.append("`systemctl --user daemon-reload` failed")
        secrets = env_file(cli.config(), which)  # it holds secrets: nothing is left behind
        if secrets.exists():
            secrets.unlink()
            removed.append(str(secrets))
    cli.emit(
        {
            "service": which,
            "path": str(where.path),
            "removed": True,
            "files": removed,
            "warnings": warnings,
        },
        "\n".join([*(f"removed {f}" for f in removed), *(f"warning: {w}" for w in warnings)]),
    )


def logs(
    service: Annotated[
        str | None,
        typer.Argument(
            metavar="[gateway|runner]",
            help="Which service (default: every installed one).",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines as they come.")
    ] = False,
    lines: Annotated[
        int | None,
        typer.Option("--lines", "-n", metavar="N", min=0, help="Show the last N lines."),
    ] = None,
) -> None:
    """Show the logs of the installed services (journalctl; the log file on macOS)."""
    cli = context.current()
    chosen = [_service(service)] if service is not None else list(SERVICES)
    present = [w for w in (installed(s) for s in chosen) if w.path.exists()]
    if not present:
        what = f"the {service} is not" if service else "neither the gateway nor the runner is"
        raise NotFound(
            f"{what} installed as a service: see `tether service install --help` "
            "(a daemon started by hand or by `tether up` logs to its terminal)"
        )
    if present[0].manager == "launchd":
        config = cli.config()
        files = [str(config.data_path / "logs" / f"{w.service}.log") for w in present]
        argv = ["tail", "-n", str(10 if lines is None else lines)]
        argv += ["-F"] if follow else []
        argv += files
    else:
        argv = ["journalctl", "--user"]
        for where in present:
            argv += ["-u", where.name]
        argv += ["-f"] if follow else []
        argv += ["-n", str(lines)] if lines is not None else []
        argv += ["-o", "json"] if cli.json else []
    if shutil.which(argv[0]) is None:
        raise NotFound(f"{argv[0]} is not installed: cannot show the service's logs")
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - a fixed program and arguments, no shell
    except OSError as exc:
        raise TetherError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
    app.command(
        name="logs",
        epilog=examples(
            "tether logs -f",
            "tether logs runner -n 100",
            "tether logs --json      # journal entries as JSON lines",
            after="Reads the journal of `tether service install` units "
            "(journalctl --user -u tether-gateway.service ...). Exit status: that of "
            "journalctl; 1 when nothing is installed or journalctl is missing.",
        ),
    )(logs)

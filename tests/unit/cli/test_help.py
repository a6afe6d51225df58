"""Every command's help answers the question: described options, real metavars, examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from tests.support.process import run_cli
from tether.cli import flags
from tether.cli.main import app

ROOT = typer.main.get_command(app)
flags.annotate(ROOT, flags.note(ROOT.params))


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        out.extend(_commands(sub, (*path, name)))
    return out


COMMANDS = _commands(ROOT)
PATHS = [path for path, _ in COMMANDS]


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "tether" for p in PATHS]
)
def test_every_parameter_is_described_with_a_real_metavar(
    path: tuple[str, ...], command: Any
) -> None:
    where = f"tether {' '.join(path)}".strip()
    assert (command.help or "").strip(), f"{where} has no description"
    assert "Examples:" in (command.epilog or ""), f"{where} has no examples"
    for param in command.params:
        name = param.opts[0] if param.opts else param.name
        assert (getattr(param, "help", None) or "").strip(), f"{where} {name}: no help"
        if param.param_type_name == "argument" or not param.is_flag:
            metavar = param.metavar or ""
            assert metavar, f"{where} {name}: no metavar"
            assert not metavar.startswith("<"), f"{where} {name}: metavar {metavar!r}"


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "tether" for p in PATHS])
def test_help_of_every_command_shows_examples_and_the_global_options(
    path: tuple[str, ...], home: Path
) -> None:
    out = run_cli(home, *path, "--help")
    assert out.returncode == 0, out.stderr
    assert "Examples:" in out.stdout
    assert "Usage: tether" in out.stdout
    assert "<str>" not in out.stdout, out.stdout
    assert "<int" not in out.stdout, out.stdout
    if path:
        assert "Global options, before or after the command: --json" in out.stdout
    for option in ("--json", "--log-level", "--log-format", "--config", "--data-dir"):
        assert option in out.stdout

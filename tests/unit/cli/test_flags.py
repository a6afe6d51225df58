"""Global options anywhere on the command line: one hoisting step before click parses."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from tether.cli import flags
from tether.cli.main import app

ROOT = typer.main.get_command(app)


def hoist(*argv: str) -> list[str]:
    return flags.hoist(list(argv), ROOT.params)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["runs", "list", "--json"], ["--json", "runs", "list"]),
        (["runners", "add", "box", "--json"], ["--json", "runners", "add", "box"]),
        (
            ["runs", "list", "--log-level", "debug", "--state", "running"],
            ["--log-level", "debug", "runs", "list", "--state", "running"],
        ),
        (["db", "status", "--data-dir=/x", "--json"], ["--data-dir=/x", "--json", "db", "status"]),
        (["--json", "runs", "list"], ["--json", "runs", "list"]),
        # after `--` everything is an argument: a run whose input is "--json"
        (["runs", "start", "--", "--json"], ["runs", "start", "--", "--json"]),
        # a value-taking option at the very end is left for click to report
        (["runs", "list", "--config"], ["--config", "runs", "list"]),
        (["runs", "start", "--jsonish"], ["runs", "start", "--jsonish"]),
    ],
)
def test_global_options_move_to_the_front(argv: list[str], expected: list[str]) -> None:
    assert hoist(*argv) == expected


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, sub in getattr(command, "commands", {}).items():
        out.append(((*path, name), sub))
        out.extend(_commands(sub, (*path, name)))
    return out


def test_no_command_has_an_option_named_like_a_global_one() -> None:
    """Otherwise hoisting would steal that command's option."""
    globals_ = {name for p in ROOT.params for name in (*p.opts, *p.secondary_opts)}
    for path, command in _commands(ROOT):
        for param in command.params:
            clash = globals_ & {*param.opts, *param.secondary_opts}
            assert not clash, f"`tether {' '.join(path)}` defines {clash}"


def test_the_note_names_every_global_option() -> None:
    note = flags.note(ROOT.params)
    for name in ("--json", "--log-level LEVEL", "--log-format FORMAT", "--config FILE"):
        assert name in note
    assert "--data-dir DIR" in note

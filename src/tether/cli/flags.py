"""Global options anywhere on the command line: ``tether --json runs list`` and
``tether runs list --json`` mean the same.

The global options are declared once, on the root callback in :mod:`tether.cli.main`.
Before click parses the command line, :func:`hoist` moves every global option that comes
after the command to the front, where the root callback reads it, and :func:`annotate`
adds one line naming them to the help of every command. Everything after ``--`` is left
alone, so ``tether runs start -- --json`` starts a run whose input is ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["annotate", "hoist", "note"]


def _spec(params: Iterable[Any]) -> dict[str, bool]:
    """``{--name: takes a value}`` for the root command's options."""
    spec: dict[str, bool] = {}
    for param in params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes_value = not getattr(param, "is_flag", False)
        for name in (*param.opts, *param.secondary_opts):
            spec[name] = takes_value
    return spec


def hoist(argv: Sequence[str], params: Iterable[Any]) -> list[str]:
    """Move the global options (and their values) in ``argv`` to the front, in order."""
    spec = _spec(params)
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name, eq, _ = arg.partition("=")
        if name in spec:
            front.append(arg)
            if spec[name] and not eq and i + 1 < len(argv):
                front.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def note(params: Iterable[Any]) -> str:
    """The line each command's help carries: which global options it also takes."""
    shown = []
    for param in params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        name = max(param.opts, key=len)
        shown.append(name if getattr(param, "is_flag", False) else f"{name} {param.metavar}")
    return (
        "Global options, before or after the command: "
        + ", ".join(shown)
        + " (see `tether --help`)."
    )


def annotate(command: Any, text: str) -> None:
    """Append ``text`` to the help epilog of ``command``'s subcommands, at every depth."""
    for sub in getattr(command, "commands", {}).values():
        sub.epilog = f"{sub.epilog}\n\n{text}" if sub.epilog else text
        annotate(sub, text)

"""``tether runners`` (admin: add, list, revoke) and ``tether tools call`` (diagnostics)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, open_client
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.transport.client import RpcClient

__all__ = ["runners_app", "tools_app"]

T = TypeVar("T")
runners_app = typer.Typer(help="Enrol, list and revoke runners (admin).", no_args_is_help=True)
tools_app = typer.Typer(help="Call tools on runners (admin diagnostics).", no_args_is_help=True)


def _call(url: str | None, token: str | None, fn: Callable[[RpcClient], Awaitable[T]]) -> T:
    config = context.current().config()

    async def go() -> T:
        async with await open_client(config, url, token) as client:
            return await fn(client)

    return context.run_async(go())


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@runners_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the machine (letters, digits, . _ -).")],
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate", help="Re-enrol an existing runner (its old credential stops working)."
        ),
    ] = False,
    ttl: Annotated[float, typer.Option("--ttl", min=1, help="Seconds the code stays valid.")] = 600,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Create a runner and print a one-time enrolment code and the command to run on that machine."""
    from tether.protocol.methods import RUNNER_ADD
    from tether.protocol.runners import RunnerAddParams

    try:
        params = RunnerAddParams(name=name, rotate=rotate, code_ttl=ttl)
        import msgspec

        params = msgspec.convert(msgspec.structs.asdict(params), RunnerAddParams)
    except Exception as exc:  # noqa: BLE001 - msgspec reports the bad field
        raise ConfigError(f"invalid runner name {name!r}: {exc}") from None
    added = _call(url, token, lambda c: c.call(RUNNER_ADD, params))
    minutes = max(1, round((added.expires_at - time.time()) / 60))
    context.current().emit(
        added,
        f"runner {added.name} ({added.runner_id}) created.\n"
        f"On that machine, within {minutes} min, run:\n\n  {added.command} --workspace NAME=PATH\n",
    )


@runners_app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List runners: online or not, last seen, version, workspaces, load."""
    from tether.protocol.methods import RUNNER_LIST
    from tether.protocol.system import Empty

    page = _call(url, token, lambda c: c.call(RUNNER_LIST, Empty()))

    def human() -> None:
        if not page.runners:
            typer.echo("no runners (add one with `tether runners add NAME`)")
        for r in page.runners:
            state = "online" if r.online else ("offline" if r.status == "enrolled" else r.status)
            load = f"{r.inflight}/{r.max_concurrency}" if r.online else "-"
            typer.echo(
                f"{r.name:<16} {state:<8} seen {_ago(r.last_seen_at):<10} v{r.version or '?':<8} "
                f"load {load:<6} sandbox {r.sandbox or '-':<6} workspaces {', '.join(r.workspaces) or '-'}"
            )

    context.current().emit(page, human)


@runners_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The runner's name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a runner: its credential stops working and it is disconnected at once."""
    from tether.protocol.methods import RUNNER_REVOKE
    from tether.protocol.runners import RunnerRevokeParams

    info = _call(url, token, lambda c: c.call(RUNNER_REVOKE, RunnerRevokeParams(name=name)))
    context.current().emit(info, f"runner {info.name} revoked")


@tools_app.command("call")
def call(
    runner: Annotated[str, typer.Argument(help="Runner name or id.")],
    tool: Annotated[
        str,
        typer.Argument(
            help="Tool name (read_file, write_file, edit_file, list_dir, glob, grep, shell)."
        ),
    ],
    args: Annotated[str, typer.Option("--args", help="Tool arguments as a JSON object.")] = "{}",
    workspace: Annotated[
        str, typer.Option("--workspace", help="Workspace name (default: the runner's only one).")
    ] = "",
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.1, help="Seconds (default: runner.default_timeout)."),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Call one tool on a runner. It still goes through a capability token and the runner's policy."""
    from tether.protocol.methods import TOOL_CALL
    from tether.protocol.runners import ToolCallParams

    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("--args must be a JSON object")
    params = ToolCallParams(
        runner=runner, tool=tool, args=parsed, workspace=workspace, timeout=timeout
    )
    outcome = _call(url, token, lambda c: c.call(TOOL_CALL, params))
    result = json.loads(bytes(outcome.result))

    def human() -> None:
        if isinstance(result, dict) and "output" in result and "exit_code" in result:
            typer.echo(result["output"], nl=False)
            typer.echo(
                f"\n[exit {result['exit_code']}, {outcome.duration:.3f} s, call {outcome.call_id}]"
            )
        else:
            typer.echo(json.dumps(result, indent=2, ensure_ascii=False))

    context.current().emit(outcome, human)

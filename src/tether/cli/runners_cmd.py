"""``tether runners`` (admin: add, list, revoke) and ``tether tools call`` (diagnostics)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tether.cli import context
from tether.cli.connect import TokenOpt, UrlOpt, request
from tether.cli.help import examples
from tether.cli.table import table
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.protocol.runners import ToolCallParams, ToolCallResult
    from tether.transport.client import RpcClient

__all__ = ["runners_app", "tools_app"]

T = TypeVar("T")
runners_app = typer.Typer(
    help="Enrol, list and revoke runners (admin).",
    no_args_is_help=True,
    epilog=examples("tether runners add laptop", "tether runners list"),
)
tools_app = typer.Typer(
    help="List and call tools on runners (admin diagnostics).",
    no_args_is_help=True,
    epilog=examples(
        "tether tools list laptop",
        'tether tools call laptop shell --args \'{"command": "uptime"}\'',
    ),
)


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@runners_app.command(
    "add",
    epilog=examples(
        "tether runners add laptop",
        "tether runners add laptop --rotate      # a new credential for an enrolled runner",
        "tether runners add ci-box --ttl 60 --json",
    ),
)
def add(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="A name for the machine (letters, digits, . _ -)."),
    ],
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate", help="Re-enrol an existing runner (its old credential stops working)."
        ),
    ] = False,
    ttl: Annotated[
        float,
        typer.Option("--ttl", metavar="SECONDS", min=1, help="Seconds the code stays valid."),
    ] = 600,
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
    added = request(url, token, lambda c: c.call(RUNNER_ADD, params))
    minutes = max(1, round((added.expires_at - time.time()) / 60))
    if rotate:
        how = (
            f"runner {added.name} ({added.runner_id}) has a new code; its old credential "
            "stops working once this one is used.\n"
            f"On that machine, within {minutes} min, run:\n\n  {added.command}\n\n"
            "(it keeps the workspaces it had; --workspace NAME=PATH replaces them)\n"
        )
    else:
        how = (
            f"runner {added.name} ({added.runner_id}) created.\n"
            f"On that machine, within {minutes} min, run:\n\n"
            f"  {added.command} --workspace NAME=PATH\n"
        )
    context.current().emit(added, how)


@runners_app.command("list", epilog=examples("tether runners list", "tether runners list --json"))
def list_(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List runners: online or not, last seen, version, workspaces, hosted agents, load."""
    from tether.protocol.methods import RUNNER_LIST
    from tether.protocol.system import Empty

    page = request(url, token, lambda c: c.call(RUNNER_LIST, Empty()))

    def human() -> None:
        if not page.runners:
            typer.echo("no runners (add one with `tether runners add NAME`)")
            return
        rows = []
        for r in page.runners:
            state = "online" if r.online else ("offline" if r.status == "enrolled" else r.status)
            load = f"{r.inflight}/{r.max_concurrency}" if r.online else "-"
            rows.append(
                [
                    r.name,
                    state,
                    _ago(r.last_seen_at),
                    r.version or "?",
                    load,
                    r.sandbox or "-",
                    ", ".join(r.workspaces) or "-",
                    ", ".join(r.agents) or "-",
                ]
            )
        headers = ["NAME", "STATE", "SEEN", "VERSION", "LOAD", "SANDBOX", "WORKSPACES", "AGENTS"]
        typer.echo(table(headers, rows))

    context.current().emit(page, human)


@runners_app.command("revoke", epilog=examples("tether runners revoke laptop"))
def revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The runner's name.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a runner: its credential stops working and it is disconnected at once."""
    from tether.protocol.methods import RUNNER_REVOKE
    from tether.protocol.runners import RunnerRevokeParams

    info = request(url, token, lambda c: c.call(RUNNER_REVOKE, RunnerRevokeParams(name=name)))
    context.current().emit(info, f"runner {info.name} revoked")


async def _call(client: RpcClient, params: ToolCallParams, wait: float) -> ToolCallResult:
    """Make the call; with ``ask``, say which request waits for approval meanwhile."""
    import asyncio

    from tether.protocol.access import RequestListParams
    from tether.protocol.methods import REQUEST_LIST, TOOL_CALL

    pending = asyncio.ensure_future(client.call(TOOL_CALL, params, timeout=wait))
    if params.ask:
        shown: set[str] = set()
        while not pending.done() and not shown:
            await asyncio.wait({pending}, timeout=0.2)
            found = await client.call(REQUEST_LIST, RequestListParams())
            for r in found.requests:
                if r.run_id is None and r.plan.get("tool") == params.tool and r.id not in shown:
                    shown.add(r.id)
                    typer.echo(
                        f"waiting for approval of request {r.handle}: "
                        f"`tether approvals approve {r.handle}` (or deny it)",
                        err=True,
                    )
    return await pending


@tools_app.command(
    "call",
    epilog=examples(
        'tether tools call laptop shell --args \'{"command": "git status --short"}\'',
        'tether tools call laptop read_file --args \'{"path": "README.md"}\' --workspace app',
        "tether tools call laptop noop --json",
        'tether tools call laptop shell --args \'{"command": "make"}\' --ask   # approve it elsewhere',
    ),
)
def call(
    runner: Annotated[str, typer.Argument(metavar="RUNNER", help="Runner name or id.")],
    tool: Annotated[
        str,
        typer.Argument(
            metavar="TOOL",
            help="Tool name (read_file, write_file, edit_file, list_dir, glob, grep, shell, noop).",
        ),
    ],
    args: Annotated[
        str, typer.Option("--args", metavar="JSON", help="Tool arguments as a JSON object.")
    ] = "{}",
    workspace: Annotated[
        str,
        typer.Option(
            "--workspace",
            metavar="NAME",
            help="Workspace name (default: the runner's only one).",
        ),
    ] = "",
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.1,
            help="Seconds (default: runner.default_timeout).",
        ),
    ] = None,
    ask: Annotated[
        bool,
        typer.Option(
            "--ask",
            help="Send the call through the approval path: it waits until someone allows it "
            "(`tether approvals approve HANDLE`) and runs only then.",
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Call one tool on a runner. Policy decides first (the deny list refuses; what would
    ask counts as allowed by you, unless --ask), then a capability token and the runner's
    own policy."""
    from tether.protocol.runners import ToolCallParams

    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise ConfigError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("--args must be a JSON object")
    params = ToolCallParams(
        runner=runner, tool=tool, args=parsed, workspace=workspace, timeout=timeout, ask=ask
    )
    config = context.current().config()
    wait = (timeout or config.runner.default_timeout) + 10
    if ask:
        wait += config.policy.approval_timeout
    outcome = request(url, token, lambda c: _call(c, params, wait))
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


@tools_app.command(
    "list",
    epilog=examples(
        "tether tools list laptop",
        "tether tools list laptop --schemas      # with each tool's params (JSON schema)",
        "tether tools list laptop --json",
    ),
)
def list_tools(
    runner: Annotated[str, typer.Argument(metavar="RUNNER", help="Runner name or id (connected).")],
    schemas: Annotated[
        bool, typer.Option("--schemas", help="Also print each tool's params as a JSON schema.")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List the tools a connected runner offers: name, risk class, summary (and params)."""
    from tether.protocol.methods import TOOL_LIST
    from tether.protocol.runners import ToolListParams

    found = request(url, token, lambda c: c.call(TOOL_LIST, ToolListParams(runner=runner)))

    def human() -> None:
        typer.echo(
            table(["TOOL", "RISK", "SUMMARY"], ([t.name, t.risk, t.summary] for t in found.tools))
        )
        if schemas:
            for t in found.tools:
                typer.echo(f"\n{t.name}:\n{json.dumps(t.params_schema, indent=2)}")

    context.current().emit(found, human)

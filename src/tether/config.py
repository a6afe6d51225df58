"""Typed configuration: defaults < TOML file < ``TETHER_*`` environment < command-line flags.

The file is ``--config``, else ``$TETHER_CONFIG``, else ``<config dir>/config.toml`` when it
exists. Environment variables map onto keys by lower-casing and splitting on ``__``:
``TETHER_DATA_DIR`` is ``data_dir``, ``TETHER_GATEWAY__LISTEN`` is ``gateway.listen``.
Unknown keys in a file are errors; ``TETHER_*`` variables that name no key are ignored.

A bad value raises :class:`~tether.errors.ConfigError` naming the key, the expected type
and where the value came from. Directories are resolved at load time, so a loaded
:class:`Config` always has ``data_dir``, ``config_dir`` and ``runtime_dir`` set.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from tether.errors import ConfigError
from tether.schedule import check_cron, check_zone
from tether.types import ROUTINE_NAME, CatchUp, SessionMode

__all__ = [
    "DEFAULT_LISTEN",
    "AgentsConfig",
    "ChannelsConfig",
    "Config",
    "ConversationDefaults",
    "FeishuConfig",
    "GatewayConfig",
    "GuardSpec",
    "LedgerConfig",
    "Limits",
    "OpenAIConfig",
    "PolicyConfig",
    "RoutineSpec",
    "RoutinesConfig",
    "RuleSpec",
    "RunnerConfig",
    "RunsConfig",
    "WebhookConfig",
    "is_loopback_host",
    "load_config",
    "parse_listen",
    "redact_url",
    "redacted",
]

DEFAULT_LISTEN = "127.0.0.1:8765"
ENV_PREFIX = "TETHER_"

Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


_SECRET_KEYS = {"database_url"}
_MASKED_KEYS = {"metrics_token"}
_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) and check the port range."""
    m = _LISTEN.match(value)
    if not m:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    port = int(m["port"])
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return (m["v6"] or m["host"]), port


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Limits(_Section, frozen=True):
    """Limits enforced on every connection (see docs/operator.md)."""

    max_frame_bytes: Positive = 1024 * 1024
    max_ws_connections: Positive = 20_000
    max_ipc_connections: Positive = 128
    hello_timeout: Seconds = 5.0
    idle_timeout: Seconds = 90.0
    send_queue_frames: Positive = 1024
    max_inflight_requests: Positive = 256
    request_timeout: Seconds = 30.0
    """Deadline for a request that names none (the CLI's calls; the gateway's own calls)."""
    shutdown_grace: Seconds = 10.0
    runner_grace: Seconds = 5.0
    """How long a call waits for its runner to come back after the connection drops."""
    max_runner_inflight: Positive = 64
    """Tool calls in flight per runner (also capped by what the runner advertises)."""
    header_timeout: Seconds = 10.0
    """Seconds a TCP connection has to complete a request's headers (and an enrolment
    request's body) before it is closed."""
    max_pending_connections: Positive = 256
    """TCP connections that have not completed a request yet; at the cap the oldest is
    closed to admit a new one."""
    enroll_rate: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """``POST /enroll`` attempts a second per source address (``enroll_burst`` saved up)."""
    enroll_burst: Positive = 10
    enroll_total_rate: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """``POST /enroll`` attempts a second from everybody (``enroll_total_burst`` saved up)."""
    enroll_total_burst: Positive = 30


class GatewayConfig(_Section, frozen=True):
    """Where and how the gateway listens."""

    listen: str = DEFAULT_LISTEN
    public_url: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False
    access_log: bool = True
    metrics_networks: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    """Peers in these networks may read ``/metrics`` without a token (default: loopback)."""
    metrics_token: str | None = None
    """A bearer token that lets any other peer read ``/metrics`` (unset: they get 403)."""

    def __post_init__(self) -> None:
        try:
            parse_listen(self.listen)
        except ValueError as exc:
            raise ValueError(f"listen: {exc}") from None
        for network in self.metrics_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"metrics_networks: {exc}") from None
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ValueError("metrics_token: use at least 16 characters")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_key: tls_cert and tls_key must be given together")


class LedgerConfig(_Section, frozen=True):
    """Durable storage: SQLite in the data dir unless ``database_url`` names PostgreSQL."""

    database_url: str | None = None
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """NORMAL survives a process crash; FULL also survives power loss, at about 3x the cost."""
    event_retention_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    artifact_retention_days: Annotated[float, msgspec.Meta(ge=0)] = 7.0
    retention_interval: Seconds = 3600.0
    inline_payload_bytes: Positive = 64 * 1024
    group_commit_max_rows: Positive = 512
    pg_idle_transaction_timeout: Seconds = 15.0
    """PostgreSQL ends a transaction of ours left idle this long, so a stalled gateway
    (stopped mid-transaction) releases its row locks and another can take its runs over."""


class OpenAIConfig(_Section, frozen=True):
    """The ``openai`` agent: any OpenAI-compatible Chat Completions endpoint."""

    model: str | None = None
    """The model name; the agent is offered only when it is set."""
    base_url: str | None = None
    """E.g. ``https://api.deepseek.com/v1`` or ``http://127.0.0.1:11434/v1`` (Ollama); unset:
    OpenAI's."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable that holds the API key (keys are never put in config)."""
    system_prompt: str = (
        "You are a coding agent working in the user's workspace through the tools you are "
        "given. A tool call may need a person's approval, or be refused; when a call did not "
        "run, say so and do not pretend it did. Be brief."
    )
    max_rounds: Positive = 40
    """Model calls in one run at most."""
    request_timeout: Seconds = 120.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    """Retries of one model call (429 with its retry-after, 5xx, a broken stream, a timeout)."""
    context_tokens: Positive = 100_000
    """The conversation sent to the model is trimmed (oldest tool results first) to fit
    about this many tokens. Tokens are estimated from characters, with no tokenizer to
    download; the usage the server reports corrects the estimate as the run goes."""
    tool_result_chars: Positive = 32_000
    """A tool result longer than this reaches the model cut, with a note saying so."""


class CodexConfig(_Section, frozen=True):
    """The hosted ``codex`` agent, as a runner starts it (``codex app-server``); read by
    the runner, which also keeps its model credentials (they never reach the gateway)."""

    command: str = "codex"
    """The program: a path, or a name on PATH (the npm shim or the native binary)."""
    settings: dict[str, Any] = {}
    """Codex config keys (dotted names) passed as ``-c key=value``: the model, a model
    provider and its ``base_url``. tether's own settings (plugins, analytics, updates and
    web search off) are passed after them and win."""
    env: list[str] = []
    """Names of the runner's environment variables the agent gets (e.g. its API key)."""
    sandbox: Literal["auto", "codex", "external"] = "auto"
    """``codex``: Codex's own read-only sandbox inside tether's, so reads run unasked and
    everything more asks (needs nested user namespaces); ``external``: tether's sandbox
    only, and every command asks; ``auto``: ``codex`` where it works, else ``external``."""
    share_home: bool = False
    """Give sessions the user's own CODEX_HOME (``user_home``) instead of a private one,
    so threads started with the Codex CLI can be attached (docs/agents.md)."""
    user_home: str = "~/.codex"
    start_timeout: Seconds = 60.0
    """Seconds for the agent to start and answer ``initialize``."""


class AcpAgentConfig(_Section, frozen=True):
    """A hosted ACP agent (``claude``, ``gemini``, ``codex-acp``) as a runner starts it: read
    by the runner, which keeps the model credentials (they never reach the gateway). Each
    preset knows how to pass these to its program (docs/agents.md)."""

    command: str = ""
    """The program: a path, or a name on PATH (empty: the preset's own name)."""
    model: str = ""
    """The model it uses (empty: the preset's default)."""
    base_url: str = ""
    """The model API's base URL (empty: the vendor's)."""
    key_env: str = ""
    """The runner's environment variable holding the API key (empty: the preset's usual
    one, e.g. ``ANTHROPIC_API_KEY``); given to the agent under the name it expects."""
    env: list[str] = []
    """More of the runner's environment variables the agent gets."""
    args: list[str] = []
    """More command-line arguments for the program."""
    settings: dict[str, Any] = {}
    """``codex-acp`` only: Codex config keys passed as ``-c key=value`` (as for ``codex``)."""
    mounts: list[str] = []
    """More paths the agent may read inside the sandbox (e.g. the Python environment of an
    agent written in Python): read-only, never a protected path."""
    start_timeout: Seconds = 60.0
    """Seconds for the agent to start, answer ``initialize`` and open a session."""


class AgentsConfig(_Section, frozen=True):
    """Agent backends that need configuration."""

    openai: OpenAIConfig = msgspec.field(default_factory=OpenAIConfig)
    codex: CodexConfig = msgspec.field(default_factory=CodexConfig)
    claude: AcpAgentConfig = msgspec.field(default_factory=AcpAgentConfig)
    """Claude Code through ``@agentclientprotocol/claude-agent-acp``."""
    gemini: AcpAgentConfig = msgspec.field(default_factory=AcpAgentConfig)
    """Gemini CLI (``gemini --acp``)."""
    codex_acp: AcpAgentConfig = msgspec.field(default_factory=AcpAgentConfig, name="codex-acp")
    """Codex through ``@zed-industries/codex-acp``."""
    acp: AcpAgentConfig = msgspec.field(default_factory=AcpAgentConfig)
    """Any other ACP agent: its ``command`` (and ``args``) must be set."""

    def preset(self, agent: str) -> AcpAgentConfig:
        """The configuration of the ACP preset ``agent``."""
        return {
            "claude": self.claude,
            "gemini": self.gemini,
            "codex-acp": self.codex_acp,
            "acp": self.acp,
        }[agent]


class RunsConfig(_Section, frozen=True):
    """How the gateway executes runs (see docs/operator.md)."""

    default_agent: str = "script"
    """The agent of a new session."""
    default_runner: str | None = None
    """The runner (name) of a new session: where its tool calls go when they name none."""
    default_workspace: str | None = None
    """The workspace of a new session on that runner."""
    default_mode: SessionMode = "auto-read"
    """The mode of a new session: how its tool calls are decided (docs/security.md)."""
    fixture_roles: list[str] = msgspec.field(default_factory=lambda: ["admin"])
    """Connection roles (``admin``) or user roles (``member``) that may start runs with a
    fixture agent (``script``)."""
    fixture_principals: list[str] = msgspec.field(default_factory=list)
    """Principals (e.g. ``admin``, ``local-admin``) that may, whatever their role."""
    lease_seconds: Seconds = 30.0
    max_attempts: Positive = 3
    max_active: Positive = 64
    max_duration: Seconds = 3600.0
    stall_timeout: Seconds = 900.0
    cancel_grace: Seconds = 10.0
    steering_queue: Positive = 16
    queue_ttl: Seconds = 86_400.0
    resume_runner_wait: Seconds = 30.0
    """Seconds a resumed run's tool call waits for its runner to reconnect (runners come
    back on their own after a gateway restart)."""
    poll_interval: Seconds = 1.0
    reap_interval: Seconds = 5.0
    node_id: str | None = None
    """Stable name of this gateway (default: host name + a hash of the data dir)."""


Decision = Literal["allow", "ask", "deny"]
RiskClass = Literal["read", "write", "exec"]


class RuleSpec(_Section, frozen=True):
    """One policy rule: the conditions it names, and what it decides (docs/security.md)."""

    decision: Decision
    tool: str | None = None
    """A tool name, or a glob of names (``*_file``)."""
    risk: RiskClass | None = None
    workspace: str | None = None
    paths: list[str] = []
    """Globs on workspace-relative paths (``src/**``): every path of the call must match."""
    command: str | None = None
    """A glob on one simple shell command (``git status*``); shell calls only."""
    reason: str = ""

    def __post_init__(self) -> None:
        named = (self.tool, self.risk, self.workspace, self.command)
        if all(v is None for v in named) and not self.paths:
            raise ValueError("decision: a rule must name at least one condition")


class GuardSpec(_Section, frozen=True):
    """One entry of the deny list: a dangerous command or path, refused in every mode."""

    reason: str
    program: list[str] = []
    """Command names (globs: ``mkfs*``)."""
    subcommand: str | None = None
    """The first operand (``push`` for ``git push``)."""
    flags: list[list[str]] = []
    """Each group: one of its options is present (``-rf`` counts as ``-r`` and ``-f``)."""
    args: list[str] = []
    """Globs: some operand matches (empty: any)."""
    piped_from: list[str] = []
    """The command is fed by a pipe from one of these (``curl … | sh``)."""
    paths: list[str] = []
    """Globs: a write tool's path, a shell redirection target, or a file named to a
    command that writes it (``cp``, ``mv``, ``tee``, ``sed`` …) matches."""

    def __post_init__(self) -> None:
        if not self.program and not self.paths:
            raise ValueError("reason: a deny entry names a program or paths")


def _default_guards() -> list[GuardSpec]:
    shells = ["sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "perl", "ruby"]
    roots = ["/", "/*", "~", "~/", "~/*", "$HOME", "$HOME/", "$HOME/*", "${HOME}", "${HOME}/*"]
    roots += [f"/{d}" for d in ("bin", "boot", "etc", "home", "lib", "root", "usr", "var")]
    protected = ["main", "master", "*:main", "*:master", "origin/main", "origin/master"]
    return [
        GuardSpec(
            reason="deletes the whole file system or a home directory",
            program=["rm"],
            flags=[["-r", "-R", "--recursive"]],
            args=roots,
        ),
        GuardSpec(
            reason="changes the modes or owner of the whole file system",
            program=["chmod", "chown", "chgrp"],
            flags=[["-R", "--recursive"]],
            args=roots,
        ),
        GuardSpec(
            reason="runs a script downloaded from the network",
            program=shells,
            piped_from=["curl", "wget", "fetch"],
        ),
        GuardSpec(
            reason="force-pushes a protected branch",
            program=["git"],
            subcommand="push",
            flags=[["-f", "--force", "--force-with-lease", "--force-if-includes"]],
            args=protected,
        ),
        GuardSpec(
            reason="force-pushes a protected branch",
            program=["git"],
            subcommand="push",
            args=["+main", "+master", "+*:main", "+*:master"],
        ),
        GuardSpec(reason="formats a disk", program=["mkfs", "mkfs.*", "mke2fs", "wipefs"]),
        GuardSpec(
            reason="writes to a disk device",
            program=["dd"],
            args=["of=/dev/sd*", "of=/dev/nvme*", "of=/dev/hd*", "of=/dev/vd*", "of=/dev/disk*"],
        ),
        GuardSpec(
            reason="writes a git hook (code that git runs later, outside any sandbox)",
            paths=[".git/hooks/**", "**/.git/hooks/**"],
        ),
    ]


class PolicyConfig(_Section, frozen=True):
    """How tool calls are decided: rules, the deny list and approvals (docs/security.md)."""

    rules: list[RuleSpec] = []
    deny: list[GuardSpec] = msgspec.field(default_factory=_default_guards)
    """The deny list: refused in every mode (a guardrail against accidents; the sandbox
    is the boundary). Setting it replaces the defaults; ``extra_deny`` adds to them."""
    extra_deny: list[GuardSpec] = []
    approvers: list[str] = []
    """Who may decide requests besides the run's creator and owners: user names, or
    ``role:member`` / ``role:viewer``."""
    approval_timeout: Seconds = 600.0
    """Seconds an approval or question stays open before it expires (the call is denied)."""
    question_timeout: Seconds = 600.0


class RunnerConfig(_Section, frozen=True):
    """The runner daemon's own, authoritative local policy (see docs/runner.md)."""

    gateway_url: str | None = None
    workspaces: dict[str, str] = {}
    denied_paths: list[str] = msgspec.field(
        default_factory=lambda: [
            "~/.ssh",
            "~/.gnupg",
            "~/.aws",
            "~/.azure",
            "~/.kube",
            "~/.docker",
            "~/.netrc",
            "~/.git-credentials",
            "~/.config/gcloud",
            "~/.config/gh",
        ]
    )
    """Credentials of the user's other tools: refused by file tools, absent in the sandbox."""
    hidden_paths: list[str] = []
    """More paths to protect like ``denied_paths`` (tether's own directories always are)."""
    gateway_dirs: list[str] = []
    """The directories of a gateway on the same machine (set by ``tether up``): protected."""
    readonly_paths: list[str] = []
    """Extra read-only mounts inside the sandbox, e.g. toolchains under HOME
    (``~/.pyenv``, ``~/.nvm``, ``~/.cargo``, ``~/.rustup``); mounted at their real path."""
    allow_hardlinks: bool = False
    """Let file tools read regular files that have more than one hard link."""
    bwrap: str = "bwrap"
    """The bubblewrap program (a name on PATH or a path)."""
    max_concurrency: Positive = 16
    default_timeout: Seconds = 60.0
    max_timeout: Seconds = 3600.0
    output_cap_bytes: Positive = 256 * 1024
    outcome_cache_bytes: Positive = 64 * 1024 * 1024
    """Outcomes kept for re-sends after a reconnect, at most this many bytes in all."""
    sandbox: Literal["auto", "bwrap", "off"] = "auto"
    network: bool = True
    env_allowlist: list[str] = msgspec.field(
        default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "TZ"]
    )
    heartbeat_interval: Seconds = 15.0
    shutdown_grace: Seconds = 10.0
    reconnect_max_delay: Seconds = 30.0
    agent_buffer_memory_bytes: Positive = 1024 * 1024
    """A hosted agent's events the gateway has not acknowledged, kept in memory up to
    this, then on disk (under the data dir)."""
    agent_buffer_disk_bytes: Positive = 64 * 1024 * 1024
    """Past this on disk, the turn is interrupted and fails with ``buffer_full``."""
    agent_idle_timeout: Seconds = 900.0
    """A session's hosted agent process with no turn for this long is stopped (its next
    turn starts it again and resumes the thread)."""
    agent_interrupt_grace: Seconds = 5.0
    """Seconds a hosted agent has to end an interrupted turn before its process is killed."""
    agent_network: bool = True
    """Hosted agents share the runner's network (they must reach their model); false
    gives them none at all."""


class ConversationDefaults(_Section, frozen=True):
    """The settings of a conversation's new sessions (unset: the ``[runs]`` defaults)."""

    agent: str | None = None
    runner: str | None = None
    """A runner's name."""
    workspace: str | None = None
    mode: SessionMode | None = None


_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


class WebhookConfig(_Section, frozen=True):
    """One generic webhook channel (``[channels.webhook.NAME]``, docs/channels.md)."""

    secret_env: str = ""
    """The environment variable holding the shared secret that signs both directions
    (at least 32 characters). Unset or empty: every inbound message is refused."""
    url: str | None = None
    """Where replies are POSTed (unset: nothing is sent; each attempt is recorded failed)."""
    freshness: Seconds = 300.0
    """Seconds a signed timestamp stays valid either side of now."""
    group_trigger: Literal["mention", "all"] = "mention"
    """In groups, answer only messages that @-mention ``bot_id`` (or say ``addressed``),
    or every message."""
    bot_id: str = "tether"
    """tether's id in this system's mentions."""
    max_message_bytes: Positive = 16_000
    delivery_timeout: Seconds = 10.0
    status: Literal["off", "messages", "edit"] = "off"
    """A status message per run: ``edit`` (one message, edited in place: the receiver
    honours ``edit``), ``messages`` (a new one when the state changes or a tool call
    starts or ends) or ``off``."""
    edit_interval: Seconds = 1.0
    """Seconds between two edits of a status at most."""
    defaults: ConversationDefaults = msgspec.field(default_factory=ConversationDefaults)
    conversations: dict[str, ConversationDefaults] = {}
    """Per chat id: settings that differ from ``defaults``."""


class FeishuConfig(_Section, frozen=True):
    """The Feishu/Lark channel (``[channels.feishu]``, docs/feishu.md). Off until an
    ``app_id`` is set."""

    app_id: str = ""
    """The app's id (``cli_…``) from the developer console; empty: the channel is off."""
    app_secret_env: str = "TETHER_FEISHU_APP_SECRET"  # noqa: S105 - the variable's name
    """The environment variable holding the app secret (never the config file)."""
    domain: str = "feishu"
    """``feishu`` (open.feishu.cn), ``lark`` (open.larksuite.com), or a URL (https, or
    http on the loopback address only: a local stand-in)."""
    mode: Literal["long_connection", "webhook"] = "long_connection"
    """``long_connection``: tether dials Feishu (no public URL needed);
    ``webhook``: Feishu POSTs events to ``/channels/feishu`` on the gateway."""
    verification_token_env: str = "TETHER_FEISHU_VERIFICATION_TOKEN"  # noqa: S105 - a name
    """Webhook mode: the variable holding the app's verification token."""
    encrypt_key_env: str = "TETHER_FEISHU_ENCRYPT_KEY"
    """Webhook mode: the variable holding the app's encrypt key (events are encrypted and
    signed with it). Webhook mode without both refuses every request."""
    freshness: Seconds = 300.0
    """Webhook mode: seconds a signed request's timestamp stays valid either side of now."""
    group_trigger: Literal["mention", "all"] = "mention"
    """In groups, answer only messages that @-mention the bot, or every message."""
    ack_budget: Seconds = 2.5
    """Seconds an event's ack may wait for its durable receipt (Feishu gives up at 3)."""
    max_message_bytes: Positive = 24_000
    """Longer replies are split (a post may be 30 KB, its markup included)."""
    request_timeout: Seconds = 10.0
    streaming: bool = False
    """Stream replies into a card as they are written (CardKit: the app needs
    ``cardkit:card:write``); the complete reply lands in that card."""
    defaults: ConversationDefaults = msgspec.field(default_factory=ConversationDefaults)
    conversations: dict[str, ConversationDefaults] = {}
    """Per chat id: settings that differ from ``defaults``."""

    def __post_init__(self) -> None:
        if self.domain not in ("feishu", "lark"):
            url = urlsplit(self.domain)
            loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                raise ValueError(
                    "domain: feishu, lark, or an https URL (http only on the loopback address)"
                )

    @property
    def enabled(self) -> bool:
        return bool(self.app_id)

    @property
    def base_url(self) -> str:
        return {
            "feishu": "https://open.feishu.cn",
            "lark": "https://open.larksuite.com",
        }.get(self.domain, self.domain.rstrip("/"))


class ChannelsConfig(_Section, frozen=True):
    """Chat channels and how conversations are handled (docs/channels.md)."""

    language: Literal["en", "zh"] = "en"
    """The language of replies when a person's cannot be told."""
    queue_limit: Positive = 5
    """Messages a busy session queues (as runs waiting their turn); more are refused."""
    refusal_interval: Seconds = 3600.0
    """A stranger is told once per this many seconds that tether does not know them."""
    pairing_ttl: Seconds = 600.0
    """Seconds a pairing code (``tether users pair``) stays valid."""
    receipt_stale: Seconds = 60.0
    """A message claimed this long ago and never finished (its gateway died) is
    processed again."""
    delivery_attempts: Positive = 8
    """Attempts of one delivery before it is given up (dead-lettered, and said)."""
    delivery_backoff: Seconds = 1.0
    """Seconds before the first retry when the platform gives no hint; doubling."""
    delivery_backoff_max: Seconds = 300.0
    delivery_lease: Seconds = 60.0
    """A delivery being sent by a gateway that died is sent again after this."""
    delivery_concurrency: Positive = 32
    """Deliveries in flight at once (to different conversations)."""
    catch_up: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    """At start, what runs of the last this-many seconds said is sent if it never was
    (a gateway that died between an event and its delivery)."""
    max_file_bytes: Annotated[int, msgspec.Meta(ge=1, le=64 * 1024 * 1024)] = 20 * 1024 * 1024
    """The largest file taken from a chat (an attachment, into ``.tether/inbox/``) or
    sent to one (``/send``)."""
    max_attachments: Positive = 10
    """Files of one message put into the workspace; more are named but not fetched."""
    webhook: dict[str, WebhookConfig] = {}
    feishu: FeishuConfig = msgspec.field(default_factory=FeishuConfig)

    def __post_init__(self) -> None:
        for name in self.webhook:
            if not _CHANNEL_NAME.match(name):
                raise ValueError(
                    f"webhook: channel name {name!r} must be 1-24 of a-z, 0-9, _ and -"
                )


_ROUTINE_NAME = re.compile(ROUTINE_NAME)


def check_routine_input(text: str) -> str:
    """A routine's input: what its runs are asked (not a ``/`` command; ``//`` sends one)."""
    if not text.strip():
        raise ValueError("input: a routine needs input for its runs")
    stripped = text.lstrip()
    if stripped.startswith("/") and not stripped.startswith("//"):
        raise ValueError(
            "input: a routine's input goes to the agent and may not be a / command "
            "(start it with // to send a leading /)"
        )
    return text


class RoutineSpec(_Section, frozen=True):
    """One routine from the config (``[routines.NAME]``), synced into the ledger at start."""

    cron: str
    """Five fields (minute hour day month weekday), or six with seconds last."""
    session: str
    """The session id its runs start in."""
    input: str
    tz: str | None = None
    """An IANA zone (unset: ``[routines] timezone``)."""
    owner: str | None = None
    """The user (by name) it runs as, who approves its requests (unset: the owner)."""
    catch_up: CatchUp | None = None
    """Unset: ``[routines] catch_up``."""

    def __post_init__(self) -> None:
        try:
            check_cron(self.cron)
        except ValueError as exc:
            raise ValueError(f"cron: {exc}") from None
        if self.tz is not None:
            try:
                check_zone(self.tz)
            except ValueError as exc:
                raise ValueError(f"tz: {exc}") from None
        check_routine_input(self.input)


class RoutinesConfig(_Section, frozen=True):
    """Scheduled runs (docs/routines.md). ``[routines.NAME]`` tables are routines."""

    timezone: str = "UTC"
    """The zone of a routine added without one."""
    catch_up: CatchUp = "once"
    """Due times missed while no gateway ran: ``once`` (one run) or ``skip``."""
    poll_interval: Seconds = 1.0
    """Seconds the scheduler sleeps at most before it looks again (another gateway's
    changes are seen within this)."""
    misfire_grace: Seconds = 60.0
    """A due time noticed later than this (and not followed by another) counts as missed."""
    entries: dict[str, RoutineSpec] = {}
    """The routines of ``[routines.NAME]``, by name."""

    def __post_init__(self) -> None:
        try:
            check_zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone: {exc}") from None
        for name in self.entries:
            if not _ROUTINE_NAME.match(name):
                raise ValueError(
                    f"routine name {name!r} must be 1-64 of letters, digits, _ . - "
                    "(starting with a letter or digit)"
                )


_FRAME_MARGIN = 1024
"""What a frame holds around an event's payload (its ids, kind and times), with room."""


class Config(_Section, frozen=True):
    """The whole effective configuration."""

    data_dir: str | None = None
    config_dir: str | None = None
    runtime_dir: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    limits: Limits = msgspec.field(default_factory=Limits)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    runs: RunsConfig = msgspec.field(default_factory=RunsConfig)
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    runner: RunnerConfig = msgspec.field(default_factory=RunnerConfig)
    channels: ChannelsConfig = msgspec.field(default_factory=ChannelsConfig)
    routines: RoutinesConfig = msgspec.field(default_factory=RoutinesConfig)

    def __post_init__(self) -> None:
        frame, inline = self.limits.max_frame_bytes, self.ledger.inline_payload_bytes
        if frame < inline + _FRAME_MARGIN:
            raise ValueError(
                f"limits.max_frame_bytes ({frame}) must be at least "
                f"ledger.inline_payload_bytes ({inline}) + {_FRAME_MARGIN}: an event is sent "
                "whole, in one frame"
            )

    @property
    def data_path(self) -> Path:
        assert self.data_dir is not None, "use load_config(), which resolves directories"
        return Path(self.data_dir)

    @property
    def config_path(self) -> Path:
        assert self.config_dir is not None, "use load_config(), which resolves directories"
        return Path(self.config_dir)

    @property
    def runtime_path(self) -> Path:
        assert self.runtime_dir is not None, "use load_config(), which resolves directories"
        return Path(self.runtime_dir)


def _env_dir(env: Mapping[str, str], name: str, fallback: Path) -> Path:
    value = env.get(name)
    return Path(value) if value else fallback


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_SECTIONS = (
    "gateway",
    "limits",
    "ledger",
    "runs",
    "policy",
    "runner",
    "channels",
    "routines",
)
_LIST_KEYS = {
    "denied_paths",
    "env_allowlist",
    "hidden_paths",
    "gateway_dirs",
    "readonly_paths",
    "metrics_networks",
    "fixture_roles",
    "fixture_principals",
    "approvers",
}
"""Keys whose environment variable is a comma-separated list."""
_ENV_ALIASES = {"TETHER_DATABASE_URL": ["ledger", "database_url"]}


def _env_keys(name: str) -> list[str] | None:
    """The config key path an environment variable names, or None."""
    if name in _ENV_ALIASES:
        return _ENV_ALIASES[name]
    keys = name[len(ENV_PREFIX) :].lower().split("__")
    if len(keys) == 1 and keys[0] in Config.__struct_fields__ and keys[0] not in _SECTIONS:
        return keys
    if len(keys) == 2 and keys[0] in _SECTIONS:
        section_type = type(getattr(Config(), keys[0]))
        if keys[1] in section_type.__struct_fields__:
            return keys
    return None


def _from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "TETHER_CONFIG":
            continue
        keys = _env_keys(name)
        if keys is None:
            continue
        parsed: Any = value
        if keys[-1] == "workspaces":
            parsed = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
        elif keys[-1] in _LIST_KEYS:
            parsed = [item for item in value.split(",") if item]
        _set_path(tree, keys, parsed)
        sources[".".join(keys)] = f"environment variable {name}"
    return tree, sources


def _flatten_sources(tree: Mapping[str, Any], label: str, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and key in _SECTIONS:
            out.update(_flatten_sources(value, label, path + "."))
        else:
            out[path] = label
    return out


def _routine_tables(data: dict[str, Any]) -> dict[str, Any]:
    """``[routines.NAME]`` tables become ``routines.entries.NAME`` (the section's own keys
    are plain values)."""
    section = data.get("routines")
    if not isinstance(section, dict):
        return data
    own = {k: v for k, v in section.items() if not isinstance(v, dict) or k == "entries"}
    tables = {k: v for k, v in section.items() if isinstance(v, dict) and k != "entries"}
    if tables:
        own["entries"] = {**dict(own.get("entries") or {}), **tables}
    return {**data, "routines": own}


def _bad_routine(data: dict[str, Any]) -> str:
    """The name of the first ``[routines.NAME]`` entry that does not convert."""
    for name, entry in (data.get("routines") or {}).get("entries", {}).items():
        try:
            msgspec.convert(entry, RoutineSpec, strict=False)
        except msgspec.ValidationError:
            return str(name)
    return "NAME"


def _convert(data: dict[str, Any], sources: Mapping[str, str]) -> Config:
    data = _routine_tables(data)
    try:
        return msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = re.search(r" - at `\$\.?([^`]*)`", text)
        key = m.group(1).replace("[", ".").replace("]", "").replace("'", "") if m else ""
        reason = text[: m.start()] if m else text
        reason = reason.replace("`", "")
        field = re.match(r"^([a-z_]+): (.*)$", reason)
        if field:
            key, reason = f"{key}.{field[1]}" if key else field[1], field[2]
        if key.startswith("routines.entries...."):  # msgspec names no dict key: find it
            key = "routines." + _bad_routine(data) + key[len("routines.entries....") :]
        origin = sources.get(key) or sources.get(key.rsplit(".", 1)[0], "")
        where = f" (from {origin})" if origin else ""
        if key:
            raise ConfigError(f"invalid config key {key!r}: {reason}{where}") from exc
        raise ConfigError(f"invalid config: {reason}") from exc


def load_config(
    *,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective config (flags > env > file > defaults) and resolve directories."""
    env = os.environ if env is None else env
    flags = flags or {}
    env_tree, sources = _from_env(env)

    explicit = config_file or env.get("TETHER_CONFIG")
    config_dir = Path(
        flags.get("config_dir")
        or env_tree.get("config_dir")
        or _env_dir(env, "XDG_CONFIG_HOME", _home(env) / ".config") / "tether"
    )
    path = Path(explicit) if explicit else config_dir / "config.toml"
    file_tree: dict[str, Any] = {}
    if explicit or path.exists():
        try:
            file_tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {str(path)!r} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    all_sources = _flatten_sources(file_tree, f"config file {path}")
    all_sources.update(sources)
    all_sources.update(_flatten_sources(flags, "command-line flag"))

    merged = _merge(_merge(file_tree, env_tree), flags)
    merged.setdefault("config_dir", str(config_dir))
    config = _convert(merged, all_sources)

    data_dir = Path(
        config.data_dir or _env_dir(env, "XDG_DATA_HOME", _home(env) / ".local/share") / "tether"
    ).expanduser()
    if config.runtime_dir:
        runtime_dir = Path(config.runtime_dir).expanduser()
    elif env.get("XDG_RUNTIME_DIR"):
        runtime_dir = Path(env["XDG_RUNTIME_DIR"]) / "tether"
    else:
        runtime_dir = data_dir / "run"
    return msgspec.structs.replace(
        config,
        data_dir=str(data_dir.absolute()),
        config_dir=str(Path(config.config_dir or config_dir).expanduser().absolute()),
        runtime_dir=str(runtime_dir.absolute()),
    )


def redact_url(url: str) -> str:
    """Mask the password in a URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain data with secrets masked, for ``tether config show``."""
    data: dict[str, Any] = msgspec.to_builtins(config)

    def walk(node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value)
            elif key in _SECRET_KEYS and isinstance(value, str):
                node[key] = redact_url(value)
            elif key in _MASKED_KEYS and value is not None:
                node[key] = "***"

    walk(data)
    return data

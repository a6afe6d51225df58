"""The runner's composition: the one place its parts are built and wired.

:func:`prepare` checks the machine (identity, workspaces outside every protected path,
the sandbox, the subreaper) and builds a :class:`RunnerNode`, whose
:meth:`~RunnerNode.daemon` is the wired daemon. ``tether runner`` is a thin CLI over
these: it adds only signal handling and what it prints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tether.config import Config
from tether.errors import ConfigError
from tether.runner import reaper
from tether.runner.agents.host import AgentHost
from tether.runner.daemon import RunnerDaemon
from tether.runner.executor import CallExecutor
from tether.runner.gateway_link import GatewayLink
from tether.runner.identity import RunnerIdentity, load_identity
from tether.runner.protected import ProtectedPaths, runner_protected
from tether.runner.sandbox import SandboxInfo, detect
from tether.security.capability import CapabilityVerifier

__all__ = ["RunnerNode", "prepare", "workspace_roots"]

log = logging.getLogger("tether.runner")


def workspace_roots(
    configured: Mapping[str, str], enrolled: Mapping[str, str], flags: Mapping[str, str]
) -> dict[str, Path]:
    """Workspaces from config, enrolment and flags (later ones win), each a real directory."""
    merged = {**enrolled, **configured, **flags}
    roots: dict[str, Path] = {}
    for name, raw in merged.items():
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise ConfigError(f"workspace {name!r}: {path} is not a directory")
        roots[name] = path.resolve()
    return roots


@dataclass
class RunnerNode:
    """A runner ready to serve: its identity, workspaces, protected paths and sandbox."""

    config: Config
    identity: RunnerIdentity
    workspaces: dict[str, Path]
    protected: ProtectedPaths
    sandbox: SandboxInfo
    home: Path
    insecure: bool = False

    def daemon(self) -> RunnerDaemon:
        runner = self.config.runner
        executor = CallExecutor(
            config=runner,
            workspaces=self.workspaces,
            verifier=CapabilityVerifier(self.identity.gateway_public_key, self.identity.runner_id),
            sandbox=self.sandbox,
            protected=self.protected,
            home=self.home,
        )

        def host(link: GatewayLink, boot_id: str) -> AgentHost:
            return AgentHost(
                self.config,
                runner_name=self.identity.name,
                workspaces=self.workspaces,
                verifier=executor.verifier,
                sandbox=self.sandbox,
                protected=self.protected,
                home=self.home,
                link=link,
                boot_id=boot_id,
                cancel_call=executor.cancel,
            )

        return RunnerDaemon(
            self.identity,
            executor,
            heartbeat_interval=runner.heartbeat_interval,
            shutdown_grace=runner.shutdown_grace,
            reconnect_max_delay=runner.reconnect_max_delay,
            insecure=self.insecure,
            host=host,
        )


def prepare(
    config: Config,
    *,
    flags: Mapping[str, str],
    env: Mapping[str, str],
    home: Path,
    insecure: bool = False,
) -> RunnerNode:
    """Load the identity, check workspaces and the sandbox, and become a subreaper."""
    identity = load_identity(config.config_path)
    roots = workspace_roots(config.runner.workspaces, identity.workspaces, flags)
    if not roots:
        raise ConfigError("no workspaces: give --workspace NAME=PATH or set [runner.workspaces]")
    protected = runner_protected(config, env=env, home=home)
    for name, root in roots.items():
        label = protected.inside(str(root))
        if label is not None:
            raise ConfigError(
                f"workspace {name!r}: {root} lies inside a protected path ({label}); "
                "a workspace cannot contain tether's own files"
            )
    sandbox = detect(config.runner.sandbox, config.runner.bwrap)
    if sandbox.status != "bwrap":
        log.warning("! %s", sandbox.reason)
    reaper.become_subreaper()
    return RunnerNode(config, identity, roots, protected, sandbox, home, insecure)

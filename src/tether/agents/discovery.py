"""Which agent backends there are: the built-ins, then plugins from the ``tether.agents``
entry-point group.

A plugin's entry point names a zero-argument callable (a class, or a factory) that
returns a backend: an object with ``name``, ``manifest`` (a :class:`Manifest`, or the same
as a dict), ``capabilities`` (taken from the manifest when missing) and an async ``run``.
Its manifest is checked strictly (unknown capability or permission keys are refused) and
its id must be the entry point's name. A plugin that fails to import, to build or to pass
these checks is logged and skipped, with the reason kept for ``tether agents list``; the
others load as if it were not there. A plugin cannot take a built-in's name.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import msgspec

from tether.agents.contract import AgentBackend, Manifest

__all__ = ["ENTRY_POINT_GROUP", "Discovered", "Skipped", "discover"]

ENTRY_POINT_GROUP = "tether.agents"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    source: str
    """The entry point (``module:attribute``)."""
    reason: str


@dataclass(slots=True)
class Discovered:
    backends: dict[str, AgentBackend] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Agent id -> ``builtin`` or its entry point."""
    skipped: list[Skipped] = field(default_factory=list)


class PluginError(Exception):
    """Why a plugin cannot be used (said in ``tether agents list``)."""


def discover(
    builtins: Iterable[AgentBackend], *, plugins: Iterable[EntryPoint] | None = None
) -> Discovered:
    """The built-ins, then every usable plugin (``plugins`` defaults to the installed
    ``tether.agents`` entry points)."""
    found = Discovered()
    for backend in builtins:
        found.backends[backend.name] = backend
        found.sources[backend.name] = "builtin"
    if plugins is None:
        plugins = entry_points(group=ENTRY_POINT_GROUP)
    for ep in sorted(plugins, key=lambda e: e.name):
        try:
            backend = _load(ep, taken=found.backends)
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is its own
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "! skipped an agent plugin",
                extra={"agent": ep.name, "entry_point": ep.value, "reason": reason},
            )
            found.skipped.append(Skipped(ep.name, ep.value, reason))
            continue
        found.backends[ep.name] = backend
        found.sources[ep.name] = ep.value
        log.info("agent plugin loaded", extra={"agent": ep.name, "entry_point": ep.value})
    return found


def _load(ep: EntryPoint, *, taken: dict[str, AgentBackend]) -> AgentBackend:
    if ep.name in taken:
        raise PluginError(f"the name {ep.name!r} is taken by a built-in agent")
    try:
        factory = ep.load()
    except Exception as exc:
        raise PluginError(f"import failed: {type(exc).__name__}: {exc}") from exc
    if not callable(factory):
        raise PluginError(f"{ep.value} is not a class or factory")
    backend: Any = factory()
    raw = getattr(backend, "manifest", None)
    if raw is None:
        raise PluginError("it has no manifest")
    try:
        manifest = msgspec.convert(
            msgspec.to_builtins(raw) if isinstance(raw, msgspec.Struct) else raw, Manifest
        )
    except msgspec.ValidationError as exc:
        raise PluginError(f"invalid manifest: {exc}") from exc
    if manifest.id != ep.name:
        raise PluginError(f"its manifest says id {manifest.id!r}, its entry point {ep.name!r}")
    if not inspect.iscoroutinefunction(getattr(backend, "run", None)):
        raise PluginError("it has no async run(ctx)")
    backend.manifest = manifest
    backend.name = manifest.id
    if not hasattr(backend, "capabilities"):
        backend.capabilities = manifest.capabilities
    if backend.capabilities != manifest.capabilities:
        raise PluginError("its capabilities differ from its manifest's")
    if manifest.capabilities.fixture:
        raise PluginError("only built-in agents may be test fixtures")
    result: AgentBackend = backend
    return result

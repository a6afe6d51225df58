"""The ``hello`` handshake: protocol version negotiation and the connection's role.

The client offers the versions it speaks; the gateway picks the highest one both speak
or refuses with ``unsupported_version``. The role asked for must be one the credential
allows (checked by the gateway); it then fixes which methods the connection may call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec

from tether.errors import UnsupportedVersion
from tether.types import Role, UserRole

__all__ = ["PROTOCOL_VERSIONS", "HelloParams", "HelloResult", "negotiate"]

PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
"""Versions this build speaks, oldest first."""


class HelloParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """First request on every connection."""

    protocol: Annotated[list[int], msgspec.Meta(min_length=1, max_length=32)]
    role: Role
    agent: Annotated[str, msgspec.Meta(max_length=200)] = ""
    """Free text naming the peer software, e.g. ``tether-cli/0.1.0``."""


class HelloResult(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    protocol: int
    role: Role
    principal: str
    server: str
    """Server software and version, e.g. ``tether/0.1.0``."""
    max_frame_bytes: int
    idle_timeout: float
    user_role: UserRole | None = None
    """A person's role (``owner``, ``member``, ``viewer``); none for a runner."""


def negotiate(offered: Iterable[int], supported: Iterable[int] = PROTOCOL_VERSIONS) -> int:
    """Return the highest version in both sets, or raise :class:`UnsupportedVersion`."""
    common = set(offered) & set(supported)
    if not common:
        ours = sorted(supported)
        raise UnsupportedVersion(
            f"no common protocol version: peer offers {sorted(set(offered))}, "
            f"gateway speaks {ours}",
            data={"supported": ours},
        )
    return max(common)

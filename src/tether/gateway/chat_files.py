"""Files between a chat and a session's workspace: attachments in, ``/send`` out.

In: each attachment of a message that starts (or queues) a run is fetched from its
platform (at most ``channels.max_file_bytes``), kept as an artifact, and written into
the session's workspace as ``.tether/inbox/NAME`` by the runner's ``put_file``, which
pulls exactly those bytes for that one call and checks their SHA-256. The agent's
input then names the file where it lies. The write is the sender's own act (they sent
the file): it goes through :meth:`CallGate.direct`, so policy's deny rules, the runner's
path policy and its protected paths all still apply, and a refusal is said in the input
instead of a path.

Out: ``/send PATH`` has the runner's ``get_file`` push a workspace file (a regular file,
no symlink followed, at most ``max_file_bytes``) to the gateway, which keeps it as an
artifact and sends it through the outbox, durably, as any reply.
"""

from __future__ import annotations

import hashlib
import mimetypes
import unicodedata
from collections.abc import Mapping
from typing import Any

import msgspec

from tether.channels import Attachment, Channel, FileChannel, InboundMessage
from tether.config import ChannelsConfig
from tether.errors import InvalidParams, TetherError, TooLarge
from tether.gateway.auth import Principal
from tether.gateway.call_gate import CallGate
from tether.gateway.outbox import Outbox
from tether.gateway.tools import ToolGateway, Transfer
from tether.ledger import ConversationRecord, Ledger, Session
from tether.ledger.events import derived_artifact_id
from tether.types import new_id

__all__ = ["INBOX_DIR", "ChatFiles", "SendOutcome", "described", "safe_name", "sniffed"]

INBOX_DIR = ".tether/inbox"
_NAME_LIMIT = 120


def safe_name(name: str, fallback: str) -> str:
    """A file name that stays one plain name in the inbox: the last path component, no
    control or format characters, no leading dots, at most 120 characters (the
    extension kept); ``fallback`` when nothing is left."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(
        c if unicodedata.category(c)[0] not in "CZ" or c == " " else "_" for c in base
    ).strip(" .")
    if not kept or set(kept) <= {"."}:
        return fallback
    if len(kept) > _NAME_LIMIT:
        stem, dot, ext = kept.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        kept = kept[: _NAME_LIMIT - len(ext) - 1].rstrip(" .") + ("." + ext if ext else "")
    return kept


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
    (b"BM", "image/bmp", ".bmp"),
    (b"%PDF-", "application/pdf", ".pdf"),
)


def sniffed(content: bytes) -> tuple[str, str] | None:
    """The media type and extension the bytes begin like (images, PDF), if any."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp", ".webp"
    for magic, media, ext in _SIGNATURES:
        if content.startswith(magic):
            return media, ext
    return None


def described(a: Attachment) -> str:
    """An attachment as the platform describes it (name, type, size, link)."""
    size = f", {a.size} bytes" if a.size is not None else ""
    where = f" {a.url}" if a.url else ""
    return f"{a.name} ({a.media_type}{size}){where}"


class SendOutcome(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int


class ChatFiles:
    """See the module docstring."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        gate: CallGate,
        tools: ToolGateway,
        outbox: Outbox,
        channels: Mapping[str, Channel],
        config: ChannelsConfig,
        call_timeout: float,
        retention_days: float,
    ) -> None:
        self.ledger = ledger
        self.gate = gate
        self.tools = tools
        self.outbox = outbox
        self.channels = channels
        self.config = config
        self.call_timeout = call_timeout
        self.ttl = retention_days * 86_400 if retention_days > 0 else None

    def _file_channel(self, name: str) -> FileChannel | None:
        channel = self.channels.get(name)
        if channel is None or not channel.capabilities.files:
            return None
        return channel if isinstance(channel, FileChannel) else None

    # ---- in ------------------------------------------------------------------------

    async def receive(
        self, message: InboundMessage, session: Session, principal: Principal
    ) -> list[str]:
        """Put ``message``'s attachments into the session's workspace; one line per
        attachment for the agent's input (where it lies, or why it is not there)."""
        channel = self._file_channel(message.channel)
        lines: list[str] = []
        names: set[str] = set()
        for index, attachment in enumerate(message.attachments):
            if channel is None or attachment.key is None:
                lines.append(described(attachment))
                continue
            if index >= self.config.max_attachments:
                lines.append(
                    f"{described(attachment)}: not fetched, more than "
                    f"{self.config.max_attachments} files in one message"
                )
                continue
            name = safe_name(attachment.name, f"file-{index + 1}")
            stem, dot, ext = name.rpartition(".")
            n = 2
            while name.lower() in names:  # two files of one message never share a name
                name = f"{stem}-{n}.{ext}" if dot and stem else f"{name}-{n}"
                n += 1
            names.add(name.lower())
            lines.append(await self._receive_one(channel, message, index, attachment, name,
                                                 session, principal))  # fmt: skip
        return lines

    async def _receive_one(
        self,
        channel: FileChannel,
        message: InboundMessage,
        index: int,
        attachment: Attachment,
        name: str,
        session: Session,
        principal: Principal,
    ) -> str:
        shown = described(attachment)
        limit = self.config.max_file_bytes
        too_large = f"{shown}: not fetched, over the {limit}-byte limit"
        if attachment.size is not None and attachment.size > limit:  # said by the platform
            return too_large
        try:
            content = await channel.fetch(message, attachment, limit)
        except TooLarge:
            return too_large
        except TetherError as exc:
            return f"{shown}: could not be fetched ({exc.message})"
        if len(content) > limit:
            return too_large
        media = attachment.media_type
        found = sniffed(content)
        if found is not None and (media.endswith("/*") or "." not in name):
            media = found[0]  # (Feishu says only "an image")
            name = name if "." in name else name + found[1]
        elif media.endswith("/*"):
            media = "application/octet-stream"
        # the id follows from the message: a message handled again keeps one artifact
        seed = f"{message.channel}\0{message.event_id}\0{index}".encode()
        await self.ledger.events.put_artifact(
            run_id=None, name=name, media_type=media, content=content, ttl=self.ttl,
            artifact_id=derived_artifact_id(seed),
        )  # fmt: skip
        if session.runner_id is None:
            return f"{shown}: kept by tether, not in a workspace (the session has no runner)"
        path = f"{INBOX_DIR}/{name}"
        args: dict[str, Any] = {
            "path": path,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        try:
            live, workspace = await self.tools.target(session.runner_id, session.workspace or "")
            await self.gate.direct(
                principal,
                live=live,
                tool="put_file",
                args=args,
                workspace=workspace,
                timeout=self.call_timeout,
                ask=False,
                call_id=new_id("call"),
                transfer=Transfer(source=content),
            )
        except TetherError as exc:
            return f"{shown}: not put in the workspace ({exc.message})"
        return f"{path} ({media}, {len(content)} bytes)"

    # ---- out -----------------------------------------------------------------------

    async def send(
        self,
        session: Session,
        principal: Principal,
        conversation: ConversationRecord,
        path: str,
        *,
        reply_to: str | None = None,
    ) -> SendOutcome:
        """Send the workspace file at ``path`` to the conversation (raises why not)."""
        if self._file_channel(conversation.channel) is None:
            raise InvalidParams(
                f"{conversation.channel} cannot carry files", data={"reason": "no_files"}
            )
        if session.runner_id is None:
            raise InvalidParams("the session has no runner")
        limit = self.config.max_file_bytes
        live, workspace = await self.tools.target(session.runner_id, session.workspace or "")
        transfer = Transfer(limit=limit)
        call_id = new_id("call")
        outcome = await self.gate.direct(
            principal,
            live=live,
            tool="get_file",
            args={"path": path, "max_size": limit},
            workspace=workspace,
            timeout=self.call_timeout,
            ask=False,
            call_id=call_id,
            transfer=transfer,
        )
        said = msgspec.json.decode(outcome.result)
        content = bytes(transfer.received)
        digest = hashlib.sha256(content).hexdigest()
        if (
            not isinstance(said, dict)
            or said.get("size") != len(content)
            or said.get("sha256") != digest
        ):
            raise TetherError(f"{path}: the runner's file did not arrive whole")
        name = safe_name(path, "file")
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        artifact_id = await self.ledger.events.put_artifact(
            run_id=None, name=name, media_type=media, content=content, ttl=self.ttl
        )
        await self.outbox.send(
            conversation,
            name,
            key=f"file:{call_id}",
            reply_to=reply_to,
            file=Attachment(name=name, media_type=media, size=len(content), artifact=artifact_id),
        )
        return SendOutcome(name=name, size=len(content))

"""Handlers of ``chat.send`` (clients as chat surfaces) and ``user.link|unlink|pair``."""

from __future__ import annotations

import logging

import msgspec

from tether.channels import InboundMessage, Sender
from tether.errors import Conflict, NotFound
from tether.gateway.handlers import MethodHandlers
from tether.gateway.peer import Peer
from tether.gateway.router import ConversationRouter, Pending
from tether.gateway.runs_api import RunsApi
from tether.ledger import Ledger
from tether.ledger.sessions import conversation_key
from tether.protocol import methods as m
from tether.protocol.chat import (
    ChatSendParams,
    ChatSent,
    ConversationGetParams,
    ConversationInfo,
    DeliveryInfo,
    DeliveryList,
    DeliveryListParams,
    UserLinked,
    UserLinkParams,
    UserPairing,
    UserPairParams,
    UserUnlinkParams,
)

__all__ = ["ChatApi"]

log = logging.getLogger(__name__)

OWNER_USER = "owner"
"""The user ``tether users pair`` pairs when it names none (an owner, made if missing)."""


class ChatApi:
    def __init__(
        self, ledger: Ledger, router: ConversationRouter, runs: RunsApi, pairing_ttl: float
    ) -> None:
        self.ledger = ledger
        self.router = router
        self.runs = runs
        self.pairing_ttl = pairing_ttl

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(m.CHAT_SEND, self.send)
        handlers.add(m.CONVERSATION_GET, self.conversation)
        handlers.add(m.USER_LINK, self.link)
        handlers.add(m.USER_UNLINK, self.unlink)
        handlers.add(m.USER_PAIR, self.pair)
        handlers.add(m.DELIVERY_LIST, self.deliveries)

    async def send(self, peer: Peer, p: ChatSendParams) -> ChatSent:
        principal = peer.principal
        conversation = p.conversation
        if p.session_id is not None:
            await self.runs.session_for(peer, p.session_id)
            conversation = None
        elif conversation is not None:
            found = await self.ledger.conversations.get(conversation)
            if found.session_id is not None:
                await self.runs.session_for(peer, found.session_id)
            elif not peer.is_owner:
                raise NotFound(
                    f"no conversation {conversation!r}", data={"conversation": conversation}
                )
        message = InboundMessage(
            channel=p.channel,
            event_id=f"{principal.id}:{p.event_id}",
            chat_id=principal.id,
            sender=Sender(id=principal.id, name=principal.name),
            text=p.text,
            addressed=True,
            lang=p.lang,
        )
        turn, duplicate = await self.router.submit(
            Pending(message=message, session_id=p.session_id, conversation=conversation)
        )
        if turn is None:
            receipt = await self.ledger.conversations.get_receipt(p.channel, message.event_id)
            return ChatSent(duplicate=duplicate, run_id=receipt.run_id, disposition=receipt.detail)
        return ChatSent(
            duplicate=False,
            disposition=turn.disposition,
            session_id=turn.session_id,
            run_id=turn.run_id,
            replies=turn.replies,
        )

    async def conversation(self, peer: Peer, p: ConversationGetParams) -> ConversationInfo:
        """A conversation the caller may see: an owner any; anyone else their own surface's
        conversation, or one whose current session they may use (else ``not_found``)."""
        own = conversation_key(p.channel, peer.principal.id)
        key = p.conversation or own
        found = await self.ledger.conversations.get(key)
        if key != own and not peer.is_owner:
            if found.session_id is None:
                raise NotFound(f"no conversation {key!r}", data={"conversation": key})
            await self.runs.session_for(peer, found.session_id)
        return msgspec.convert(msgspec.structs.asdict(found), ConversationInfo, strict=False)

    async def link(self, peer: Peer, p: UserLinkParams) -> UserLinked:
        user = await self.ledger.users.find(p.user)
        if user.status != "active":
            raise Conflict(f"user {user.name} is revoked", data={"user": user.id})
        await self.ledger.identities.link(p.channel, p.id, user.id, by=peer.principal.id)
        log.info("channel identity linked", extra={"channel": p.channel, "user": user.id})
        return UserLinked(user=user.id, user_name=user.name, channel=p.channel, id=p.id)

    async def unlink(self, peer: Peer, p: UserUnlinkParams) -> UserLinked:
        record = await self.ledger.identities.unlink(p.channel, p.id)
        user = await self.ledger.users.get(record.user_id)
        log.info("channel identity unlinked", extra={"channel": p.channel, "user": user.id})
        return UserLinked(user=user.id, user_name=user.name, channel=p.channel, id=p.id)

    async def pair(self, peer: Peer, p: UserPairParams) -> UserPairing:
        if p.user is not None:
            user = await self.ledger.users.find(p.user)
        else:
            try:
                user = await self.ledger.users.find(OWNER_USER)
            except NotFound:
                try:
                    user, _ = await self.ledger.users.add(OWNER_USER, "owner")
                except Conflict:
                    user = await self.ledger.users.find(OWNER_USER)
        code, expires = await self.ledger.identities.new_pairing_code(user.id, ttl=self.pairing_ttl)
        log.info("pairing code made", extra={"user": user.id})
        return UserPairing(user=user.id, user_name=user.name, code=code, expires_at=expires)

    async def deliveries(self, peer: Peer, p: DeliveryListParams) -> DeliveryList:
        records = await self.ledger.deliveries.list(
            conversation_id=p.conversation, run_id=p.run_id, states=p.states, limit=p.limit
        )
        out = []
        for r in records:
            try:
                text = str(msgspec.json.decode(r.content).get("text", ""))
            except (msgspec.DecodeError, AttributeError):
                text = r.content
            out.append(
                DeliveryInfo(
                    id=r.id,
                    channel=r.channel,
                    conversation=r.conversation_id,
                    run_id=r.run_id,
                    kind=r.kind,
                    state=r.state,
                    attempts=r.attempts,
                    next_attempt_at=r.next_attempt_at,
                    platform_message_id=r.platform_message_id,
                    last_error=r.last_error,
                    text=text,
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                )
            )
        return DeliveryList(deliveries=out)

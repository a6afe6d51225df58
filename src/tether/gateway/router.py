"""The conversation router: every channel's inbox, and the chat API's.

A message's receipt (with the message) is committed before the channel acknowledges
it; a duplicate (channel, event id) is acknowledged and dropped. The message is then
processed in the background, in arrival order per conversation: claimed (so one
gateway handles it), then

- ignored when it is a group message not addressed to tether;
- answered with one polite refusal (rate limited) when its sender is linked to no user
  (or paired, when it is ``/pair CODE`` with a valid code);
- a command (``/new``, ``/stop`` … see :mod:`tether.gateway.chat_commands`);
- else input: a new run of the conversation's session (the run and the receipt's
  ``done`` commit together), steering for the active run when its agent takes it, or a
  queued run (bounded); the sender is told which.

A gateway that died with receipts unfinished processes them when it starts again
(:meth:`ConversationRouter.start`): a message is never discarded as "old".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import Callable, Mapping

import msgspec

from tether.agents import AgentBackend
from tether.channels import Accepted, Answered, InboundMessage
from tether.config import ChannelsConfig, ConversationDefaults
from tether.errors import NotFound
from tether.gateway.auth import Principal, owner_principal, user_principal
from tether.gateway.chat_commands import Actor, ChatCommands, Context, Turn
from tether.gateway.chat_files import ChatFiles, described
from tether.gateway.orchestrator import Orchestrator
from tether.gateway.outbox import Outbox
from tether.gateway.phrases import Lang, guess_language, lang_of, say
from tether.ledger import ConversationRecord, ConversationView, Ledger, Session
from tether.protocol.chat_input import compose, own_words

__all__ = ["CLIENT_CHANNELS", "ConversationRouter", "Pending"]

log = logging.getLogger(__name__)

CLIENT_CHANNELS = frozenset({"console", "web", "routine"})
"""Surfaces that read the run stream themselves (``chat.send`` clients), and routines
(their runs' results reach a chat through the relay, like any run of a chat's session)."""
QUEUEING_CHANNELS = frozenset({"routine"})
"""Channels whose input never steers an active run: it waits its turn as a run."""
_REFUSALS_KEPT = 10_000


def _task_name(item: Pending) -> str:
    return f"inbound:{item.message.channel}:{item.message.event_id}"


class Pending(msgspec.Struct, frozen=True, kw_only=True):
    """What a receipt keeps until it is processed."""

    message: InboundMessage
    session_id: str | None = None
    """``chat.send`` to a session."""
    conversation: str | None = None
    """``chat.send`` to a conversation (its current session)."""


class ConversationRouter:
    """See the module docstring. It is the :class:`~tether.channels.Inbox` of every channel."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        orchestrator: Orchestrator,
        config: ChannelsConfig,
        defaults: Mapping[str, ConversationDefaults],
        overrides: Mapping[str, Mapping[str, ConversationDefaults]],
        outbox: Outbox,
        seen: dict[str, Principal],
        on_run_started: Callable[[str, str | None], None] = lambda run_id, message_id: None,
    ) -> None:
        self.ledger = ledger
        self.orchestrator = orchestrator
        self.config = config
        self.defaults = dict(defaults)
        """Channel -> the settings of its conversations' new sessions."""
        self.overrides = {k: dict(v) for k, v in overrides.items()}
        """Channel -> chat id -> settings that differ."""
        self.outbox = outbox
        self.seen = seen
        """People who wrote from a chat (the request broker counts them as reachable)."""
        self.commands: ChatCommands | None = None
        self.files: ChatFiles | None = None
        """Where attachments are put into workspaces (``None``: they are only named)."""
        self.on_run_started = on_run_started
        """Told of each run a channel message started, and that message's platform id."""
        self.owner = orchestrator.owner
        self._dead_owners = f"{orchestrator.node}:"
        """Claims of this gateway's earlier incarnations (this one's is excluded)."""
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: set[asyncio.Task[Turn | None]] = set()
        self._refused: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Pending)

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Process what an earlier incarnation received but did not finish."""
        count = await self.sweep()
        if count:
            log.info("processing messages received before a restart", extra={"count": count})

    async def sweep(self) -> int:
        """Take up unfinished receipts: an earlier incarnation's of this gateway at once,
        another gateway's once its claim is ``receipt_stale`` old (it died meanwhile)."""
        pending = await self.ledger.conversations.pending(
            stale_before=time.time() - self.config.receipt_stale,
            dead_owners=self._dead_owners,
            exclude_owner=self.owner,
        )
        busy = {task.get_name() for task in self._tasks}
        count = 0
        for receipt in pending:
            if receipt.message is None:
                continue
            item = self._decoder.decode(receipt.message)
            if _task_name(item) in busy:
                continue  # this incarnation is on it already
            self._spawn(item, claimed=False)
            count += 1
        return count

    async def loop(self) -> None:
        """Sweep every half ``receipt_stale`` (supervised): a message another gateway took
        and died on is processed here, whenever that happened."""
        interval = max(1.0, self.config.receipt_stale / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                count = await self.sweep()
            except Exception:
                log.exception("taking up unfinished messages failed; retrying")
                continue
            if count:
                log.info("processing messages another gateway left", extra={"count": count})

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()

    # ---- the inbox -----------------------------------------------------------------

    async def accept(self, message: InboundMessage) -> Accepted:
        """Commit the receipt, then process the message in the background."""
        item = Pending(message=message)
        if not await self._record(item):
            return Accepted(duplicate=True)
        self._spawn(item, claimed=True)
        return Accepted(duplicate=False)

    async def answer(self, message: InboundMessage) -> Answered:
        """Record, then handle now (a card button): what tether answered."""
        turn, duplicate = await self.submit(Pending(message=message))
        return Answered(duplicate=duplicate, replies=list(turn.replies) if turn else [])

    async def submit(self, item: Pending) -> tuple[Turn | None, bool]:
        """The chat API's path: record, then process now; (turn, duplicate)."""
        if not await self._record(item):
            return None, True
        return await self._process(item, claimed=True), False

    async def _record(self, item: Pending) -> bool:
        message = item.message
        return await self.ledger.conversations.record(
            message.channel,
            message.event_id,
            message=self._encoder.encode(item).decode(),
            message_id=message.message_id,
            conversation_id=item.conversation or message.conversation,
            claimed_by=self.owner,
        )

    def _spawn(self, item: Pending, *, claimed: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self._process(item, claimed=claimed), name=_task_name(item)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _process(self, item: Pending, *, claimed: bool) -> Turn | None:
        """Handle a recorded message (``claimed``: its receipt was written claimed by this
        gateway; else it is claimed first, and skipped if another has it or it is done)."""
        message = item.message
        key = (message.channel, message.event_id)
        async with self._lock(item.session_id or item.conversation or message.conversation):
            if not claimed:
                taken = await self.ledger.conversations.claim(
                    *key,
                    self.owner,
                    stale_before=time.time() - self.config.receipt_stale,
                    dead_owners=self._dead_owners,
                    exclude_owner=self.owner,
                )
                if taken is None:
                    return None  # another gateway has it, or it is done
            try:
                if message.channel in CLIENT_CHANNELS:
                    turn = await self._client_turn(item, key)
                else:
                    turn = await self._channel_turn(message, key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "handling a message failed",
                    extra={"channel": message.channel, "event_id": message.event_id},
                )
                turn = Turn(
                    disposition="failed", replies=[say(self._lang(message, None), "internal")]
                )
                try:
                    await self.ledger.conversations.finish(*key, "failed", detail=repr(exc)[:500])
                    if message.channel not in CLIENT_CHANNELS and message.addressed:
                        await self._reply(_transient(message), turn, message)
                except Exception:  # the ledger itself failing: the claim goes stale, and
                    log.exception("recording a failed message failed")  # it is tried again
                return turn
            if turn.disposition not in ("started", "queued"):  # else done with its run
                status = {"ignored": "ignored", "refused": "refused"}.get(turn.disposition, "done")
                await self.ledger.conversations.finish(
                    *key, status, detail=turn.disposition, run_id=turn.run_id
                )
            return turn

    # ---- a channel's message -------------------------------------------------------

    def _lang(self, message: InboundMessage, conversation: ConversationRecord | None) -> Lang:
        if message.lang is not None:
            return message.lang
        guessed = guess_language(message.text)
        if guessed is not None:
            return guessed
        return lang_of(conversation.lang if conversation else None, self.config.language)

    async def _channel_turn(self, message: InboundMessage, key: tuple[str, str]) -> Turn:
        if not message.addressed:
            return Turn(disposition="ignored")
        user, view = await asyncio.gather(
            self.ledger.identities.user_of(message.channel, message.sender.id),
            self.ledger.conversations.view(message.conversation),
        )
        if user is None:
            return await self._stranger(message)
        lang = message.lang or guess_language(message.text)
        if view is None or (lang is not None and view.conversation.lang != lang):
            conversation = await self.ledger.conversations.ensure(
                message.channel, message.chat_id, message.thread, kind=message.chat_kind, lang=lang
            )
            if view is not None:
                view = msgspec.structs.replace(view, conversation=conversation)
        else:
            conversation = view.conversation
        actor = Actor(principal=user_principal(user), lang=self._lang(message, conversation))
        self.seen[user.id] = actor.principal
        turn = await self.turn(
            actor,
            _input_of(message),
            conversation=conversation,
            receipt=key,
            view=view,
            message=message,
        )
        if turn.run_id is not None and turn.disposition in ("started", "queued"):
            self.on_run_started(turn.run_id, message.message_id)
        await self._reply(conversation, turn, message)
        return turn

    async def _reply(
        self, conversation: ConversationRecord, turn: Turn, message: InboundMessage
    ) -> None:
        for i, text in enumerate(turn.replies):
            await self.outbox.send(
                conversation,
                text,
                key=f"in:{message.channel}:{message.event_id}:{i}",
                reply_to=message.message_id,
            )

    async def _stranger(self, message: InboundMessage) -> Turn:
        lang = self._lang(message, None)
        conversation = _transient(message)
        word, _, code = message.text.strip().partition(" ")
        if word == "/pair" and code.strip():
            user = await self.ledger.identities.pair(
                code.strip(), message.channel, message.sender.id
            )
            if user is not None:
                log.info(
                    "channel identity paired",
                    extra={"channel": message.channel, "user": user.id},
                )
                turn = Turn(disposition="paired", replies=[say(lang, "paired", name=user.name)])
                await self._reply(conversation, turn, message)
                return turn
            if self._may_refuse(message):
                await self._reply(
                    conversation,
                    Turn(disposition="refused", replies=[say(lang, "pair_failed")]),
                    message,
                )
            return Turn(disposition="refused")
        if self._may_refuse(message):
            log.info(
                "! a stranger wrote; refused",
                extra={"channel": message.channel, "sender": message.sender.id},
            )
            text = say(lang, "stranger", channel=message.channel, id=message.sender.id)
            await self._reply(conversation, Turn(disposition="refused", replies=[text]), message)
        return Turn(disposition="refused")

    def _may_refuse(self, message: InboundMessage) -> bool:
        """One refusal per sender per ``refusal_interval`` (bounded memory)."""
        who = (message.channel, message.sender.id)
        now = time.monotonic()
        last = self._refused.get(who)
        if last is not None and now - last < self.config.refusal_interval:
            return False
        self._refused[who] = now
        self._refused.move_to_end(who)
        while len(self._refused) > _REFUSALS_KEPT:
            self._refused.popitem(last=False)
        return True

    # ---- a client's message (chat.send) ----------------------------------------------

    async def _client_turn(self, item: Pending, key: tuple[str, str]) -> Turn:
        message = item.message
        principal = owner_principal(message.sender.id)
        if principal is None:
            try:
                user = await self.ledger.users.get(message.sender.id)
            except NotFound:
                return Turn(disposition="refused")
            if user.status != "active":
                return Turn(disposition="refused")
            principal = user_principal(user)
        role = "admin" if principal.is_owner and principal.user_role == "owner" else "client"
        lang = self._lang(message, None)
        actor = Actor(principal=principal, lang=lang, role=role)
        text = _input_of(message)
        if item.session_id is not None:
            session = await self.ledger.sessions.get(item.session_id)
            conversation = None
            if session.conversation_id is not None:
                conversation = await self.ledger.conversations.get(session.conversation_id)
            return await self.turn(
                actor,
                text,
                conversation=conversation,
                session=session,
                receipt=key,
                steer=message.channel not in QUEUEING_CHANNELS,
            )
        if item.conversation is not None:
            conversation = await self.ledger.conversations.get(item.conversation)
        else:
            conversation = await self.ledger.conversations.ensure(
                message.channel, message.chat_id, kind="p2p"
            )
        return await self.turn(actor, text, conversation=conversation, receipt=key)

    # ---- shared --------------------------------------------------------------------

    async def turn(
        self,
        actor: Actor,
        text: str,
        *,
        conversation: ConversationRecord | None,
        session: Session | None = None,
        receipt: tuple[str, str] | None = None,
        view: ConversationView | None = None,
        steer: bool = True,
        message: InboundMessage | None = None,
    ) -> Turn:
        """Handle one message of ``actor``: a command, or input for the session.
        ``view``: the conversation's current session and its load, just read; ``steer``:
        input may steer the active run (else it is queued behind it); ``message``: the
        chat message it came from, whose attachments go into the workspace."""
        assert self.commands is not None
        counts: tuple[int, int] | None = None
        if session is None and view is not None and view.session is not None:
            session, counts = view.session, (view.queued, view.active)
        if session is None:
            assert conversation is not None
            session = await self.session_of(conversation, actor)
        stripped = text.strip()
        if stripped.startswith("/") and not stripped.startswith("//"):
            head, _, args = stripped[1:].partition("\n")[0].partition(" ")
            name = head.lower()
            if self.commands.known(name):
                ctx = Context(
                    actor=actor,
                    session=session,
                    conversation=conversation,
                    args=args.strip(),
                    reply_to=message.message_id if message is not None else None,
                )
                turn = await self.commands.run(name, ctx)
                turn.session_id = ctx.session.id
                return turn
            if name not in self._agent_commands(session.agent):
                help_text = (
                    say(actor.lang, "unknown_command", name=head) + "\n\n" + say(actor.lang, "help")
                )
                return Turn(disposition="command", session_id=session.id, replies=[help_text])
        elif stripped.startswith("//"):
            text = text.lstrip()[1:]
        if not actor.may_act:
            return Turn(
                disposition="refused", session_id=session.id, replies=[say(actor.lang, "viewer")]
            )
        if not text.strip():
            return Turn(disposition="ignored", session_id=session.id)
        orch = self.orchestrator
        active = orch.active_task(session.id)
        steerable = steer and active is not None and active.takes_steering
        if counts is None:
            runs, _ = await self.ledger.runs.list(
                session_id=session.id,
                states=["queued", "running", "waiting"],
                limit=self.config.queue_limit + 2,
            )
            queued = sum(1 for r in runs if r.state.value == "queued")
            counts = (queued, len(runs) - queued)
        queued = counts[0]
        if not steerable and queued >= self.config.queue_limit:
            return Turn(
                disposition="refused",
                session_id=session.id,
                replies=[say(actor.lang, "queue_full", limit=queued)],
            )
        if message is not None and message.attachments and self.files is not None:
            files = await self.files.receive(message, session, actor.principal)
            text = _input_of(message, files, words=own_words(text))
        run, disposition = await orch.submit(
            session_id=session.id,
            agent=None,
            text=text,
            created_by=actor.id,
            steer=steer,
            role=actor.role,
            user_role=actor.principal.user_role,
            receipt=receipt,
            session=session,
            ahead=None if steerable else bool(sum(counts)),
        )
        replies: list[str] = []
        if disposition == "queued":
            replies = [say(actor.lang, "queued", position=queued + 1)]
        elif disposition in ("steered", "dropped"):
            replies = [say(actor.lang, disposition)]
        return Turn(disposition=disposition, session_id=session.id, run_id=run.id, replies=replies)

    def _agent_commands(self, agent: str) -> list[str]:
        backend: AgentBackend | None = self.orchestrator.backends.get(agent)
        return list(backend.manifest.commands) if backend is not None else []

    def _settings(self, conversation: ConversationRecord | None) -> ConversationDefaults:
        if conversation is None:
            return ConversationDefaults()
        base = self.defaults.get(conversation.channel, ConversationDefaults())
        over = self.overrides.get(conversation.channel, {}).get(conversation.chat_id)
        if over is None:
            return base
        return ConversationDefaults(
            agent=over.agent or base.agent,
            runner=over.runner or base.runner,
            workspace=over.workspace or base.workspace,
            mode=over.mode or base.mode,
        )

    async def _new_session(self, conversation: ConversationRecord | None, actor: Actor) -> Session:
        settings = self._settings(conversation)
        return await self.orchestrator.new_session(
            actor.id,
            agent=settings.agent,
            runner=settings.runner,
            workspace=settings.workspace,
            mode=settings.mode,
            conversation_id=conversation.id if conversation is not None else None,
        )

    async def session_of(self, conversation: ConversationRecord, actor: Actor) -> Session:
        """The conversation's current session, created (with its defaults) if it has none."""
        if conversation.session_id is not None:
            try:
                return await self.ledger.sessions.get(conversation.session_id)
            except NotFound:
                pass
        session = await self._new_session(conversation, actor)
        if await self.ledger.conversations.set_session(
            conversation.id, session.id, expect=conversation.session_id
        ):
            return session
        current = await self.ledger.conversations.get(conversation.id)  # set concurrently
        assert current.session_id is not None
        return await self.ledger.sessions.get(current.session_id)

    async def fresh_session(
        self, conversation: ConversationRecord | None, actor: Actor, old: Session
    ) -> Session:
        """``/new``: a fresh session with the conversation's defaults, now its current one."""
        if conversation is None and old.conversation_id is not None:
            conversation = await self.ledger.conversations.get(old.conversation_id)
        session = await self._new_session(conversation, actor)
        if conversation is not None:
            await self.ledger.conversations.set_session(conversation.id, session.id)
        return session


def _transient(message: InboundMessage) -> ConversationRecord:
    """The message's conversation as a record to answer in, without storing it (a
    stranger's, or one whose handling failed)."""
    return ConversationRecord(
        id=message.conversation,
        channel=message.channel,
        chat_id=message.chat_id,
        thread=message.thread,
        title=None,
        created_at=time.time(),
    )


def _input_of(
    message: InboundMessage, files: list[str] | None = None, *, words: str | None = None
) -> str:
    """The text an agent gets: the message (or ``words``), then who sent it in a group,
    what it replies to and what it carries (``protocol.chat_input``): ``files``, where its
    attachments were put, else how the platform described them."""
    if files is None:
        files = [described(a) for a in message.attachments]
    return compose(
        message.text if words is None else words,
        sender=message.sender.name,
        in_group=message.chat_kind != "p2p",
        quoted=message.quoted,
        attachments=files,
    )

"""The terminal UI of ``tether chat`` (prompt_toolkit): the scrollback, the text still
streaming just above the prompt, the prompt with history and ``/`` completion, and a
status line. Requests are answered with a key (``a``, ``s``, ``d``) or by typing.

It speaks to the gateway only through :class:`~tether.cli.chat.link.ChatLink`, so a
dropped connection costs nothing: the stream resumes where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import signal
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import ANSI, FormattedText, StyleAndTextTuples
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from tether.cli.chat.link import ChatLink, LinkState
from tether.cli.chat.view import Shown, View, Waiting, clean
from tether.errors import TetherError
from tether.protocol import methods as m
from tether.protocol.access import RequestResolveParams
from tether.protocol.chat import ChatSendParams, ChatSent, ConversationGetParams
from tether.protocol.runs import RunCancelParams, RunListParams, SessionGetParams, SessionInfo
from tether.protocol.system import Empty

__all__ = ["ChatApp", "Target"]

STYLE = Style.from_dict(
    {
        "agent": "",
        "you": "bold",
        "other": "ansicyan",
        "tool": "ansiblue",
        "ok": "ansigreen",
        "err": "ansired",
        "dim": "#888888",
        "ask": "ansiyellow bold",
        "live": "#aaaaaa",
        "bottom-toolbar": "noreverse bg:#303030 #d0d0d0",
        "bottom-toolbar.warn": "bg:#303030 ansiyellow bold",
    }
)
LOCAL_COMMANDS = {"quit": "leave (Ctrl-D too; runs go on)", "keys": "the keys this terminal takes"}
KEYS_HELP = (
    "keys: Enter sends · a / s / d answer an approval (allow once, for the session, deny) · "
    "Ctrl-C stops the run (asks first) or clears the line · Ctrl-D leaves · ↑ history · "
    "Tab completes / commands"
)
GATEWAY_COMMANDS = (
    "help",
    "new",
    "stop",
    "status",
    "runs",
    "runner",
    "agent",
    "workspace",
    "mode",
    "approve",
    "deny",
    "answer",
    "pair",
    "routines",
    "send",
)
"""The `/` commands the gateway answers, for completion (a unit test keeps this list in step
with ``tether.gateway.chat_commands``, which the client does not import: it is heavy)."""


_LINE_DECISIONS = {"a": "allow_once", "s": "allow_session", "d": "deny"}


class Target:
    """Where the terminal talks: a session, a chat's conversation, or (neither) the
    person's own terminal conversation."""

    def __init__(self, session_id: str | None = None, conversation: str | None = None) -> None:
        self.session_id = session_id
        self.conversation = conversation


class _Slash(Completer):
    def get_completions(self, document: Document, complete_event: Any) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or " " in text:
            return
        for name in (*GATEWAY_COMMANDS, *LOCAL_COMMANDS):
            if name.startswith(text[1:]):
                yield Completion(f"/{name}", start_position=-len(text))


class ChatApp:
    """One ``tether chat``: see the module docstring; :meth:`main` returns an exit status."""

    def __init__(
        self,
        link: ChatLink,
        target: Target,
        *,
        lang: str = "en",
        history: Path | None = None,
        transcript: IO[str] | None = None,
    ) -> None:
        self.link = link
        self.target = target
        self.view = View(lang="zh" if lang == "zh" else "en")
        self.transcript = transcript
        self.history: History = FileHistory(str(history)) if history else InMemoryHistory()
        self.session: SessionInfo | None = None
        self.runners: dict[str, str] = {}
        """Runner id -> name (when this login may list runners)."""
        self.link_state: LinkState = "connecting"
        self.link_why = ""
        self.confirming = False
        self.note = ""
        link.on_state = self._on_link
        self._prompt: PromptSession[str] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._typed: asyncio.Queue[str] = asyncio.Queue()

    # ---- showing -----------------------------------------------------------------------

    def show(self, block: Shown) -> None:
        if self.transcript is not None:
            self.transcript.write(block.text + "\n")
            self.transcript.flush()
        if block.markdown:
            text: Any = ANSI(_markdown(block.text))
        else:
            text = FormattedText([(f"class:{block.style}" if block.style else "", block.text)])
        print_formatted_text(text, style=STYLE)

    def say(self, text: str, style: str = "dim") -> None:
        self.show(Shown(text, style))  # type: ignore[arg-type]

    def _message(self) -> StyleAndTextTuples:
        live = self.view.live()
        parts: StyleAndTextTuples = []
        if live:
            parts.append(("class:live", live + "\n"))
        parts.append(("class:you", "› "))
        return parts

    def _toolbar(self) -> StyleAndTextTuples:
        s = self.session
        if self.confirming:
            return [
                ("class:bottom-toolbar.warn", " Stop the run? y = stop it, any other key = go on ")
            ]
        if self.link_state != "connected":
            why = f" ({self.link_why})" if self.link_why else ""
            return [("class:bottom-toolbar.warn", f" {self.link_state} to the gateway …{why} ")]
        state = self.view.state
        if self.view.activity and state == "running":
            state = f"running: {self.view.activity}"
        waiting = self.view.first_waiting()
        if waiting is not None:
            state = f"waiting for you: {waiting.handle}"
        parts = [state]
        if s is None:
            parts.append("a new session starts with the first message")
        else:
            runner = self.runners.get(s.runner_id or "", s.runner_id or "no runner")
            space = f"/{s.workspace}" if s.workspace else ""
            parts += [s.agent, f"{runner}{space}", f"mode {s.mode}", s.id]
            if s.conversation_id:
                parts.append(s.conversation_id)
        if self.note:
            parts.append(self.note)
        return [("class:bottom-toolbar", " " + " · ".join(parts) + " ")]

    def _refresh(self) -> None:
        with contextlib.suppress(Exception):
            get_app().invalidate()

    def _on_link(self, state: LinkState, why: str) -> None:
        if state == "connected" and self.link_state == "reconnecting":
            self.say("connected again; the stream goes on where it was")
        elif state == "reconnecting" and self.link_state == "connected":
            self.say(f"connection lost ({why or 'closed'}); reconnecting …", "err")
        self.link_state, self.link_why = state, why
        self._refresh()

    # ---- the session ---------------------------------------------------------------

    async def attach(self) -> None:
        """Find the session to follow and follow it, from its latest run."""
        with contextlib.suppress(TetherError):  # names, where this login may list them
            listed = await self.link.call(m.RUNNER_LIST, Empty())
            self.runners = {r.id: r.name for r in listed.runners}
        with contextlib.suppress(TetherError):
            users = await self.link.call(m.USER_LIST, Empty())
            self.view.names.update({u.id: u.name for u in users.users})
        if self.link.principal is not None:
            self.view.names[self.link.principal] = "you"
        t = self.target
        session_id = t.session_id
        if session_id is None:
            try:
                found = await self.link.call(
                    m.CONVERSATION_GET, ConversationGetParams(conversation=t.conversation)
                )
                session_id = found.session_id
            except TetherError as exc:
                if t.conversation is not None or exc.code != "not_found":
                    raise
        if session_id is not None:
            await self._follow(session_id, latest=True)

    async def _follow(self, session_id: str, *, latest: bool, since_run: str | None = None) -> None:
        self.session = await self.link.call(m.SESSION_GET, SessionGetParams(session_id=session_id))
        if latest:
            page = await self.link.call(m.RUN_LIST, RunListParams(session_id=session_id, limit=1))
            since_run = page.runs[0].id if page.runs else None
        await self.link.follow(session_id, since_run=since_run, after={})
        self._refresh()

    async def _refresh_session(self) -> None:
        if self.session is not None:
            with contextlib.suppress(TetherError):
                self.session = await self.link.call(
                    m.SESSION_GET, SessionGetParams(session_id=self.session.id)
                )
                self._refresh()

    async def _pump(self) -> None:
        """Show each event of the followed session as it comes."""
        while True:
            event = await self.link.events.get()
            was = self.view.state
            for block in self.view.feed(event):
                self.show(block)
            if event.kind in ("run.started", "run.succeeded") and was != self.view.state:
                self._spawn(self._refresh_session())  # a command may have changed it
            self._refresh()

    # ---- what the person does ------------------------------------------------------

    async def send(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        word = text[1:].split(maxsplit=1)[0] if text.startswith("/") and len(text) > 1 else ""
        if word == "keys":
            self.say(KEYS_HELP)
            return
        decision = _LINE_DECISIONS.get(text.lower())
        if decision is not None and any(w.kind == "approval" for w in self.view.waiting.values()):
            await self.decide(decision)  # the key, typed as a line
            return
        waiting = self.view.first_waiting()
        if waiting is not None and waiting.kind == "question" and not text.startswith("/"):
            await self.answer(waiting, text)
            return
        if not text.startswith("/"):
            self.view.mine.add(text)
        t = self.target
        params = ChatSendParams(
            text=text,
            event_id=uuid.uuid4().hex,
            session_id=t.session_id,
            conversation=t.conversation if t.session_id is None else None,
        )
        try:
            sent: ChatSent = await self.link.call(m.CHAT_SEND, params)
        except TetherError as exc:
            self.say(f"not sent: {exc}", "err")
            return
        for reply in sent.replies:
            self.say(clean(reply), "other")
        if sent.disposition == "refused" and not sent.replies:
            self.say("refused: you may not do that here", "err")
        if sent.session_id and (self.session is None or sent.session_id != self.session.id):
            if t.session_id is not None:
                t.session_id = sent.session_id
            await self._follow(sent.session_id, latest=False, since_run=sent.run_id)
        elif sent.disposition == "command":
            await self._refresh_session()

    async def answer(self, waiting: Waiting, text: str) -> None:
        answer = text
        if text.isdigit() and 1 <= int(text) <= len(waiting.choices):
            answer = waiting.choices[int(text) - 1]
        await self._resolve(RequestResolveParams(request=waiting.request, answer=answer))

    async def decide(self, decision: str) -> None:
        waiting = next((w for w in self.view.waiting.values() if w.kind == "approval"), None)
        if waiting is None:
            return
        await self._resolve(RequestResolveParams(request=waiting.request, decision=decision))  # type: ignore[arg-type]

    async def _resolve(self, params: RequestResolveParams) -> None:
        try:
            await self.link.call(m.REQUEST_RESOLVE, params, retry=False)
        except TetherError as exc:
            self.say(f"not decided: {exc}", "err")

    async def stop_run(self) -> None:
        run_id = self.view.active
        if run_id is None:
            return
        try:
            await self.link.call(
                m.RUN_CANCEL, RunCancelParams(run_id=run_id, reason="stopped from tether chat")
            )
        except TetherError as exc:
            self.say(f"not stopped: {exc}", "err")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ctrl_c(self, buffer: Buffer | None) -> None:
        """Ctrl-C as a key or as a signal: clear a typed line when nothing runs, else ask."""
        if not self.confirming and self.view.active is None and buffer is not None and buffer.text:
            buffer.reset()
            self._refresh()
        else:
            self.interrupt()

    def _on_sigint(self) -> None:
        """SIGINT (the terminal not raw for a moment, or ``kill -INT``): the same as the key."""
        app = self._prompt.app if self._prompt is not None else None
        self._ctrl_c(app.current_buffer if app is not None and app.is_running else None)

    def interrupt(self) -> None:
        """Ctrl-C: ask before stopping the active run (a second Ctrl-C takes it back)."""
        if self.confirming:
            self.confirming = False
        elif self.view.active is not None:
            self.confirming = True
        else:
            self.note = "Ctrl-D leaves"
        self._refresh()

    async def _sender(self) -> None:
        """Send what was typed, in order, while the prompt takes the next line."""
        while True:
            text = await self._typed.get()
            try:
                await self.send(text)
            finally:
                self._typed.task_done()

    # ---- keys ----------------------------------------------------------------------

    def _keys(self) -> KeyBindings:
        kb = KeyBindings()
        confirming = Condition(lambda: self.confirming)

        def empty() -> bool:
            return not get_app().current_buffer.text

        approval = Condition(
            lambda: (
                not self.confirming
                and empty()
                and any(w.kind == "approval" for w in self.view.waiting.values())
            )
        )

        @kb.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            self._ctrl_c(event.current_buffer)

        @kb.add("y", filter=confirming)
        def _yes(event: KeyPressEvent) -> None:
            self.confirming = False
            self._spawn(self.stop_run())

        @kb.add("<any>", filter=confirming)
        def _no(event: KeyPressEvent) -> None:
            self.confirming = False

        for key, decision in (("a", "allow_once"), ("s", "allow_session"), ("d", "deny")):

            def _decide(event: KeyPressEvent, decision: str = decision) -> None:
                self._spawn(self.decide(decision))

            kb.add(key, filter=approval)(_decide)
        return kb

    # ---- the loop ------------------------------------------------------------------

    async def main(self) -> int:
        link_task = asyncio.create_task(self.link.run(), name="chat:link")
        pump = asyncio.create_task(self._pump(), name="chat:pump")
        sender = asyncio.create_task(self._sender(), name="chat:sender")
        loop = asyncio.get_running_loop()
        # one SIGINT handler for the whole session: a prompt that took SIGINT over would drop
        # it when it ends, and a signal between two prompts would be lost
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
        self._prompt = PromptSession(
            message=self._message,
            bottom_toolbar=self._toolbar,
            history=self.history,
            completer=_Slash(),
            complete_while_typing=True,
            key_bindings=self._keys(),
            style=STYLE,
            refresh_interval=0.5,
        )
        try:
            self.say(f"tether chat · {KEYS_HELP}")
            try:
                await self._until(link_task, self.attach())
            except TetherError as exc:
                self.say(f"cannot attach: {exc}", "err")
                return 1
            while True:
                try:
                    text = await self._until(
                        link_task, self._prompt.prompt_async(handle_sigint=False)
                    )
                except EOFError:
                    break
                self.note = ""
                if text.strip() in ("/quit", "/exit"):
                    break
                self._typed.put_nowait(text)
            with contextlib.suppress(TimeoutError):  # what was typed is sent before leaving
                await self._until(link_task, asyncio.wait_for(self._typed.join(), 30))
            if self.view.active is not None and self.session is not None:
                self.say(
                    f"the run goes on; come back with: tether chat --session {self.session.id}"
                )
            return 0
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            for task in (link_task, pump, sender, *self._tasks):
                task.cancel()
            await asyncio.gather(link_task, pump, sender, *self._tasks, return_exceptions=True)

    @staticmethod
    async def _until(link_task: asyncio.Task[None], coro: Any) -> Any:
        """``coro``'s result, unless the link ends first (a refused login): raise its error."""
        work = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({work, link_task}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        link_task.result()  # raises what ended it
        raise TetherError("the connection to the gateway ended")


def _markdown(text: str) -> str:
    """Markdown as ANSI text for this terminal's width (rich)."""
    from rich.console import Console
    from rich.markdown import Markdown

    width = shutil.get_terminal_size((100, 40)).columns
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=max(20, width), color_system="standard").print(
        Markdown(text)
    )
    return buffer.getvalue().rstrip("\n")

"""Bots on top of :mod:`chat_core.client`: handlers for commands, messages and joins.

    from chat_core.bot import Bot

    bot = Bot("dice")

    @bot.command("roll")
    async def roll(ctx, args):
        return f"{ctx.user} rolled {random.randint(1, 6)}"

    bot.run("http://127.0.0.1:7860", room="lobby")

A handler gets a :class:`Context` (who, where, the message) and returns the text to
answer with, or None for no answer; it may also ``await ctx.reply(...)`` itself. A
command is a message starting with ``/name`` (its arguments: the rest of the text).
Handlers run one at a time per bot, in the order the messages were stored; one that
raises is logged and the bot goes on. The bot never answers its own messages, nor
anything from before it joined (the room's history is in ``bot.history``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .client import ChatClient, Message, Notice

log = logging.getLogger("chat_core.bot")

Answer = Optional[str]
Handler = Callable[..., Union[Answer, Awaitable[Answer]]]
Starter = Callable[["Bot"], Coroutine[Any, Any, None]]


@dataclass
class Context:
    """What a handler is called with: the message (None for a join), and a way to answer."""

    bot: Bot
    room: str
    user: str
    message: Optional[Message]

    @property
    def text(self) -> str:
        return self.message.text if self.message is not None else ""

    async def reply(self, text: str) -> Message:
        assert self.bot.chat is not None
        return await self.bot.chat.send(text)


class Bot:
    """``key``: the name's bot key, when the chat keeps the name for a bot (``--bot-keys
    name=key``); else the ``CHAT_BOT_KEY`` variable when :meth:`run` starts. A bot run
    inside the app (``--bot``) is given one by the app."""

    def __init__(self, name: str, key: Optional[str] = None) -> None:
        self.name = name
        self.key = key
        self.commands: dict[str, Handler] = {}
        self.message_handlers: list[Handler] = []
        self.join_handlers: list[Handler] = []
        self.start_handlers: list[Starter] = []
        self.chat: Optional[ChatClient] = None

    # --- registering handlers ------------------------------------------------------

    def command(self, name: str) -> Callable[[Handler], Handler]:
        """``/name args``: the handler gets (ctx, args)."""
        def register(handler: Handler) -> Handler:
            self.commands[name.lstrip("/").lower()] = handler
            return handler
        return register

    def on_message(self, handler: Handler) -> Handler:
        """Every message that is not a command of this bot: the handler gets (ctx)."""
        self.message_handlers.append(handler)
        return handler

    def on_start(self, handler: Starter) -> Starter:
        """Once connected: the handler gets (bot); a long-running one is run as a task of the bot's."""
        self.start_handlers.append(handler)
        return handler

    async def say(self, text: str) -> Message:
        """Post in the bot's room (from a start handler's task, say)."""
        assert self.chat is not None, "the bot is not connected"
        return await self.chat.send(text)

    def on_join(self, handler: Handler) -> Handler:
        """Someone joined the room: the handler gets (ctx)."""
        self.join_handlers.append(handler)
        return handler

    # --- running ---------------------------------------------------------------------

    @property
    def history(self) -> list[Message]:
        return self.chat.history if self.chat is not None else []

    def run(self, url: str, room: str = "lobby", token_file: Optional[Path] = None, **client: Any) -> None:
        """Connect and answer until interrupted (Ctrl+C). The bot's resume token is kept in
        ``token_file`` (default ~/.chat_core/bots/<name>.token), so that after a restart the
        bot gets its name back: the chat keeps a name reserved for its token (--name-reserve)."""
        path = token_file or Path.home() / ".chat_core" / "bots" / f"{self.name}.token"
        if self.key is None:
            self.key = os.environ.get("CHAT_BOT_KEY") or None
        try:
            asyncio.run(self.serve(url, room, token_file=path, **client))
        except KeyboardInterrupt:
            pass

    async def serve(self, url: str, room: str = "lobby", ready: Optional[asyncio.Event] = None,
                    token_file: Optional[Path] = None, **client: Any) -> None:
        """Connect, then handle each event in order until the client stops (or this is cancelled)."""
        if token_file is not None and token_file.exists() and "token" not in client:
            client["token"] = token_file.read_text().strip() or None
        client.setdefault("bot_key", self.key)
        async with ChatClient(url, self.name, room, **client) as chat:
            self.chat = chat
            if token_file is not None and chat.token:
                token_file.parent.mkdir(parents=True, exist_ok=True)
                token_file.write_text(chat.token)
                token_file.chmod(0o600)  # it proves the name
            tasks: list[asyncio.Task[None]] = [asyncio.get_running_loop().create_task(h(self))
                                               for h in self.start_handlers]
            if ready is not None:
                ready.set()
            try:
                await self._serve(chat, room)
            finally:
                for task in tasks:
                    task.cancel()

    async def _serve(self, chat: ChatClient, room: str) -> None:
        async for event in chat:
            if isinstance(event, Message) and event.user != chat.name and not event.deleted:
                await self._handle_message(room, event)
            elif isinstance(event, Notice) and event.kind == "join" and event.user != chat.name:
                for handler in self.join_handlers:
                    await self._call(handler, Context(self, room, event.user, None))

    async def _handle_message(self, room: str, message: Message) -> None:
        ctx = Context(self, room, message.user, message)
        text = message.text.strip()
        if text.startswith("/"):
            word, _, args = text[1:].partition(" ")
            handler = self.commands.get(word.lower())
            if handler is not None:
                await self._call(handler, ctx, args.strip())
                return
        for handler in self.message_handlers:
            await self._call(handler, ctx)

    async def _call(self, handler: Handler, ctx: Context, *args: Any) -> None:
        try:
            answer = handler(ctx, *args)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                await ctx.reply(str(answer))
        except Exception:
            log.exception("bot %s: handler %s failed", self.name, getattr(handler, "__name__", handler))

"""``python -m chat_core.client``: the chat in a terminal, or one message from a script.

    python -m chat_core.client http://127.0.0.1:7860 --name ann               # chat in #lobby
    python -m chat_core.client http://127.0.0.1:7860 --name ci --room builds --send "build 12 passed"

With ``--send`` it exits 0 once the message is stored, 1 if the server refused it
(the error's code and message on stderr: rate_limited, text_too_long, banned, ...),
2 if the chat could not be reached. Without it: the room's history, then live
messages above an input line that they never garble (prompt_toolkit), the
connection's state in the bottom bar; Enter sends, Ctrl-D (or Ctrl-C) leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Optional

from .client import Change, ChatClient, ChatError, ErrorEvent, Event, Message, Notice, RoomRules, StateChanged

REFUSED, UNREACHABLE = 1, 2


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chat_core.client", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="The chat's address: http://host:port (the page) or ws://host:port/ws")
    parser.add_argument("--name", required=True, help="Your name in the chat")
    parser.add_argument("--room", default="lobby", help="Room to join (default lobby)")
    parser.add_argument("--send", metavar="TEXT", help="Post TEXT, wait until it is stored, and exit")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for --send (default 30)")
    return parser.parse_args(argv)


async def send_once(args: argparse.Namespace) -> int:
    try:
        async with ChatClient(args.url, args.name, args.room) as chat:
            stored = await chat.send(args.send, args.timeout)
    except ChatError as exc:
        print(f"refused: {exc.code}: {exc.message}", file=sys.stderr)
        return REFUSED
    except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
        print(f"could not reach the chat at {args.url}: {exc or type(exc).__name__}", file=sys.stderr)
        return UNREACHABLE
    except Exception as exc:  # the handshake refused (HTTP 403, 429), or the socket dropped
        print(f"could not reach the chat at {args.url}: {exc}", file=sys.stderr)
        return UNREACHABLE
    print(f"stored as #{stored.id} in {stored.room}")
    return 0


def line(event: Event) -> Optional[str]:
    """How the terminal shows an event (None: not at all)."""
    if isinstance(event, Message):
        text = "(deleted)" if event.deleted else event.text
        return f"{time.strftime('%H:%M', time.localtime(event.ts))} {event.user}: {text}"
    if isinstance(event, Change):
        if event.kind == "edit":
            return f"  {event.user} edited #{event.target}: {event.text}"
        if event.kind == "delete":
            return f"  #{event.target} was deleted"
        return f"  {event.user} {'reacted' if event.on else 'took back'} {event.emoji} on #{event.target}"
    if isinstance(event, Notice) and event.kind != "typing":
        return f"  {event.user} {'joined' if event.kind == 'join' else 'left'}"
    if isinstance(event, RoomRules):
        return f"  topic: {event.topic}" + ("  (read-only)" if event.locked else "")
    if isinstance(event, ErrorEvent):
        return f"  ! {event.message}"
    return None


async def chat_in_terminal(args: argparse.Namespace) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    try:
        chat = ChatClient(args.url, args.name, args.room)
        await chat.connect()
    except ChatError as exc:
        print(f"refused: {exc.code}: {exc.message}", file=sys.stderr)
        return REFUSED
    except Exception as exc:
        print(f"could not reach the chat at {args.url}: {exc}", file=sys.stderr)
        return UNREACHABLE
    status = {"text": f"#{args.room} as {chat.name}: connected"}
    session: PromptSession[str] = PromptSession(bottom_toolbar=lambda: status["text"])

    async def show() -> None:
        async for event in chat:
            if isinstance(event, StateChanged):
                status["text"] = f"#{args.room} as {chat.name}: {event.state.value} {event.detail}".rstrip()
                session.app.invalidate()
                continue
            shown = line(event)
            if shown is not None:
                print(shown)

    with patch_stdout(raw=True):
        if chat.welcome and chat.welcome.topic:
            print(f"  topic: {chat.welcome.topic}")
        for m in chat.history:
            print(line(m))
        shower = asyncio.get_running_loop().create_task(show())
        try:
            while True:
                text = await session.prompt_async(f"{chat.name}> ")
                if text.strip():
                    try:
                        await chat.send(text)
                    except ChatError as exc:
                        print(f"  ! not sent: {exc.message}")
        except (EOFError, KeyboardInterrupt):
            pass
        finally:
            shower.cancel()
            await chat.close()
    print("left the chat")
    return 0


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    sys.exit(asyncio.run(send_once(args) if args.send is not None else chat_in_terminal(args)))

"""Run an example bot against a chat: ``python -m bots.<name> URL [--room ROOM]``."""

from __future__ import annotations

import argparse
import logging

from chat_core.bot import Bot


def main(bot: Bot) -> None:
    parser = argparse.ArgumentParser(description=f"The {bot.name} bot.")
    parser.add_argument("url", help="The chat's address, e.g. http://127.0.0.1:7860")
    parser.add_argument("--room", default="lobby")
    parser.add_argument(
        "--key",
        default=None,
        help="The name's bot key, when the chat keeps the name for a bot "
        "(--bot-keys on the server); default: $CHAT_BOT_KEY",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    bot.key = args.key or bot.key
    bot.run(args.url, room=args.room)

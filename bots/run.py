"""Run an example bot against a chat: ``python -m bots.<name> URL [--room ROOM]``."""

from __future__ import annotations

import argparse
import logging

from chat_core.bot import Bot


def main(bot: Bot) -> None:
    parser = argparse.ArgumentParser(description=f"The {bot.name} bot.")
    parser.add_argument("url", help="The chat's address, e.g. http://127.0.0.1:7860")
    parser.add_argument("--room", default="lobby")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    bot.run(args.url, room=args.room)

"""/remind 10m text: says ``text`` back in 10 minutes (s, m, h or d; at most 7 days).

Reminders are kept in a JSON file (``REMINDERS_FILE``, default ./reminders.json),
written before the bot confirms, so they survive a restart of the bot or of the
chat; one that fell due while the bot was away is said as soon as it is back. A
reminder leaves the file once it is said (a bot stopped between the two says it
again when it is back: at least once, never lost).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

from chat_core.bot import Bot, Context

bot = Bot("reminder")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WHEN = re.compile(r"(\d{1,6})([smhd])")
MAX_DELAY = 7 * 86400
MAX_PENDING = 1000


def store() -> Path:
    return Path(os.environ.get("REMINDERS_FILE", "reminders.json"))


def load() -> list[dict]:
    try:
        return list(json.loads(store().read_text()))
    except (OSError, ValueError):
        return []


def save(reminders: list[dict]) -> None:
    path = store()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(reminders))
    tmp.replace(path)  # atomic: a crash leaves the old list or the new one


@bot.command("remind")
def remind(ctx: Context, args: str) -> str:
    when, _, text = args.partition(" ")
    match = WHEN.fullmatch(when.lower())
    if match is None or not text.strip():
        return "Say /remind 10m text (s, m, h or d)."
    delay = int(match.group(1)) * UNITS[match.group(2)]
    if delay > MAX_DELAY:
        return "At most 7 days ahead."
    reminders = load()
    if len(reminders) >= MAX_PENDING:
        return "Too many reminders pending; try later."
    reminders.append({"due": time.time() + delay, "user": ctx.user, "text": text.strip()})
    save(reminders)
    return f"OK {ctx.user}, in {when}: {text.strip()}"


@bot.on_start
async def tick(b: Bot) -> None:
    """Say what is due, once a second (what fell due while away too)."""
    while True:
        now, reminders = time.time(), load()
        for r in [r for r in reminders if r["due"] <= now]:
            await b.say(f"@{r['user']} reminder: {r['text']}")  # once stored ...
            save([other for other in load() if other != r])  # ... it goes (at least once: never lost)
        await asyncio.sleep(1.0)


if __name__ == "__main__":
    from bots.run import main

    main(bot)

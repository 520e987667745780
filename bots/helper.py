"""/help and /who."""

from __future__ import annotations

from chat_core.bot import Bot, Context

bot = Bot("helper")


@bot.command("help")
def help_(ctx: Context, args: str) -> str:
    return "Commands: /help, /who (people here), /roll 2d6 (dice bot), /remind 10m text (reminder bot)."


@bot.command("who")
def who(ctx: Context, args: str) -> str:
    people = sorted(ctx.bot.chat.users if ctx.bot.chat else [])
    return f"{len(people)} here: {', '.join(people)}"


if __name__ == "__main__":
    from bots.run import main

    main(bot)

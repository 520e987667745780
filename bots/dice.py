"""/roll NdM: N dice (1-20) of M sides (2-1000), e.g. /roll 2d6."""

from __future__ import annotations

import random
import re

from chat_core.bot import Bot, Context

bot = Bot("dice")
DICE = re.compile(r"(\d{1,2})?d(\d{1,4})")


def roll_text(user: str, args: str, rng: random.Random) -> str:
    match = DICE.fullmatch(args.strip().lower() or "1d6")
    if match is None:
        return "Say /roll 2d6 (N dice of M sides)."
    count, sides = int(match.group(1) or 1), int(match.group(2))
    if not (1 <= count <= 20 and 2 <= sides <= 1000):
        return "1 to 20 dice of 2 to 1000 sides."
    rolls = [rng.randint(1, sides) for _ in range(count)]
    return f"{user} rolled {count}d{sides}: {' + '.join(map(str, rolls))} = {sum(rolls)}"


@bot.command("roll")
def roll(ctx: Context, args: str) -> str:
    return roll_text(ctx.user, args, random.SystemRandom())


if __name__ == "__main__":
    from bots.run import main

    main(bot)

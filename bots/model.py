"""A bot that hands each message addressed to it (``@model ...``) to a plain function
``reply(history, text) -> str``: the shape a language model plugs into.

``reply`` below is a few rules, so nothing is downloaded. To put a model there,
replace its body, e.g. with transformers::

    from transformers import pipeline
    chat = pipeline("text-generation", model="HuggingFaceTB/SmolLM2-135M-Instruct")

    def reply(history, text):
        turns = [{"role": "user", "content": f"{m.user}: {m.text}"} for m in history[-10:]]
        return chat(turns + [{"role": "user", "content": text}], max_new_tokens=100)[0]["generated_text"][-1]["content"]

(a slow model blocks the bot, not the chat: run it with ``await asyncio.to_thread(...)``).
"""

from __future__ import annotations

import asyncio
from collections import deque

from chat_core.bot import Bot, Context
from chat_core.client import Message

bot = Bot("model")
seen: deque[Message] = deque(maxlen=50)  # the conversation so far, for reply()


def reply(history: list[Message], text: str) -> str:
    """The model: the recent messages and the text addressed to it in, the answer out."""
    words = text.lower()
    if "hello" in words or "hi" in words.split():
        return "Hello! Ask me what time it is or how many messages I have seen."
    if "how many" in words:
        return f"I have seen {len(history)} messages here."
    return f"You said {text!r}; I am a few rules standing in for a language model."


@bot.on_message
async def answer(ctx: Context) -> str | None:
    assert ctx.message is not None
    seen.append(ctx.message)
    text = ctx.text.strip()
    if not text.lower().startswith("@" + bot.name):
        return None
    question = text[len(bot.name) + 1 :].strip(" ,:")
    return f"@{ctx.user} " + await asyncio.to_thread(reply, list(seen), question)


if __name__ == "__main__":
    from bots.run import main

    main(bot)

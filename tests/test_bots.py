"""The example bots in bots/ answer in a real room (both engines), through chat_core.bot."""

import asyncio
import re
from contextlib import asynccontextmanager

import pytest

from chat_core.bot import Bot
from chat_core.client import ChatClient, ChatError, Message
from servers import ServerProcess


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def running(bot: Bot, url: str, token_file=None):
    ready = asyncio.Event()
    task = asyncio.create_task(bot.serve(url, ready=ready, token_file=token_file))
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiting], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # (raises why the bot could not start)
    assert ready.is_set(), "the bot did not start"
    try:
        yield bot
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def answer_from(chat: ChatClient, who: str, timeout=10.0) -> str:
    async def find():
        async for event in chat:
            if isinstance(event, Message) and event.user == who:
                return event.text

    return await asyncio.wait_for(find(), timeout)


def test_help_who_and_dice(server):
    from bots.dice import bot as dice
    from bots.helper import bot as helper

    async def go():
        async with running(helper, server.url), running(dice, server.url), ChatClient(server.url, "ann") as ann:
            await ann.send("/help")
            assert "/roll" in await answer_from(ann, "helper")
            await ann.send("/who")
            who = await answer_from(ann, "helper")
            assert "ann" in who and "dice" in who
            await ann.send("/roll 2d6")
            rolled = await answer_from(ann, "dice")
            match = re.fullmatch(r"ann rolled 2d6: (\d) \+ (\d) = (\d+)", rolled)
            assert match and int(match[1]) + int(match[2]) == int(match[3])
            await ann.send("/roll 99d6")
            assert "1 to 20 dice" in await answer_from(ann, "dice")
            await ann.send("just talking")  # not a command: the dice bot says nothing
            await ann.send("/roll d20")
            assert "ann rolled 1d20" in await answer_from(ann, "dice")

    run(go())


def test_a_reminder_survives_a_restart_of_the_bot(server, tmp_path, monkeypatch):
    monkeypatch.setenv("REMINDERS_FILE", str(tmp_path / "reminders.json"))
    from bots.reminder import bot as reminder

    async def go():
        async with ChatClient(server.url, "ann") as ann:
            async with running(reminder, server.url):
                await ann.send("/remind 2s stretch")
                assert "OK ann, in 2s: stretch" == await answer_from(ann, "reminder")
            # the bot is gone now; it comes back after the reminder fell due
            await asyncio.sleep(2.5)
            async with running(reminder, server.url):
                assert "@ann reminder: stretch" == await answer_from(ann, "reminder")
                for _ in range(100):  # it leaves the file once said
                    if (tmp_path / "reminders.json").read_text() == "[]":
                        break
                    await asyncio.sleep(0.05)
                assert (tmp_path / "reminders.json").read_text() == "[]"

    run(go())


def test_the_model_bot_answers_what_is_addressed_to_it(server):
    from bots.model import bot as model

    async def go():
        async with running(model, server.url), ChatClient(server.url, "ann") as ann:
            await ann.send("nothing for the model")
            await ann.send("@model hello there")
            assert (await answer_from(ann, "model")).startswith("@ann Hello!")

    run(go())


def test_a_restarted_bot_gets_its_name_back_with_its_token_file(tmp_path):
    from bots.dice import bot as dice

    with ServerProcess(["--db", str(tmp_path / "c.db")], env={"CHAT_NAME_RESERVE": "86400"}) as srv:

        async def go():
            token = tmp_path / "dice.token"
            async with running(dice, srv.url, token):
                pass
            async with running(dice, srv.url, token), ChatClient(srv.url, "ann") as ann:
                await ann.send("/roll 1d6")
                assert "ann rolled 1d6" in await answer_from(ann, "dice")
            with pytest.raises(ChatError) as info:  # without the token, the name is kept for the bot
                async with running(dice, srv.url):
                    pass
            assert info.value.code == "name_taken"

        run(go())


def test_a_bot_inside_the_app_answers_and_a_bad_bot_stops_the_start(tmp_path):
    import subprocess
    import sys

    from servers import ROOT
    from test_gradio_app import start_server

    srv = start_server(tmp_path, args=("--bot", "bots.dice:bot"))
    try:

        async def go():
            async with ChatClient(srv.url, "ann") as ann:
                for _ in range(50):  # the bot joins once the app listens
                    if "dice" in ann.users:
                        break
                    await asyncio.sleep(0.2)
                await ann.send("/roll 3d6")
                assert "ann rolled 3d6" in await answer_from(ann, "dice")

        run(go())
    finally:
        srv.stop()
    bad = subprocess.run(
        [sys.executable, "gradio_app.py", "--bot", "bots.nope:bot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "--bot 'bots.nope:bot'" in bad.stderr

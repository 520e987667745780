"""The example bots in bots/ answer in a real room (both engines), through chat_core.bot."""

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
import pytest

from browsers import MESSAGES, expect, join, say
from chat_core.bot import Bot
from chat_core.client import ChatClient, ChatError, Message
from servers import ServerProcess
from wsclient import Client


def run(coro, timeout=60):
    """``coro`` to its end, on a thread of its own (Playwright's sync API may hold this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, timeout)).result()


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
    return (await answer_from_message(chat, who, timeout)).text


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


DICE_KEY = "dice-key-0123456789abcdef"


def test_a_bot_is_marked_its_name_is_its_own_and_its_rate_is_its_own(tmp_path, engine_args):
    """--bot-keys dice=…: the dice bot joins with its key; its messages and its join say
    "bot"; nobody takes its name (nor a look-alike) without the key; it is held to --bot-rate."""
    env = {"CHAT_BOT_KEYS": f"dice={DICE_KEY}", "CHAT_BOT_RATE": "1"}
    with ServerProcess(engine_args, env=env, log_path=tmp_path / "server.log") as srv:

        async def go():
            watcher = await Client.open(srv.ws_url)
            await watcher.join("watcher")
            async with running(Bot("dice", key=DICE_KEY), srv.url) as dice, ChatClient(srv.url, "ann") as ann:
                joined = await watcher.recv_notice("join", "dice")
                assert joined["payload"]["bot"] is True
                mine = await ann.send("hello dice")
                theirs = await dice.say("hello ann")
                assert not mine.bot and theirs.bot
                got = await answer_from_message(ann, "dice")
                assert got.bot and got.text == "hello ann"
                for name in ("dice", "DICE", "d1ce"):  # the name and its look-alikes are the bot's
                    with pytest.raises(ChatError) as info:
                        async with ChatClient(srv.url, name, backoff=(0.1, 0.2)):
                            pass
                    assert info.value.code == "bot_name", name
                with pytest.raises(ChatError) as info:
                    async with ChatClient(srv.url, "dice", bot_key="not-the-key-0123456789"):
                        pass
                assert info.value.code == "bad_bot_key"
                with pytest.raises(ChatError) as info:  # a key for a name that is no bot's
                    async with ChatClient(srv.url, "mallory", bot_key=DICE_KEY):
                        pass
                assert info.value.code == "bad_bot_key"
                refused = []
                for i in range(8):  # bursts of 5 at 1 a second: the rest are refused
                    try:
                        await dice.say(f"spam {i}")
                    except ChatError as exc:
                        refused.append(exc.code)
                assert refused and set(refused) == {"rate_limited"}
                for i in range(8):  # a person's limits are off here: the bot's do not apply to ann
                    await ann.send(f"talk {i}")
            await watcher.close()

        run(go())
        stored = httpx.get(srv.url + "/api/rooms/lobby/messages").json()["messages"]
        assert {m["user"]: m.get("bot", False) for m in stored} == {"ann": False, "dice": True}
        exported = [json.loads(line) for line in httpx.get(srv.url + "/api/rooms/lobby/export").text.splitlines()]
        assert {r["user"]: r.get("bot", False) for r in exported} == {"ann": False, "dice": True}
        assert DICE_KEY not in srv.log_text()


async def answer_from_message(chat: ChatClient, who: str, timeout=10.0) -> Message:
    async def find():
        async for event in chat:
            if isinstance(event, Message) and event.user == who:
                return event

    return await asyncio.wait_for(find(), timeout)


def test_a_bot_inside_the_app_answers_with_a_badge_and_a_bad_bot_stops_the_start(tmp_path, people):
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
                answer = await answer_from_message(ann, "dice")
                assert "ann rolled 3d6" in answer.text and answer.bot  # the app gave its bot a key
                with pytest.raises(ChatError) as info:
                    async with ChatClient(srv.url, "Dice"):
                        pass
                assert info.value.code == "bot_name"

        run(go())
        page = people.open(srv.url)
        join(page, "bea")
        say(page, "/roll 1d6")
        answer = page.locator(f"{MESSAGES} li[data-user='dice']").last
        expect(answer).to_contain_text("bea rolled 1d6")
        expect(answer.get_by_test_id("chat-bot-badge")).to_have_text("BOT")
        expect(page.locator(f"{MESSAGES} li[data-user='bea'] [data-testid='chat-bot-badge']")).to_have_count(0)
        people.shot(page, "bot-badge")
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


def test_guessing_a_bot_key_over_new_connections_is_stopped_per_address(tmp_path):
    """A guesser who opens a new connection for every try gains nothing: after 5 wrong keys
    from one address in a minute the next tries are answered `rate_limited` unread, the right
    key too; another address (through the trusted proxy) still gets the bot in with its key."""
    env = {"CHAT_BOT_KEYS": f"dice={DICE_KEY}"}
    with ServerProcess(["--trust-proxy", "1"], env=env, log_path=tmp_path / "server.log") as srv:

        async def try_key(key: str, address: str) -> str:
            """A fresh connection from ``address`` joining as dice with ``key``: the answer's code."""
            client = await Client.open(srv.ws_url, additional_headers={"X-Forwarded-For": address})
            try:
                await client.send({"type": "join", "payload": {"user": "dice", "bot_key": key}})
                frame = await client.recv_type("error") if key != DICE_KEY else await client.recv()
                return frame.get("code") or frame["type"]
            finally:
                await client.close()

        async def go() -> list[str]:
            guesser = [await try_key(f"guess-{i:02d}-0123456789abcdef", "10.0.0.66") for i in range(7)]
            guesser.append(await try_key(DICE_KEY, "10.0.0.66"))  # lucky at last: refused all the same
            guesser.append(await try_key(DICE_KEY, "10.0.0.7"))  # the bot's own machine
            return guesser

        answers = run(go())
        assert answers[:5] == ["bad_bot_key"] * 5
        assert answers[5:8] == ["rate_limited"] * 3
        assert answers[8] == "welcome"

"""History backends: real SQLite files and the memory store."""

import asyncio
from pathlib import Path

import pytest

from chat_core.store import MemoryStore, Message, SQLiteStore, open_store

ROOT = Path(__file__).resolve().parent.parent


def msgs(room, start, n):
    return [Message(room, i, "u", f"t{i}", 1.0 + i) for i in range(start, start + n)]


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request, tmp_path):
    def make(keep=0):
        return SQLiteStore(str(tmp_path / "h.db"), keep) if request.param == "sqlite" else MemoryStore(keep)

    return make


def test_append_after_last_ids(make_store):
    async def go():
        s = make_store()
        await s.open()
        await s.append(msgs("a", 1, 5) + msgs("b", 1, 2))
        assert await s.last_ids() == {"a": 5, "b": 2}
        assert [m.id for m in await s.after("a", 0, 100)] == [1, 2, 3, 4, 5]
        assert [m.id for m in await s.after("a", 2, 100)] == [3, 4, 5]
        assert [m.id for m in await s.after("a", 0, 2)] == [4, 5]  # the newest, oldest first
        assert [m.id for m in await s.after("a", 1, 2, first=True)] == [2, 3]  # paging forward
        assert await s.after("nowhere", 0, 10) == []
        assert await s.count() == 7
        await s.close()

    asyncio.run(go())


def test_sqlite_survives_reopen_and_batches_are_atomic(tmp_path):
    async def go():
        path = str(tmp_path / "h.db")
        s = SQLiteStore(path)
        await s.open()
        await s.append(msgs("a", 1, 3))
        with pytest.raises(Exception):  # noqa: B017 - any refusal: this test is about the batch being atomic
            await s.append(msgs("a", 4, 2) + msgs("a", 3, 1))  # id 3 again: whole batch refused
        await s.close()
        s2 = SQLiteStore(path)
        await s2.open()
        assert [m.id for m in await s2.after("a", 0, 100)] == [1, 2, 3]
        assert (await s2.after("a", 2, 1))[0] == Message("a", 3, "u", "t3", 4.0)
        await s2.close()

    asyncio.run(go())


def test_keep_prunes_old_messages_but_not_the_newest_id(make_store):
    async def go():
        s = make_store(keep=150)
        await s.open()
        for start in range(1, 401, 50):
            await s.append(msgs("a", start, 50))
        kept = await s.after("a", 0, 10_000)
        assert kept[-1].id == 400 and 150 <= len(kept) <= 250
        assert (await s.last_ids())["a"] == 400
        await s.close()

    asyncio.run(go())


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(":memory:"), MemoryStore)
    assert isinstance(open_store("memory://"), MemoryStore)
    assert open_store(f"sqlite:///{tmp_path}/x.db").path == f"{tmp_path}/x.db"
    assert open_store("sqlite:///rel.db").path == "rel.db"
    assert open_store("chat.db").path == "chat.db"
    with pytest.raises(ValueError, match="unknown history store"):
        open_store("postgres://x")


def test_one_process_per_database_file(tmp_path):
    """A second server process on the same file would hand out the ids the first one
    does: it is refused at once, by name, and the file is free again when the first stops."""
    import subprocess
    import sys

    from chat_core.store import StoreInUse, check_free

    path = str(tmp_path / "sub" / "h.db")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import asyncio, sys\n"
                "from chat_core.store import SQLiteStore\n"
                "async def main():\n"
                f"    s = SQLiteStore({path!r}); await s.open(); print('open', flush=True)\n"
                "    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)\n"
                "    await s.close(); print('closed', flush=True)\n"
                "    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)\n"
                "asyncio.run(main())\n"
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(StoreInUse, match=f"pid {proc.pid}"):
            check_free(f"sqlite:///{path}")

        async def second():
            s = SQLiteStore(path)
            with pytest.raises(StoreInUse):
                await s.open()

        asyncio.run(second())
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "closed"
        check_free(path)  # free again while that process still runs

        async def third():
            s = SQLiteStore(path)
            await s.open()
            await s.append(msgs("a", 1, 1))
            await s.close()

        asyncio.run(third())
    finally:
        proc.stdin.close()
        proc.wait(10)

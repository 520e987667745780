"""Group commit, measured: 10 clients each send 500 messages as fast as they can;
the server's /healthz then says how many store commits carried the 5,000 messages.

    python bench/group_commit.py

Runs `python -m chat_core` on a free loopback port with a fresh SQLite file,
abuse limits and the outbox bound off, and stops by itself.
"""
import asyncio, json, sys, tempfile, time, urllib.request
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "tests"))
from servers import ServerProcess
from wsclient import Client
d = tempfile.mkdtemp()
srv = ServerProcess(["--db", d + "/c.db", "--outbox", "0"])
async def main():
    cs = [await Client.open(srv.ws_url) for _ in range(10)]
    for i, c in enumerate(cs): await c.join(f"u{i}")
    counts = [0] * 10
    async def reader(c, i):
        while counts[i] < 5000:
            f = await c.recv(30)
            if f["type"] == "msg": counts[i] += 1
    readers = [asyncio.ensure_future(reader(c, i)) for i, c in enumerate(cs)]
    t0 = time.perf_counter()
    async def blast(c, i):
        for j in range(500): await c.say(f"{i}-{j}")
    await asyncio.gather(*(blast(c, i) for i, c in enumerate(cs)))
    await asyncio.gather(*readers)
    dt = time.perf_counter() - t0
    h = json.loads(urllib.request.urlopen(srv.url + "/healthz").read())
    print(f"{h['messages']} messages stored and broadcast in {dt:.2f}s = {h['messages']/dt:.0f} msg/s in {h['commits']} commits (avg batch {h['messages']/h['commits']:.1f})")
with srv:
    asyncio.run(main())

"""Load-generator worker: many lean WebSocket clients in one process.

Started by bench/run.py (through bench/pin.py, pinned to the load core); it
reads one JSON command per line on stdin and answers one JSON line per command
on stdout. It exits when stdin closes, on the `exit` command, or after
--max-seconds, whichever comes first.

Why a hand-written client: the load generator must not be what limits the
figures, and it has one core. A client built on `websockets.asyncio.client`
costs tens of microseconds of Python per received frame (protocol parser,
assembler queue, a task per connection, then a JSON parse); this one is an
asyncio Protocol on uvloop that splits the frames of each read itself and finds
the probe in a `msg` frame with two bytes.find calls, about 1-2 us a frame.
`python bench/run.py --client-check` measures both (see docs/benchmarks.md).

The probe: every message the generator sends has the text
    ~b~<sender>|<seq>|<CLOCK_MONOTONIC ns at send>
and a receiver records (sender<<32 | seq, send ns, receive ns) for it.
CLOCK_MONOTONIC is one clock for every process on a Linux machine, so the
sender and the receivers may sit in different worker processes.

It speaks docs/protocol.md: join -> history `msg` frames -> `welcome`; `msg`
broadcasts; it answers WebSocket pings and closes, never offers
permessage-deflate, and masks what it sends as a client must.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import collections
import json
import os
import random
import socket
import sys
import time

import orjson

try:
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - pure-Python fallback
    _apply_mask = None

now_ns = time.monotonic_ns
TAG = b"~b~"
TAGLEN = len(TAG)
_rand4 = random.Random(0x5EED).randbytes

CONNECTING, HANDSHAKE, JOINING, JOINED, CLOSING, CLOSED = range(6)


def _mask(data: bytes, mask: bytes) -> bytes:
    if _apply_mask is not None:
        return _apply_mask(data, mask)
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final client->server frame, masked with a random key."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    mask = _rand4(4)
    return head + mask + _mask(payload, mask)


class Group:
    """Clients opened by one `connect` command."""

    def __init__(self, name: str, count: int, hold: float | None) -> None:
        self.name = name
        self.count = count
        self.hold = hold
        self.clients: list[Client] = []
        self.welcomed = 0
        self.failed = 0
        self.join_ns = array.array("q")  # connect start -> welcome, per client
        self.first_connect = 0
        self.last_welcome = 0
        self.fail_reasons: collections.Counter[str] = collections.Counter()


class Client(asyncio.Protocol):
    __slots__ = (
        "w",
        "g",
        "name",
        "room",
        "sidx",
        "seq",
        "transport",
        "state",
        "hbuf",
        "buf",
        "frag",
        "t_connect",
        "history",
        "record",
        "close_code",
        "port",
    )

    def __init__(self, w: Worker, g: Group, name: str, room: str, sidx: int, port: int) -> None:
        self.w = w
        self.g = g
        self.name = name
        self.room = room
        self.sidx = sidx
        self.port = port
        self.seq = 0
        self.transport: asyncio.Transport | None = None
        self.state = CONNECTING
        self.hbuf = b""
        self.buf = b""
        self.frag: list[bytes] | None = None
        self.t_connect = 0
        self.history = 0
        self.record = True
        self.close_code: int | None = None

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state = HANDSHAKE
        key = base64.b64encode(_rand4(16))
        transport.write(  # type: ignore[attr-defined]
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % (self.port, key)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        prev = self.state
        self.state = CLOSED
        self.w.closed += 1
        if prev in (CONNECTING, HANDSHAKE, JOINING):
            where = "in the handshake" if prev < JOINING else "after join"
            self._fail(f"closed {where}, before welcome" + (f" ({self.close_code})" if self.close_code else ""))
        elif self.close_code is None and prev != CLOSING:
            self.w.close_codes["no close frame"] += 1

    def _fail(self, reason: str) -> None:
        self.g.failed += 1
        self.g.fail_reasons[reason] += 1

    def data_received(self, data: bytes) -> None:
        if self.state >= JOINING:
            self._frames(data)
            return
        self.hbuf += data
        i = self.hbuf.find(b"\r\n\r\n")
        if i < 0:
            if len(self.hbuf) > 65536:
                self._fail("bad handshake")
                self.transport.abort()  # type: ignore[union-attr]
            return
        head, rest = self.hbuf[:i], self.hbuf[i + 4 :]
        self.hbuf = b""
        if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            self.state = CLOSING  # failed already counted here, not again in connection_lost
            self._fail("handshake: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
            self.transport.abort()  # type: ignore[union-attr]
            return
        self.state = JOINING
        self.send_json({"type": "join", "payload": {"user": self.name, "room": self.room}})
        if rest:
            self._frames(rest)

    # -- frames -------------------------------------------------------------
    def _frames(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        now = now_ns()
        while n - pos >= 2:
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            if ln < 126:
                hdr = 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hdr = 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            if b1 & 0x80:  # a masked server frame is a protocol error; read it anyway
                hdr += 4
            end = pos + hdr + ln
            if end > n:
                break
            b0 = buf[pos]
            payload = buf[pos + hdr : end]
            if b1 & 0x80:
                payload = _mask(payload, buf[pos + hdr - 4 : pos + hdr])
            pos = end
            op = b0 & 0x0F
            if op == 1 and b0 & 0x80:
                self._text(payload, now)
            else:
                self._other(b0, op, payload, now)
        self.buf = buf[pos:] if pos < n else b""

    def _text(self, p: bytes, now: int) -> None:
        i = p.find(TAG)
        if i >= 0 and self.state == JOINED:
            j = p.find(b'"', i)
            s, q, t = p[i + TAGLEN : j].split(b"|")
            if self.record:
                w = self.w
                w.r_key.append((int(s) << 32) | int(q))
                w.r_sent.append(int(t))
                w.r_recv.append(now)
            return
        try:
            d = orjson.loads(p)
            typ = d.get("type")
        except (orjson.JSONDecodeError, AttributeError):
            self.w.bad_frames += 1
            return
        if typ == "msg":
            if self.state == JOINING:
                self.history += 1
        elif typ == "welcome":
            if self.state == JOINING:
                self.state = JOINED
                g = self.g
                g.welcomed += 1
                g.join_ns.append(now - self.t_connect)
                if now > g.last_welcome:
                    g.last_welcome = now
                if g.hold is not None:
                    asyncio.get_running_loop().call_later(g.hold, self.close)
        elif typ == "error":
            self.w.errors[str(d.get("code"))] += 1
        else:
            self.w.other_frames[str(typ)] += 1

    def _other(self, b0: int, op: int, payload: bytes, now: int) -> None:
        if op == 9:  # ping
            self.transport.write(client_frame(0xA, payload))  # type: ignore[union-attr]
        elif op == 8:  # close
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_code = code
            self.w.close_codes[str(code)] += 1
            if self.state != CLOSING:
                self.transport.write(client_frame(8, payload[:2]))  # type: ignore[union-attr]
            self.state = CLOSING
            asyncio.get_running_loop().call_later(2.0, self.abort)
        elif op == 0 or not b0 & 0x80:  # fragmented message
            if self.frag is None:
                self.frag = []
            self.frag.append(payload)
            if b0 & 0x80:
                whole, self.frag = b"".join(self.frag), None
                self._text(whole, now)
        elif op == 2:
            self.w.other_frames["binary"] += 1

    # -- sending ------------------------------------------------------------
    def send_json(self, obj: object) -> None:
        self.transport.write(client_frame(1, orjson.dumps(obj)))  # type: ignore[union-attr]

    def send_probe(self, now: int) -> int:
        seq = self.seq
        self.seq = seq + 1
        self.transport.write(  # type: ignore[union-attr]
            client_frame(1, b'{"type":"msg","payload":{"text":"~b~%d|%d|%d"}}' % (self.sidx, seq, now))
        )
        return (self.sidx << 32) | seq

    def close(self) -> None:
        if self.state in (CLOSING, CLOSED) or self.transport is None:
            return
        self.state = CLOSING
        self.transport.write(client_frame(8, (1000).to_bytes(2, "big")))
        asyncio.get_running_loop().call_later(2.0, self.abort)

    def abort(self) -> None:
        if self.state != CLOSED and self.transport is not None:
            self.transport.abort()


class Worker:
    def __init__(self, wid: int) -> None:
        self.wid = wid
        self.groups: dict[str, Group] = {}
        self.r_key = array.array("q")
        self.r_sent = array.array("q")
        self.r_recv = array.array("q")
        self.s_key = array.array("q")
        self.s_sent = array.array("q")
        self.errors: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[str] = collections.Counter()
        self.other_frames: collections.Counter[str] = collections.Counter()
        self.bad_frames = 0
        self.closed = 0
        self.stalled: list[Client] = []
        self.tasks: set[asyncio.Task] = set()

    # -- commands -----------------------------------------------------------
    async def c_connect(self, c: dict) -> dict:
        """Open `count` clients named prefix+index into `room`, `rate` per second."""
        loop = asyncio.get_running_loop()
        count, rate = int(c["count"]), float(c["rate"])
        g = Group(c["group"], count, c.get("hold"))
        self.groups[g.name] = g
        host, port, rcvbuf = c["host"], int(c["port"]), c.get("rcvbuf")
        base = int(c.get("start", 0))
        t0 = loop.time()
        g.first_connect = now_ns()
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            cl = Client(self, g, f"{c['prefix']}{base + i}", c["room"], self.wid * 100_000 + base + i, port)
            g.clients.append(cl)
            t = loop.create_task(self._open(cl, host, port, rcvbuf))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        deadline = t0 + float(c["timeout"])
        while g.welcomed + g.failed < count and loop.time() < deadline:
            await asyncio.sleep(0.02)
        hist = [cl.history for cl in g.clients if cl.state >= JOINED]
        return {
            "joined": g.welcomed,
            "failed": g.failed,
            "pending": count - g.welcomed - g.failed,
            "fail_reasons": dict(g.fail_reasons),
            "join_ns": list(g.join_ns) if c.get("want_join_ns") else None,
            "first_connect": g.first_connect,
            "last_welcome": g.last_welcome,
            "history_min": min(hist, default=0),
            "history_max": max(hist, default=0),
        }

    async def _open(self, cl: Client, host: str, port: int, rcvbuf: int | None) -> None:
        loop = asyncio.get_running_loop()
        cl.t_connect = now_ns()
        try:
            if rcvbuf:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(rcvbuf))
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, port))
                await loop.create_connection(lambda: cl, sock=sock)
            else:
                await loop.create_connection(lambda: cl, host, port)
            cl.transport.get_extra_info("socket").setsockopt(  # type: ignore[union-attr]
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        except OSError as e:
            cl.state = CLOSED
            cl._fail(f"connect: {e.__class__.__name__}")

    async def c_send(self, c: dict) -> dict:
        """Send probes from the first `senders` joined clients of `group`, open loop:
        message k is due at start_ns + k/rate, whatever the replies do."""
        g = self.groups[c["group"]]
        senders = [cl for cl in g.clients if cl.state == JOINED][: int(c["senders"])]
        if not senders:
            return {"sent": 0, "lag_max_ns": 0}
        rate, start, total = float(c["rate"]), int(c["start_ns"]), int(c["count"])
        step = 1e9 / rate
        ns = len(senders)
        k = 0
        lag_max = 0
        s_key, s_sent = self.s_key, self.s_sent
        while k < total:
            now = now_ns()
            due = start + int(k * step)
            if now < due:
                await asyncio.sleep((due - now) / 1e9)
                continue
            while k < total and start + int(k * step) <= now:
                cl = senders[k % ns]
                if cl.state == JOINED:
                    t = now_ns()
                    s_key.append(cl.send_probe(t))
                    s_sent.append(t)
                    lag = t - (start + int(k * step))
                    if lag > lag_max:
                        lag_max = lag
                k += 1
        return {"sent": k, "lag_max_ns": lag_max}

    async def c_count(self, c: dict) -> dict:
        return {"received": len(self.r_key), "sent": len(self.s_key)}

    async def c_collect(self, c: dict) -> dict:
        """Write sends and receipts as raw int64 arrays to files, then forget them."""
        out = {"received": len(self.r_key), "sent": len(self.s_key)}
        with open(c["path"] + ".recv", "wb") as f:
            self.r_key.tofile(f)
            self.r_sent.tofile(f)
            self.r_recv.tofile(f)
        with open(c["path"] + ".sent", "wb") as f:
            self.s_key.tofile(f)
            self.s_sent.tofile(f)
        for a in (self.r_key, self.r_sent, self.r_recv, self.s_key, self.s_sent):
            del a[:]
        return out

    async def c_stall(self, c: dict) -> dict:
        """Stop reading on the last `count` joined clients of `group`."""
        g = self.groups[c["group"]]
        joined = [cl for cl in g.clients if cl.state == JOINED]
        chosen = joined[len(joined) - int(c["count"]) :]
        for cl in chosen:
            cl.record = False
            cl.transport.pause_reading()  # type: ignore[union-attr]
        self.stalled.extend(chosen)
        return {"stalled": [cl.name for cl in chosen]}

    async def c_resume(self, c: dict) -> dict:
        """Read again on the stalled clients; report how each connection ended."""
        for cl in self.stalled:
            if cl.state != CLOSED:
                try:
                    cl.transport.resume_reading()  # type: ignore[union-attr]
                except (RuntimeError, AttributeError):
                    pass
        deadline = time.monotonic() + float(c.get("wait", 3.0))
        while time.monotonic() < deadline and any(cl.state not in (CLOSING, CLOSED) for cl in self.stalled):
            await asyncio.sleep(0.05)
        res = {
            "closed_by_server": sum(1 for cl in self.stalled if cl.close_code is not None or cl.state == CLOSED),
            "codes": sorted(str(cl.close_code) for cl in self.stalled if cl.close_code is not None),
            "still_open": sum(1 for cl in self.stalled if cl.state in (JOINED, JOINING)),
        }
        self.stalled = []
        return res

    async def c_stats(self, c: dict) -> dict:
        states = collections.Counter()
        for g in self.groups.values():
            for cl in g.clients:
                states[cl.state] += 1
        return {
            "open": states[JOINED] + states[JOINING],
            "closed": states[CLOSED],
            "errors": dict(self.errors),
            "close_codes": dict(self.close_codes),
            "other_frames": dict(self.other_frames),
            "bad_frames": self.bad_frames,
        }

    async def c_close(self, c: dict) -> dict:
        """Close every client (close frame 1000), abort what is left after `wait` s."""
        loop = asyncio.get_running_loop()
        clients = [cl for g in self.groups.values() for cl in g.clients]
        for i, cl in enumerate(clients):
            cl.close()
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the loop breathe between batches
        deadline = loop.time() + float(c.get("wait", 3.0))
        while loop.time() < deadline and any(cl.state != CLOSED for cl in clients):
            await asyncio.sleep(0.05)
        left = 0
        for cl in clients:
            if cl.state != CLOSED and cl.transport is not None:
                cl.transport.abort()
                left += 1
        self.groups.clear()
        return {"aborted": left}

    # -- plumbing -----------------------------------------------------------
    async def handle(self, line: bytes) -> None:
        c = json.loads(line)
        cid = c.get("id")
        try:
            res = await getattr(self, "c_" + c["cmd"])(c)
            res["ok"] = True
        except Exception as e:  # report, never die silently
            res = {"ok": False, "error": f"{e.__class__.__name__}: {e}"}
        res["id"] = cid
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()

    async def main(self, max_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max_seconds, os._exit, 3)  # every run stops by itself
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        sys.stdout.write(json.dumps({"id": None, "ready": True, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.strip() == b'{"cmd": "exit"}':
                return
            t = loop.create_task(self.handle(line))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--id", type=int, default=0, help="worker id (sender ids are unique across workers)")
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    a = ap.parse_args()
    w = Worker(a.id)
    if a.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            asyncio.run(w.main(a.max_seconds))
        else:
            uvloop.run(w.main(a.max_seconds))
    else:
        asyncio.run(w.main(a.max_seconds))
    os._exit(0)  # don't wait for lingering transports


if __name__ == "__main__":
    main()

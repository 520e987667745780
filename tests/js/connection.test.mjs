// The connection (assets/chat/connection.js) with a fake WebSocket, clock and random source.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Connection, backoffDelay, retryDelay, wsUrl } from "../../assets/chat/connection.js";
import { FakeClock, fakeSockets, randoms, tokenStore, welcome } from "./fakes.mjs";

/** A connection wanting alice in #lobby, with everything it reports recorded. */
function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, made } = fakeSockets();
  const events = [];
  const states = [];
  const wanted = { user: "alice", room: "lobby", ...(options.wanted || {}) };
  const tokens = options.tokens || tokenStore();
  let seen = options.lastSeen ?? 0;
  let alive = true;
  const conn = new Connection({
    base: options.base || "http://chat.example/",
    ticket: options.ticket,
    WebSocket: options.WebSocket || FakeWebSocket,
    clock,
    random: options.random || randoms(0.5),
    tokens,
    target: () => wanted,
    lastSeen: () => seen,
    alive: () => alive,
    onEvent: (ev) => {
      events.push(ev);
      if (ev.type === "state") states.push(ev.state);
    },
    backoffMax: options.backoffMax,
  });
  return {
    conn, clock, made, events, states, wanted, tokens,
    setSeen: (n) => { seen = n; },
    kill: () => { alive = false; },
    last: () => made[made.length - 1],
    lastState: () => events.filter((e) => e.type === "state").at(-1),
  };
}

/** Open the current socket and answer its join with a welcome. */
function joinOk(t, extra = {}) {
  const ws = t.last();
  if (ws.readyState !== 1) ws.open();
  ws.receive(welcome(t.wanted.user, t.wanted.room, extra));
  return ws;
}

test("the socket URL sits next to the page, with the ticket when there is one", () => {
  assert.equal(wsUrl("http://127.0.0.1:7860/", null), "ws://127.0.0.1:7860/ws");
  assert.equal(wsUrl("https://x.hf.space/p/chat#top", null), "wss://x.hf.space/p/ws");
  assert.equal(wsUrl("https://x.example/p/?a=1", "t k/+="), "wss://x.example/p/ws?ticket=t%20k%2F%2B%3D");
  const t = setup({ base: "https://x.example/prefix/", ticket: "abc" });
  t.conn.join();
  assert.equal(t.last().url, "wss://x.example/prefix/ws?ticket=abc");
  t.conn.setTicket("later");
  t.last().drop(1006);
  t.clock.advance(15000);
  assert.equal(t.last().url, "wss://x.example/prefix/ws?ticket=later");
});

test("backoff: about 0.5 s, 1 s, 2 s, ... up to 15 s, each drawn from [ceiling/2, ceiling]", () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, () => 1)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, () => 0)),
    [250, 500, 1000, 2000, 4000, 7500, 7500]);
  assert.equal(backoffDelay(3, () => 0.5), 1500);
  assert.equal(backoffDelay(3, () => 1, 500, 1200), 1200); // data-backoff-max
  assert.deepEqual([1, 2, 3, 5, 9].map((n) => retryDelay(n)), [1000, 2000, 4000, 15000, 15000]);
});

test("a server that cannot be reached is retried on the backoff schedule, with jitter", () => {
  const t = setup({ random: randoms(0, 1, 0.5, 0.25, 1, 1, 0) });
  t.conn.join();
  assert.equal(t.conn.state, "connecting");
  const delays = [];
  for (let i = 0; i < 7; i++) {
    const before = t.made.length;
    t.last().drop(1006);
    assert.equal(t.conn.state, "reconnecting");
    const { delay, due, code, wasJoined, again } = t.conn.info;
    assert.deepEqual([code, wasJoined, again], [1006, false, false]);
    assert.equal(due, t.clock.now() + delay);
    assert.deepEqual(t.clock.pending(), [delay]);
    delays.push(delay);
    t.clock.advance(delay - 1);
    assert.equal(t.made.length, before, "reconnected before the delay was over");
    t.clock.advance(1);
    assert.equal(t.made.length, before + 1);
    assert.equal(t.conn.state, "connecting");
  }
  assert.deepEqual(delays, [250, 1000, 1500, 2500, 8000, 15000, 7500]);
});

test("a welcome resets the backoff", () => {
  const t = setup({ random: randoms(1) });
  t.conn.join();
  t.last().drop(1006);
  t.clock.advance(500);
  t.last().drop(1006);
  assert.equal(t.conn.info.delay, 1000);
  t.clock.advance(1000);
  joinOk(t);
  assert.equal(t.conn.state, "connected");
  t.last().drop(1001);
  assert.deepEqual([t.conn.state, t.conn.info.delay, t.conn.info.wasJoined, t.conn.info.again],
    ["reconnecting", 500, true, true]);
});

test("states: connecting, joining, connected; the join carries the name's token", () => {
  const t = setup({ tokens: tokenStore({ alice: "T0" }) });
  t.conn.join();
  const ws = t.last();
  assert.deepEqual(t.states, ["connecting"]);
  ws.open();
  assert.deepEqual(ws.sent, [{ type: "join", payload: { user: "alice", room: "lobby", token: "T0" } }]);
  assert.equal(t.conn.state, "joining");
  ws.receive(welcome("alice", "lobby", { token: "T1" }));
  assert.deepEqual(t.states, ["connecting", "joining", "connected"]);
  assert.deepEqual(t.conn.info, { user: "alice", room: "lobby" });
  assert.equal(t.tokens.get("ALICE"), "T1", "the welcome's token is kept, per name");
  assert.deepEqual(t.events.map((e) => e.type),
    ["opening", "state", "join_sent", "state", "frame", "state"]);
});

test("a reconnect asks with since for what it missed, and brings the token back", () => {
  const t = setup();
  t.conn.join();
  joinOk(t, { token: "T1", last_id: 40 });
  t.setSeen(41);
  t.last().drop(1006);
  t.clock.advance(15000);
  t.last().open();
  assert.deepEqual(t.last().joins(), [{ user: "alice", room: "lobby", since: 41, token: "T1" }]);
  assert.equal(t.conn.state, "joining");
  assert.deepEqual(t.conn.info, { again: true, retry: null });
});

test("since only goes with a join back into the room of the last welcome", () => {
  const t = setup();
  t.conn.join();
  const ws = joinOk(t);
  t.setSeen(7);
  t.wanted.room = "python"; // a room switch on the open socket
  t.conn.join();
  assert.equal(t.made.length, 1, "a switch uses the open socket");
  assert.deepEqual(ws.joins().at(-1), { user: "alice", room: "python" });
  assert.equal(t.conn.state, "connected", "still in the old room until the welcome");
  ws.receive(welcome("alice", "python"));
  t.setSeen(3);
  t.wanted.room = "lobby";
  t.conn.join();
  assert.deepEqual(ws.joins().at(-1), { user: "alice", room: "lobby" });
});

test("a join with no welcome within 10 s counts as a broken connection", () => {
  const t = setup();
  t.conn.join();
  const ws = t.last();
  ws.open();
  t.clock.advance(9999);
  assert.equal(t.conn.state, "joining");
  t.clock.advance(1);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: "no welcome" });
  assert.equal(t.conn.state, "reconnecting");
  assert.equal(t.conn.info.code, 4000);
  const closed = t.events.filter((e) => e.type === "closed");
  assert.deepEqual(closed, [{ type: "closed", code: 4000, reason: "" }]);
  t.clock.advance(t.conn.info.delay);
  assert.equal(t.made.length, 2);
});

test("the join timer stops at the welcome", () => {
  const t = setup();
  t.conn.join();
  joinOk(t);
  t.clock.advance(60000);
  assert.equal(t.conn.state, "connected");
  assert.equal(t.made.length, 1);
});

test("4003: a moderator removed us; no reconnecting until join()", () => {
  const t = setup();
  t.conn.join();
  joinOk(t);
  t.last().drop(4003, "removed by a moderator");
  assert.equal(t.conn.state, "removed");
  assert.deepEqual(t.clock.pending(), []);
  t.clock.advance(600000);
  assert.equal(t.made.length, 1);
  t.conn.join();
  assert.equal(t.made.length, 2);
});

test("4001: the name went to a newer tab; no reconnecting until join()", () => {
  const t = setup();
  t.conn.join();
  joinOk(t);
  t.last().drop(4001, "replaced");
  assert.equal(t.conn.state, "replaced");
  assert.deepEqual(t.conn.info, { user: "alice" });
  assert.deepEqual(t.clock.pending(), []);
  t.clock.advance(600000);
  t.conn.wake(); // back online: still not
  assert.equal(t.made.length, 1);
  assert.equal(t.conn.active, false);
  t.conn.join(); // "Press Join to chat here instead"
  assert.equal(t.made.length, 2);
  assert.equal(t.conn.state, "connecting");
});

test("close code 1008 (policy) waits longer: at least the fifth step", () => {
  const t = setup({ random: randoms(1) });
  t.conn.join();
  joinOk(t);
  t.last().drop(1008, "too many connections");
  assert.deepEqual([t.conn.info.code, t.conn.info.reason, t.conn.info.delay], [1008, "too many connections", 8000]);
});

test("bad_token: the token is dropped and the join sent again without it", () => {
  const t = setup({ tokens: tokenStore({ alice: "stale" }) });
  t.conn.join();
  const ws = t.last();
  ws.open();
  ws.receive({ type: "error", code: "bad_token", message: "That token does not hold this name." });
  assert.equal(t.tokens.get("alice"), null);
  assert.deepEqual(ws.joins(), [{ user: "alice", room: "lobby", token: "stale" }, { user: "alice", room: "lobby" }]);
  assert.ok(!t.events.some((e) => e.type === "refused" || (e.type === "frame" && e.frame.type === "error")));
  assert.deepEqual(t.events.filter((e) => e.type === "join_failed"), [{ type: "join_failed", code: "bad_token" }]);
  ws.receive(welcome("alice", "lobby", { token: "fresh" }));
  assert.equal(t.tokens.get("alice"), "fresh");
});

test("name_taken while rejoining under our own name: wait for the ghost, then join again", () => {
  const t = setup();
  t.conn.join();
  joinOk(t);
  t.last().drop(1006);
  t.clock.advance(t.conn.info.delay);
  const ws = t.last();
  ws.open();
  t.wanted.user = "ALICE"; // the same name, whatever the case
  ws.receive({ type: "error", code: "name_taken", message: "taken" });
  assert.equal(t.conn.state, "reconnecting");
  // the attempts count on from the reconnect (one so far): 500 ms * 2^2
  assert.deepEqual([t.conn.info.retry, t.conn.info.delay], ["name_taken", 2000]);
  t.clock.advance(1999);
  assert.equal(ws.joins().length, 1);
  t.clock.advance(1);
  assert.equal(ws.joins().length, 2);
  assert.equal(t.conn.state, "joining");
  assert.equal(t.conn.info.retry, "name_taken", "the status keeps saying why");
  ws.receive({ type: "error", code: "name_taken", message: "taken" });
  assert.equal(t.conn.info.delay, 4000);
  t.clock.advance(4000);
  ws.receive(welcome("ALICE", "lobby"));
  assert.equal(t.conn.state, "connected");
});

test("name_taken on a first join is a refusal: idle, the frame goes on", () => {
  const t = setup();
  t.conn.join();
  const ws = t.last();
  ws.open();
  const frame = { type: "error", code: "name_taken", message: "Someone has that name." };
  ws.receive(frame);
  assert.equal(t.conn.state, "idle");
  assert.deepEqual(t.conn.info, { refused: "name_taken" });
  assert.deepEqual(t.events.filter((e) => e.type === "refused"), [{ type: "refused", frame, joined: false }]);
  assert.deepEqual(t.clock.pending(), []);
  // the socket stays open: the next join goes on it
  t.wanted.user = "alicia";
  t.conn.join();
  assert.equal(t.made.length, 1);
  assert.deepEqual(ws.joins().at(-1), { user: "alicia", room: "lobby" });
  assert.equal(t.conn.state, "joining");
  // and when it closes while idle, nothing reconnects
  t.conn.onJoinError({ code: "bad_name" }, t.conn.socket);
  ws.drop(1000);
  assert.equal(t.conn.state, "idle");
  assert.deepEqual(t.conn.info, {});
  assert.equal(t.made.length, 1);
});

test("rate_limited joins are retried; a refused room switch stays connected where it was", () => {
  const t = setup();
  t.conn.join();
  const ws = joinOk(t);
  t.wanted.room = "python";
  t.conn.join();
  ws.receive({ type: "error", code: "rate_limited", message: "slow down" });
  assert.deepEqual([t.conn.state, t.conn.info.retry, t.conn.info.delay], ["reconnecting", "rate_limited", 1000]);
  t.clock.advance(1000);
  assert.deepEqual(ws.joins().at(-1), { user: "alice", room: "python" });
  const frame = { type: "error", code: "too_many_rooms", message: "Too many rooms." };
  ws.receive(frame);
  assert.equal(t.conn.state, "connected");
  assert.deepEqual(t.conn.info, { user: "alice", room: "lobby" });
  assert.deepEqual(t.events.filter((e) => e.type === "refused").at(-1), { type: "refused", frame, joined: true });
});

test("a join the server cannot answer from its history (store_unavailable) is tried again", () => {
  const t = setup();
  t.conn.join();
  const ws = t.last();
  ws.open();
  ws.receive({ type: "error", code: "store_unavailable", message: "The chat history cannot be read right now." });
  assert.deepEqual([t.conn.state, t.conn.info.retry], ["reconnecting", "store_unavailable"]);
  const joins = ws.joins().length;
  t.clock.advance(t.conn.info.delay);
  assert.equal(ws.joins().length, joins + 1, "joined again after the backoff, on the same socket");
});

test("errors that do not answer a join, and other frames, are passed on", () => {
  const t = setup();
  t.conn.join();
  const ws = joinOk(t);
  ws.receive({ type: "error", code: "text_too_long", message: "long" });
  ws.receive({ type: "msg", payload: { id: 1, user: "bob", text: "hi", room: "lobby" } });
  ws.receive("not json");
  ws.receive("[1, 2]");
  const frames = t.events.filter((e) => e.type === "frame").map((e) => e.frame.type);
  assert.deepEqual(frames, ["welcome", "error", "msg"]);
  assert.equal(t.conn.state, "connected");
});

test("send() only on an open socket", () => {
  const t = setup();
  assert.equal(t.conn.send({ type: "ping" }), false);
  t.conn.join();
  assert.equal(t.conn.send({ type: "ping" }), false);
  const ws = joinOk(t);
  assert.equal(t.conn.send({ type: "msg", payload: { text: "hi" } }), true);
  assert.deepEqual(ws.sent.at(-1), { type: "msg", payload: { text: "hi" } });
});

test("wake() skips the rest of the backoff; only when waiting without a socket", () => {
  const t = setup({ random: randoms(1) });
  t.conn.wake();
  assert.equal(t.made.length, 0, "idle: nothing to wake");
  t.conn.join();
  t.conn.wake();
  assert.equal(t.made.length, 1, "connecting: nothing to wake");
  t.last().drop(1006);
  t.conn.wake();
  assert.equal(t.made.length, 2);
  assert.deepEqual(t.clock.pending(), [], "the backoff timer is gone");
});

test("stop() closes the socket and ends everything; so does a widget gone from the page", () => {
  const t = setup();
  t.conn.join();
  const ws = joinOk(t);
  t.conn.stop();
  assert.equal(t.conn.state, "stopped");
  assert.deepEqual(ws.closedWith, { code: 1000, reason: "widget removed" });
  t.conn.join();
  t.clock.advance(60000);
  assert.equal(t.made.length, 1);

  const u = setup();
  u.conn.join();
  joinOk(u);
  u.last().drop(1006);
  u.kill(); // the element left the page
  u.clock.advance(15000);
  assert.equal(u.conn.state, "stopped");
  assert.equal(u.made.length, 1);
});

test("a WebSocket constructor that throws is retried like a lost connection", () => {
  let fail = true;
  const { FakeWebSocket, made } = fakeSockets();
  class Flaky extends FakeWebSocket {
    constructor(url) {
      if (fail) throw new SyntaxError("bad URL");
      super(url);
    }
  }
  const t = setup({ WebSocket: Flaky, random: randoms(1) });
  t.conn.join();
  assert.equal(t.conn.state, "reconnecting");
  assert.deepEqual([t.conn.info.error, t.conn.info.delay], ["bad URL", 500]);
  fail = false;
  t.clock.advance(500);
  assert.equal(made.length, 1);
  assert.equal(t.conn.state, "connecting");
});

test("a second join() while the socket is still opening starts a fresh one", () => {
  const t = setup();
  t.conn.join();
  const first = t.last();
  t.conn.join();
  assert.equal(t.made.length, 2);
  assert.deepEqual(first.closedWith, { code: 1000, reason: "reconnecting" });
  first.receive(welcome("alice", "lobby")); // the old socket is deaf now
  assert.equal(t.conn.state, "connecting");
});

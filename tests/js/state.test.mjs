// The protocol state (assets/chat/state.js): events in, new state and effects out.
import { test } from "node:test";
import assert from "node:assert/strict";

import { initialState, mentions, reduce } from "../../assets/chat/state.js";
import { welcome } from "./fakes.mjs";

/** Run events through the reducer; the effects of all of them, and the state at the end. */
function run(state, ...events) {
  const effects = [];
  for (const event of events) {
    const out = reduce(state, event);
    state = out.state;
    effects.push(...out.effects);
  }
  return { state, effects };
}

const frame = (f) => ({ type: "frame", frame: f });
const msg = (id, user, text, room = "lobby") => frame({ type: "msg", payload: { id, user, text, ts: 100 + id, room } });
const types = (effects) => effects.map((e) => e.type);
const only = (effects, type) => effects.filter((e) => e.type === type);
const ids = (effects) => only(effects, "messages").flatMap((e) => e.items.map((i) => i.id));

/** alice in #lobby, with messages 1 and 2 in the history. */
function joined(extra = {}) {
  return run(initialState({ user: "alice" }),
    { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby" } },
    msg(1, "bob", "one"), msg(2, "alice", "two"),
    frame(welcome("alice", "lobby", { users: ["bob", "alice", "Carol"], online: 3, last_id: 2, ...extra })));
}

test("welcome: the history that came before it, the people, and what to remember", () => {
  const { state, effects } = joined();
  assert.deepEqual(types(effects), ["composer", "clear", "mark_own", "remember", "busy", "messages", "busy",
    "scroll_bottom", "users", "welcome", "clear_error", "composer", "rules"]);
  const [items] = only(effects, "messages");
  assert.equal(items.countUnread, false, "a fresh list counts nothing as unread");
  assert.deepEqual(items.items, [
    { id: 1, user: "bob", text: "one", ts: 101, own: false, mention: false, append: true, edited: null, deleted: false, reactions: [], bot: false },
    { id: 2, user: "alice", text: "two", ts: 102, own: true, mention: false, append: true, edited: null, deleted: false, reactions: [], bot: false },
  ]);
  assert.deepEqual(only(effects, "remember"), [{ type: "remember", name: "alice", room: "lobby" }]);
  assert.deepEqual(only(effects, "users"), [{ type: "users", names: ["alice", "bob", "Carol"], me: "alice", online: 3, room: "lobby" }]);
  assert.deepEqual(only(effects, "welcome"), [{ type: "welcome", user: "alice", room: "lobby" }]);
  assert.deepEqual(only(effects, "composer").at(-1), { type: "composer", enabled: true });
  assert.equal(only(effects, "system").length, 0, "no 'Reconnected.' on the first join");
  assert.deepEqual([state.me, state.viewRoom, state.joined, state.everJoined, state.lastId, state.pending],
    ["alice", "lobby", true, true, 2, null]);
  assert.deepEqual(state.wanted, { user: "alice", room: "lobby" });
});

test("the reducer changes nothing it is given", () => {
  const start = joined().state;
  const snapshot = { ...start, ids: [...start.ids], users: [...start.users], wanted: { ...start.wanted } };
  run(start, msg(3, "bob", "three"), frame({ type: "join", payload: { user: "dan", room: "lobby" } }),
    frame({ type: "presence", payload: { room: "lobby", joined: ["eve"], left: ["bob"], online: 9 } }),
    { type: "closed" }, { type: "want", room: "python" });
  assert.deepEqual({ ...start, ids: [...start.ids], users: [...start.users], wanted: { ...start.wanted } }, snapshot);
});

test("a server-given name is not remembered", () => {
  const { effects } = run(initialState(), { type: "fix_user", user: "ann" },
    { type: "join_sent", payload: { user: "ann", room: "lobby" } }, frame(welcome("ann", "lobby")));
  assert.deepEqual(only(effects, "remember"), [{ type: "remember", room: "lobby" }]);
});

test("msg: each id once, in the room shown; own messages clear the error", () => {
  let { state } = joined();
  let out = run(state, msg(3, "bob", "three"), msg(3, "bob", "three again"), msg(2, "alice", "two"));
  assert.deepEqual(ids(out.effects), [3]);
  assert.equal(only(out.effects, "messages")[0].countUnread, true);
  out = run(out.state, msg(9, "bob", "elsewhere", "python"), frame({ type: "msg", payload: { id: "10", text: "x" } }));
  assert.deepEqual(out.effects, [], "another room's message, and one without a numeric id, are not shown");
  out = run(out.state, msg(4, "alice", "mine"));
  assert.deepEqual(types(out.effects), ["messages", "clear_error", "degraded"]);
  assert.equal(only(out.effects, "degraded")[0].on, false, "an own message was stored: not degraded (any more)");
  assert.equal(out.state.lastId, 4);
  // an older id that was never shown goes in its place, not at the end
  out = run(out.state, frame({ type: "msg", payload: { id: 0, user: 5, room: "lobby" } }));
  assert.deepEqual(only(out.effects, "messages")[0].items,
    [{ id: 0, user: "?", text: "", ts: null, own: false, mention: false, append: false, edited: null, deleted: false, reactions: [], bot: false }]);
  assert.equal(out.state.lastId, 4);
  // a bot's message says so, and only "bot": true does
  out = run(out.state, frame({ type: "msg", payload: { id: 5, user: "dice", text: "7", room: "lobby", bot: true } }),
    frame({ type: "msg", payload: { id: 6, user: "eve", text: "me too", room: "lobby", bot: "yes" } }));
  assert.deepEqual(only(out.effects, "messages").flatMap((e) => e.items.map((m) => m.bot)), [true, false]);
});

test("messages between a join and its welcome wait for the welcome; notices meanwhile are dropped", () => {
  const { state } = joined();
  const out = run(state, { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    msg(3, "bob", "three"), frame({ type: "join", payload: { user: "zed", room: "lobby" } }),
    frame({ type: "presence", payload: { room: "lobby", joined: ["x"], online: 5 } }));
  assert.deepEqual(out.effects, []);
  assert.equal(out.state.pending.length, 1);
});

test("a reconnect into the same room: no fresh list, 'Reconnected.', what was missed counts as unread", () => {
  const { state } = joined();
  const out = run(state, { type: "closed" }, { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    msg(2, "alice", "two"), msg(3, "bob", "three"),
    frame(welcome("alice", "lobby", { last_id: 3, ts: 200, users: ["alice"], online: 1 })));
  assert.ok(!types(out.effects).includes("clear"));
  assert.ok(!types(out.effects).includes("scroll_bottom"));
  assert.ok(!types(out.effects).includes("mark_own"));
  assert.deepEqual(ids(out.effects), [3]);
  assert.equal(only(out.effects, "messages")[0].countUnread, true);
  assert.deepEqual(only(out.effects, "system"), [{ type: "system", text: "Reconnected.", ts: 200 }]);
  assert.deepEqual(only(out.effects, "composer").map((e) => e.enabled), [true, true, true],
    "the box stays usable while reconnecting: what is written waits");
});

test("a server that lost its history (last_id < since) gets a fresh list", () => {
  const { state } = joined();
  const out = run(state, { type: "closed" }, { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    msg(1, "bob", "new one"), frame(welcome("alice", "lobby", { last_id: 1 })));
  assert.ok(types(out.effects).includes("clear"));
  assert.deepEqual(ids(out.effects), [1], "id 1 again: a new message on a new server");
  assert.equal(out.state.lastId, 1);
});

test("a room switch starts the list afresh; history of another room is not shown", () => {
  const { state } = joined();
  const out = run(state, { type: "join_sent", payload: { user: "alice", room: "python" } },
    msg(7, "bob", "py", "python"), msg(3, "bob", "late lobby one", "lobby"),
    frame(welcome("alice", "python", { last_id: 7 })));
  assert.deepEqual(types(out.effects).slice(0, 1), ["clear"]);
  assert.deepEqual(ids(out.effects), [7]);
  assert.deepEqual([out.state.viewRoom, out.state.lastId], ["python", 7]);
  assert.ok(!only(out.effects, "system").length);
});

test("gap: a line where messages could not be replayed; last_id moves on", () => {
  const { state } = joined();
  const out = run(state, { type: "closed" }, { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    msg(6, "bob", "six"), frame(welcome("alice", "lobby", { last_id: 8, gap: { after: 2, first: 6 } })));
  assert.deepEqual(only(out.effects, "gap"), [{ type: "gap", after: 2, first: 6 }]);
  const order = types(out.effects);
  assert.ok(order.indexOf("messages") < order.indexOf("gap"), "the gap goes in among the messages shown");
  assert.equal(out.state.lastId, 8);
});

test("join and leave: lines and counts; our own join has no line", () => {
  const { state } = joined(); // alice, bob, Carol: 3 online
  const j = (type, user, room = "lobby") => frame({ type, payload: { user, room, ts: 5 } });
  let out = run(state, j("join", "dan"));
  assert.deepEqual(out.effects, [
    { type: "system", text: "dan joined", ts: 5 },
    { type: "users", names: ["alice", "bob", "Carol", "dan"], me: "alice", online: 4, room: "lobby" },
  ]);
  out = run(out.state, j("join", "alice"));
  assert.deepEqual(types(out.effects), ["users"], "our own join: no line");
  out = run(out.state, j("join", "ALICE"), j("join", "dan"));
  assert.deepEqual(only(out.effects, "system"), [{ type: "system", text: "ALICE joined", ts: 5 },
    { type: "system", text: "dan joined", ts: 5 }], "a line per notice, as the server sends them");
  assert.deepEqual(only(out.effects, "users").at(-1).names, ["ALICE", "bob", "Carol", "dan"],
    "one entry per name whatever its case");
  assert.equal(only(out.effects, "users").at(-1).online, 4);
  out = run(out.state, j("leave", "carol"));
  assert.deepEqual(out.effects[0], { type: "system", text: "carol left", ts: 5 });
  assert.deepEqual(only(out.effects, "users")[0].names, ["ALICE", "bob", "dan"]);
  assert.equal(only(out.effects, "users")[0].online, 3);
  out = run(out.state, j("join", "zed", "python"), frame({ type: "leave", payload: { room: "lobby" } }));
  assert.deepEqual(out.effects, [], "another room's notice, and one without a name, change nothing");
});

test("presence: coalesced changes for big rooms", () => {
  const { state } = joined();
  const out = run(state, frame({ type: "presence", payload: { room: "lobby", joined: ["eve", 7], left: ["BOB"], online: 500, more: 3 } }));
  assert.deepEqual(out.effects, [
    { type: "users", names: ["alice", "Carol", "eve"], me: "alice", online: 500, room: "lobby" },
  ]);
  const other = run(out.state, frame({ type: "presence", payload: { room: "python", joined: ["x"], online: 2 } }));
  assert.deepEqual(other.effects, []);
});

test("errors by code: not_joined joins again; an error about no message of ours is shown", () => {
  const { state } = joined();
  let out = run(state, frame({ type: "error", code: "not_joined", message: "Join first." }));
  assert.deepEqual(out.effects, [{ type: "join_again" }]);
  out = run(state, frame({ type: "error", code: "text_too_long", message: "Too long." }));
  assert.deepEqual(out.effects, [{ type: "error", text: "Too long." }]);
  out = run(state, frame({ type: "error", code: "store_unavailable", message: "Not saved." }));
  assert.deepEqual(out.effects, [{ type: "degraded", on: true }, { type: "error", text: "Not saved." }],
    "the server cannot store: the status line says so");
  for (const code of ["bad_text", "bad_frame", "binary_not_supported"]) {
    out = run(state, frame({ type: "error", code }));
    assert.deepEqual(out.effects, [{ type: "error", text: "Error: " + code }], code);
  }
});

const compose = (text, cid, now = 5000) => ({ type: "compose", text, cid, now });
const outgoing = (effects) => only(effects, "outgoing").at(-1).items.map((e) => [e.cid, e.state, e.error]);

test("a message written while joined is sent with its cid and waits until it comes back stored", () => {
  const { state } = joined();
  let out = run(state, compose("hello", "c1"));
  assert.deepEqual(only(out.effects, "send_msg"), [{ type: "send_msg", cid: "c1", text: "hello" }]);
  assert.deepEqual(outgoing(out.effects), [["c1", "sending", ""]]);
  assert.equal(only(out.effects, "save_outgoing")[0].list[0].room, "lobby");
  out = run(out.state, frame({ type: "msg", payload: { id: 3, user: "alice", text: "hello", ts: 9, room: "lobby", cid: "c1" } }));
  assert.deepEqual(ids(out.effects), [3]);
  assert.deepEqual(only(out.effects, "outgoing").at(-1).items, [], "stored: no longer pending");
  assert.deepEqual(out.state.outgoing, []);
});

test("written while the socket is down: it waits, and goes out after the welcome unless the replay has it", () => {
  const { state } = joined();
  let out = run(state, { type: "closed" }, compose("one", "c1"), compose("two", "c2"));
  assert.deepEqual(only(out.effects, "send_msg"), [], "no socket: nothing sent");
  assert.deepEqual(outgoing(out.effects), [["c1", "waiting", ""], ["c2", "waiting", ""]]);
  out = run(out.state, { type: "opening" }, { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    frame({ type: "msg", payload: { id: 3, user: "alice", text: "one", ts: 9, room: "lobby", cid: "c1" } }),
    { ...frame(welcome("alice", "lobby", { last_id: 3 })), now: 6000 });
  assert.deepEqual(only(out.effects, "send_msg"), [{ type: "send_msg", cid: "c2", text: "two" }],
    "c1 was stored before the restart (the replay brought it): only c2 goes again");
  assert.deepEqual(outgoing(out.effects), [["c2", "sending", ""]]);
});

test("in flight when the socket closed: sent again, with the same cid, after the next welcome", () => {
  const { state } = joined();
  let out = run(state, compose("hello", "c1"), { type: "closed" });
  assert.deepEqual(outgoing(out.effects), [["c1", "waiting", ""]]);
  out = run(out.state, { type: "opening" }, { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    { ...frame(welcome("alice", "lobby", { last_id: 2 })), now: 9000 });
  assert.deepEqual(only(out.effects, "send_msg"), [{ type: "send_msg", cid: "c1", text: "hello" }]);
});

test("kept across a reload: only well-formed entries; older than the cid window is not resent by itself", () => {
  const stored = [
    { cid: "old", text: "from long ago", room: "lobby", user: "alice", ts: 1000, state: "sending" },
    { cid: "new", text: "just now", room: "lobby", user: "alice", ts: 900_000, state: "sending" },
    { cid: "elsewhere", text: "x", room: "python", user: "alice", ts: 900_000, state: "waiting" },
    { cid: "<bad cid>", text: "x", room: "lobby", user: "alice", ts: 900_000 },
    { cid: "c", text: 5, room: "lobby", user: "alice", ts: 900_000 },
    null,
  ];
  const start = initialState({ user: "alice", outgoing: stored, cidWindowMs: 600_000 });
  assert.deepEqual(start.outgoing.map((e) => [e.cid, e.state]), [["old", "waiting"], ["new", "waiting"], ["elsewhere", "waiting"]]);
  const out = run(start, { type: "opening" }, { type: "join_sent", payload: { user: "alice", room: "lobby" } },
    { ...frame(welcome("alice", "lobby", { last_id: 0 })), now: 1_000_000 });
  assert.deepEqual(only(out.effects, "send_msg").map((e) => e.cid), ["new"]);
  assert.deepEqual(outgoing(out.effects), [["old", "failed", "Not confirmed by the server: send it again, or discard it."],
    ["new", "sending", ""]], "another room's waits for that room; shown: this room's only");
});

test("a refused message shows its error and can be sent again or discarded", () => {
  const { state } = joined();
  let out = run(state, compose("hello", "c1"),
    frame({ type: "error", code: "rate_limited", message: "Slow down.", cid: "c1" }));
  assert.deepEqual(outgoing(out.effects), [["c1", "failed", "Slow down."]]);
  assert.deepEqual(only(out.effects, "error"), [], "the error is beside the message, not at the top");
  const retried = run(out.state, { type: "retry", cid: "c1" });
  assert.deepEqual(only(retried.effects, "send_msg"), [{ type: "send_msg", cid: "c1", text: "hello" }]);
  assert.deepEqual(outgoing(retried.effects), [["c1", "sending", ""]]);
  const gone = run(out.state, { type: "discard", cid: "c1" });
  assert.deepEqual(gone.state.outgoing, []);
  out = run(state, compose("bye", "c2"), frame({ type: "error", code: "shutting_down", message: "Restarting.", cid: "c2" }));
  assert.deepEqual(outgoing(out.effects), [["c2", "waiting", ""]], "shutting_down: sent again after reconnecting");
  out = run(state, compose("x", "c3"), frame({ type: "error", code: "store_unavailable", message: "Not saved.", cid: "c3" }));
  assert.deepEqual(types(out.effects).slice(-3), ["degraded", "outgoing", "save_outgoing"]);
});

test("typing: shown per name, cleared by time, by their message and by their leaving", () => {
  const { state } = joined();
  const typing = (user, room = "lobby") => ({ ...frame({ type: "typing", payload: { user, room } }), now: 1000 });
  let out = run(state, typing("bob"), typing("Carol"), typing("alice"), typing("dan", "python"));
  assert.deepEqual(only(out.effects, "typing").at(-1).names, ["bob", "Carol"], "not oneself, not another room");
  out = run(out.state, msg(3, "bob", "done"));
  assert.deepEqual(only(out.effects, "typing").at(-1).names, ["Carol"]);
  out = run(out.state, { type: "tick", now: 1000 + state.typingShownMs + 1 });
  assert.deepEqual(only(out.effects, "typing").at(-1).names, []);
  out = run(out.state, typing("bob"), frame({ type: "leave", payload: { user: "bob", room: "lobby" } }));
  assert.deepEqual(only(out.effects, "typing").at(-1).names, []);
});

test("welcome tells the server's max_text", () => {
  const { effects } = joined({ max_text: 500 });
  assert.deepEqual(only(effects, "limits"), [{ type: "limits", maxText: 500 }]);
});

test("the room's topic, slow mode and lock: from welcome, then from room frames of this room only", () => {
  let out = joined({ topic: "Release day", slow: 10, locked: false });
  assert.deepEqual(only(out.effects, "rules"), [{ type: "rules", topic: "Release day", slow: 10, locked: false }]);
  out = run(out.state, frame({ type: "room", payload: { room: "lobby", topic: "", slow: 0, locked: true } }));
  assert.deepEqual(only(out.effects, "rules"), [{ type: "rules", topic: "", slow: 0, locked: true }]);
  out = run(out.state, frame({ type: "room", payload: { room: "other", topic: "elsewhere", slow: 0, locked: false } }));
  assert.deepEqual(only(out.effects, "rules"), []);
  const old = joined(); // a server without moderation: no topic line
  assert.deepEqual(only(old.effects, "rules"), [{ type: "rules", topic: "", slow: 0, locked: false }]);
});

test("a refused first join: the error, and the name field for name problems", () => {
  const start = run(initialState({ user: "bob" }), { type: "opening" },
    { type: "join_sent", payload: { user: "bob", room: "lobby" } }).state;
  let out = run(start, { type: "refused", frame: { type: "error", code: "name_taken", message: "Someone in this room already has that name." } });
  assert.deepEqual(out.effects, [{ type: "error", text: "Someone in this room already has that name." }, { type: "focus_name" }]);
  assert.equal(out.state.pending, null);
  out = run(start, { type: "refused", frame: { type: "error", code: "bad_room", message: "Bad room." } });
  assert.deepEqual(out.effects, [{ type: "error", text: "Bad room." }]);
});

test("a refused room switch: back to the room and name we are in", () => {
  const { state } = joined();
  const switching = run(state, { type: "want", user: "alicia", room: "python" },
    { type: "join_sent", payload: { user: "alicia", room: "python" } }).state;
  const out = run(switching, { type: "refused", frame: { type: "error", code: "too_many_rooms", message: "Full." } });
  assert.deepEqual(out.effects, [{ type: "error", text: "Full." }, { type: "restore", user: "alice", room: "lobby" }]);
  assert.deepEqual(out.state.wanted, { user: "alice", room: "lobby" });
  const fixed = run(initialState(), { type: "fix_user", user: "ann" },
    { type: "join_sent", payload: { user: "ann", room: "lobby" } }, frame(welcome("ann", "lobby")),
    { type: "want", room: "x" }, { type: "join_sent", payload: { user: "ann", room: "x" } },
    { type: "refused", frame: { type: "error", code: "bad_room", message: "m" } });
  assert.deepEqual(only(fixed.effects, "restore"), [{ type: "restore", user: null, room: "lobby" }]);
});

test("a retried join (join_failed) stops holding back frames", () => {
  const { state } = joined();
  const out = run(state, { type: "join_sent", payload: { user: "alice", room: "lobby" } }, { type: "join_failed" },
    msg(3, "bob", "live"));
  assert.deepEqual(ids(out.effects), [3]);
});

test("want and unknown events", () => {
  let { state } = run(initialState({ room: "garden" }), { type: "want", user: "hana" });
  assert.deepEqual(state.wanted, { user: "hana", room: "garden" });
  ({ state } = run(state, { type: "want", room: "lobby" }));
  assert.deepEqual(state.wanted, { user: "hana", room: "lobby" });
  const same = reduce(state, { type: "no-such-event" });
  assert.equal(same.state, state);
  assert.deepEqual(same.effects, []);
  assert.deepEqual(run(state, frame({ type: "pong", ts: 1 })).effects, []);
});

test("mentions: @name in any letter case, not a longer name, not one's own message", () => {
  assert.equal(mentions("hi @Alice, look", "alice"), true);
  assert.equal(mentions("@alice", "alice"), true);
  assert.equal(mentions("(@ALICE)", "alice"), true);
  assert.equal(mentions("hi @alicea", "alice"), false, "a longer name");
  assert.equal(mentions("mail bob@alice.example", "alice"), false, "part of a word");
  assert.equal(mentions("hi @Bob Smith!", "Bob Smith"), true, "names with spaces");
  assert.equal(mentions("alice without the at", "alice"), false);
  const { state } = joined();
  const out = run(state, msg(3, "bob", "@alice see this"), msg(4, "alice", "@alice note to self"));
  assert.deepEqual(only(out.effects, "messages").flatMap((e) => e.items.map((i) => [i.id, i.mention])),
    [[3, true], [4, false]]);
});

test("the replay after a reconnect is marked as such (where the reader left off)", () => {
  const { state } = joined();
  const out = run(state, { type: "closed" }, { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    msg(3, "bob", "while away"), frame(welcome("alice", "lobby", { last_id: 3 })));
  assert.equal(only(out.effects, "messages")[0].replay, true);
  const live = run(out.state, msg(4, "bob", "live"));
  assert.equal(only(live.effects, "messages")[0].replay, undefined);
});

test("edits, deletes and reactions change a message in the list, and count as seen ids", () => {
  const { state } = joined();
  const change = (type, payload) => frame({ type, payload: { room: "lobby", user: "bob", ts: 300, ...payload } });
  let out = run(state, change("edit", { id: 3, target: 1, text: "one, edited" }),
    change("react", { id: 4, target: 2, emoji: "👍", on: true }),
    change("delete", { id: 5, target: 1 }), change("edit", { id: 6, target: 99, text: "not in the list" }),
    change("react", { id: 7, target: 2, emoji: "👍", on: true, room: "python" }));
  assert.deepEqual(out.effects, [
    { type: "edited", id: 1, text: "one, edited", ts: 300 },
    { type: "reacted", id: 2, emoji: "👍", user: "bob", on: true, mine: false },
    { type: "deleted", id: 1 },
  ]);
  assert.equal(out.state.lastId, 6, "since is the newest id of any entry of the room");
});

test("changes in a reconnect's replay are applied after the messages, in order", () => {
  const { state } = joined();
  const out = run(state, { type: "closed" }, { type: "opening" },
    { type: "join_sent", payload: { user: "alice", room: "lobby", since: 2 } },
    frame({ type: "edit", payload: { id: 3, target: 2, text: "two, edited", room: "lobby", user: "alice", ts: 1 } }),
    msg(4, "bob", "four"),
    frame({ type: "react", payload: { id: 5, target: 4, emoji: "🎉", on: true, room: "lobby", user: "alice", ts: 2 } }),
    frame(welcome("alice", "lobby", { last_id: 5 })));
  assert.deepEqual(types(out.effects).filter((t) => ["messages", "edited", "reacted"].includes(t)),
    ["messages", "edited", "reacted"]);
  assert.equal(only(out.effects, "reacted")[0].mine, true);
});

test("a msg payload's edited, deleted and reactions reach the view", () => {
  const { state } = joined();
  const out = run(state, frame({ type: "msg", payload: { id: 3, user: "bob", text: "", ts: 1, room: "lobby",
    deleted: true, edited: 5, reactions: { "👍": ["alice", 7], "x": "no" } } }));
  const [item] = only(out.effects, "messages")[0].items;
  assert.deepEqual([item.deleted, item.edited, item.reactions], [true, 5, [["👍", ["alice"]]]]);
});

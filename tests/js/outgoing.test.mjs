// Messages on their way out (assets/chat/outgoing.js): the list state.js keeps.
import { test } from "node:test";
import assert from "node:assert/strict";

import * as out from "../../assets/chat/outgoing.js";

const entry = (cid, extra = {}) => ({ cid, text: "t " + cid, room: "lobby", user: "alice", ts: 1000, state: "waiting", ...extra });

test("add keeps at most MAX_OUTGOING, dropping the oldest", () => {
  let list = [];
  for (let i = 0; i < out.MAX_OUTGOING + 5; i++) list = out.add(list, entry("c" + i));
  assert.equal(list.length, out.MAX_OUTGOING);
  assert.equal(list[0].cid, "c5");
});

test("unsent puts what was in flight back to waiting, and leaves failed ones alone", () => {
  const list = [entry("a", { state: "sending" }), entry("b", { state: "failed", error: "x" })];
  assert.deepEqual(out.unsent(list).map((e) => e.state), ["waiting", "failed"]);
  const quiet = [entry("c")];
  assert.equal(out.unsent(quiet), quiet, "nothing changed: the same list");
});

test("due sends this room's and name's waiting ones, within the window", () => {
  const list = [entry("a", { ts: 650_000 }), entry("b", { room: "other" }), entry("c", { user: "bob" }), entry("d", { ts: 0 })];
  const { list: after, send } = out.due(list, "alice", "lobby", 700_000, 600_000);
  assert.deepEqual(send.map((e) => e.cid), ["a"]);
  assert.deepEqual(after.map((e) => e.state), ["sending", "waiting", "waiting", "failed"]);
});

test("clean refuses what is not an entry and never trusts a stored state of sending", () => {
  assert.deepEqual(out.clean("nope"), []);
  assert.deepEqual(out.clean([entry("ok", { state: "sending" }), { cid: "x" }]).map((e) => e.state), ["waiting"]);
});

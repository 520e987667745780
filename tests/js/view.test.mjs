// The DOM-free parts of the view and the widget: links in texts, the status line, the room picker.
import { test } from "node:test";
import assert from "node:assert/strict";

import { linkParts, safeHref } from "../../assets/chat/view.js";
import { roomOptions, statusOf, titleWith } from "../../assets/chat/widget.js";

test("only http(s) URLs become links; trailing punctuation stays text", () => {
  assert.deepEqual(linkParts("see https://example.com/page?q=1&r=2."), [
    { text: "see " }, { text: "https://example.com/page?q=1&r=2", href: "https://example.com/page?q=1&r=2" }, { text: "." },
  ]);
  assert.deepEqual(linkParts("(https://en.wikipedia.org/wiki/Foo_(bar))"), [
    { text: "(" },
    { text: "https://en.wikipedia.org/wiki/Foo_(bar)", href: "https://en.wikipedia.org/wiki/Foo_(bar)" },
    { text: ")" },
  ]);
  const xss = '<a href="javascript:alert(3)">x</a> javascript:alert(4) data:text/html,hi <img src=x onerror=alert(1)>';
  assert.deepEqual(linkParts(xss), [{ text: xss }]);
  assert.deepEqual(linkParts("http://a.example and HTTPS://B.example!"), [
    { text: "http://a.example", href: "http://a.example/" }, { text: " and " },
    { text: "HTTPS://B.example", href: "https://b.example/" }, { text: "!" },
  ]);
  assert.deepEqual(linkParts(""), []);
  assert.equal(safeHref("javascript:alert(1)"), null);
  assert.equal(safeHref("not a url"), null);
});

test("the status line for each connection state", () => {
  assert.deepEqual(statusOf("idle", {}), ["idle", "Not connected: pick a name and join."]);
  assert.equal(statusOf("connected", { user: "ann", room: "lobby" }, 0, true)[0], "degraded");
  assert.match(statusOf("connected", { user: "ann", room: "lobby" }, 0, true)[1], /cannot save messages/);
  assert.match(statusOf("joining", { retry: "store_unavailable" }, 0)[1], /cannot read its history/);
  assert.deepEqual(statusOf("idle", { refused: "name_taken" }), ["idle", "Not joined."]);
  assert.deepEqual(statusOf("connecting", { again: false }), ["connecting", "Connecting…"]);
  assert.deepEqual(statusOf("connecting", { again: true }), ["reconnecting", "Reconnecting…"]);
  assert.deepEqual(statusOf("joining", { again: false, retry: null }), ["connecting", "Connecting…"]);
  assert.deepEqual(statusOf("joining", { again: true, retry: "name_taken" }),
    ["reconnecting", "Waiting for the previous connection to time out…"]);
  assert.deepEqual(statusOf("reconnecting", { retry: "rate_limited" }), ["reconnecting", "Joining too often; waiting…"]);
  assert.deepEqual(statusOf("connected", { user: "alice", room: "lobby" }), ["connected", "Connected as alice in #lobby."]);
  assert.deepEqual(statusOf("replaced", { user: "twin" }), ["replaced",
    "You are now chatting as twin in another tab or window. Press Join to chat here instead."]);
  assert.match(statusOf("removed", { room: "lobby" })[1], /A moderator removed you from #lobby/);
  const at = (info, now) => statusOf("reconnecting", { due: 10000, ...info }, now)[1];
  assert.equal(at({ code: 1006, wasJoined: false, again: false }, 7600), "Cannot reach the chat server. Reconnecting in 3 s…");
  assert.equal(at({ code: 1006, wasJoined: true, again: true }, 9500), "Connection lost. Reconnecting in 1 s…");
  assert.equal(at({ code: 1006, wasJoined: false, again: true }, 10000), "Connection lost. Reconnecting…");
  assert.equal(at({ code: 1001 }, 0), "The server is restarting. Reconnecting in 10 s…");
  assert.equal(at({ code: 1012 }, 9000), "The server is restarting. Reconnecting in 1 s…");
  assert.equal(at({ code: 1008, reason: "flood" }, 9000), "The server refused the connection (flood). Reconnecting in 1 s…");
  assert.equal(at({ code: 1008, reason: "" }, 9000), "The server refused the connection. Reconnecting in 1 s…");
  assert.equal(at({ code: 1013, again: true }, 9000), "This page fell behind. Reconnecting in 1 s…");
  assert.equal(at({ error: "bad URL" }, 9000), "Could not open a WebSocket: bad URL Reconnecting in 1 s…");
});

test("the room picker: lobby first, then by name, with online counts; bad names left out", () => {
  const check = (r) => (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(r) ? null : "bad");
  const rooms = [{ room: "python", online: 2 }, { room: "Art", online: 0 }, { room: "bad room", online: 5 },
    { room: "lobby", online: 1 }, null, { room: 7 }];
  assert.deepEqual(roomOptions(rooms, ["garden", null, "python"], check, "lobby"), [
    { value: "lobby", label: "lobby (1 online)" },
    { value: "Art", label: "Art" },
    { value: "garden", label: "garden" },
    { value: "python", label: "python (2 online)" },
  ]);
  assert.deepEqual(roomOptions([], [], check, "lobby"), [{ value: "lobby", label: "lobby" }]);
});

test("the title while the tab is hidden counts new messages and mentions", () => {
  assert.equal(titleWith("Chat", 0, 0), "Chat");
  assert.equal(titleWith("Chat", 3, 0), "(3) Chat");
  assert.equal(titleWith("Chat", 3, 1), "(3 · @1) Chat");
});

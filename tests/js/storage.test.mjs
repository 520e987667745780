// assets/chat/storage.js: localStorage that never throws; resume tokens per lower-cased name.
import { test } from "node:test";
import assert from "node:assert/strict";

import { createStorage, tokenKey } from "../../assets/chat/storage.js";

function memory() {
  const map = new Map();
  return {
    map,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => { map.set(k, String(v)); },
    removeItem: (k) => { map.delete(k); },
  };
}

test("tokens are kept per name, whatever its case: a token holds the name in every room", () => {
  const area = memory();
  const store = createStorage(area);
  assert.equal(tokenKey("Alice"), "chat:token:alice");
  store.tokens.set("Alice", "T1");
  assert.equal(store.tokens.get("ALICE"), "T1");
  assert.deepEqual([...area.map], [["chat:token:alice", "T1"]]);
  store.tokens.remove("alice");
  assert.equal(store.tokens.get("Alice"), null);
});

test("name and room; null removes", () => {
  const area = memory();
  const store = createStorage(area);
  store.setName("hana");
  store.setRoom("garden");
  assert.deepEqual([store.name(), store.room()], ["hana", "garden"]);
  assert.deepEqual([...area.map.keys()], ["chat:name", "chat:room"]);
  store.set("chat:room", null);
  assert.equal(store.room(), null);
});

test("no storage, or one that throws (private mode, quota): no memory, no errors", () => {
  const none = createStorage(null);
  none.setName("x");
  assert.equal(none.name(), null);
  const broken = createStorage({
    getItem() { throw new Error("SecurityError"); },
    setItem() { throw new Error("QuotaExceededError"); },
    removeItem() { throw new Error("SecurityError"); },
  });
  broken.tokens.set("a", "b");
  broken.tokens.remove("a");
  assert.equal(broken.tokens.get("a"), null);
});

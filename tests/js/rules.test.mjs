// assets/rules.json and the widget's pre-checks made of it (assets/chat/rules.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { compileRules } from "../../assets/chat/rules.js";

const raw = JSON.parse(readFileSync(new URL("../../assets/rules.json", import.meta.url), "utf8"));
const rules = compileRules(raw);

test("rules.json: the room pattern, the lengths, the forbidden ranges", () => {
  assert.equal(raw.room.pattern, "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,31}");
  assert.equal(raw.room.default, "lobby");
  assert.equal(raw.name.max_length, 32);
  assert.equal(raw.text.max_length, 2000);
  for (const r of raw.name.forbidden) {
    assert.match(r.from, /^U\+[0-9A-F]{4,6}$/);
    assert.match(r.to, /^U\+[0-9A-F]{4,6}$/);
    assert.ok(["control", "bidi", "format"].includes(r.kind), r.kind);
    assert.equal(typeof r.what, "string");
  }
  assert.equal(rules.maxName, 32);
  assert.equal(rules.maxText, 2000);
  assert.equal(rules.defaultRoom, "lobby");
});

test("room names: 1 to 32 of A-Z a-z 0-9 _ - ., starting with a letter or digit", () => {
  for (const ok of ["lobby", "a", "Python3", "x-y_z.w", "9", "a".repeat(32)]) assert.equal(rules.checkRoom(ok), null, ok);
  for (const bad of ["", "no spaces allowed", "_x", "-x", ".x", "a".repeat(33), "café", "a/b", "lobby\n", 42, null]) {
    assert.match(String(rules.checkRoom(bad)), /^Room names are 1 to 32/, String(bad));
  }
});

test("names: at least one character, at most 32 (code points)", () => {
  assert.equal(rules.checkName(""), "Pick a name first.");
  assert.equal(rules.checkName("alice"), null);
  assert.equal(rules.checkName("x".repeat(32)), null);
  assert.equal(rules.checkName("😀".repeat(32)), null, "32 emoji are 64 UTF-16 units but 32 characters");
  assert.equal(rules.checkName("x".repeat(33)), "Names are at most 32 characters.");
  assert.equal(rules.checkName("<img src=y onerror=alert(6)>"), null, "markup is the view's business, not a name rule");
  assert.equal(rules.checkName("Zoë 李 👩‍💻"), null, "ZWJ in an emoji is the server's to judge");
});

test("names never hold controls, bidi controls or invisible formatting", () => {
  const control = "Names cannot hold control characters.";
  for (const ch of ["\u0000", "\t", "\n", "\u001b", "\u001f", "\u007f", "\u0085", "\u009f"]) {
    assert.equal(rules.checkName("a" + ch + "b"), control, JSON.stringify(ch));
  }
  for (const cp of [0x061c, 0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069]) {
    const hex = cp.toString(16).toUpperCase().padStart(4, "0");
    assert.equal(rules.checkName("bob" + String.fromCodePoint(cp)), `Names cannot hold text direction characters (U+${hex}).`);
  }
  assert.equal(rules.checkName("\u202Eevil"), "Names cannot hold text direction characters (U+202E).");
  for (const cp of [0x200b, 0x200c, 0x2028, 0x2060, 0xfeff]) {
    assert.match(rules.checkName("a" + String.fromCodePoint(cp) + "b"), /^Names cannot hold invisible formatting/);
  }
  assert.equal(rules.checkName("a\u200db"), null, "U+200D: the server decides (emoji sequences keep it)");
});

test("blank texts are not sent; long ones are the server's to refuse (max_text is a setting)", () => {
  assert.ok(rules.isBlank(""));
  assert.ok(rules.isBlank(" \n\t "));
  assert.ok(!rules.isBlank(" x "));
  assert.ok(!rules.isBlank("x".repeat(5000)));
});

test("a broken rules file is refused loudly", () => {
  assert.throws(() => compileRules(null), /not an object/);
  assert.throws(() => compileRules({ ...raw, room: {} }), /room.pattern/);
  assert.throws(() => compileRules({ ...raw, name: { ...raw.name, max_length: 0 } }), /name.max_length/);
  assert.throws(() => compileRules({ ...raw, name: { ...raw.name, forbidden: [{ from: "202E", to: "U+202E" }] } }), /code point/);
  assert.throws(() => compileRules({ ...raw, name: { ...raw.name, forbidden: [{ from: "U+0010", to: "U+0001" }] } }), /empty range/);
});

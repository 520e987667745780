/**
 * The widget's pre-checks of room names, user names and message texts, compiled from
 * assets/rules.json (the file the server reads too). The server has the full rules
 * (PRECIS names, chat_core/names.py); these only catch in the page what it would refuse
 * anyway, with a message next to the field instead of a round trip.
 *
 * No DOM, no I/O: main.js fetches the JSON and hands it to compileRules().
 */

/** "U+202E" -> 0x202E */
function codePoint(text) {
  const m = /^U\+([0-9A-Fa-f]{4,6})$/.exec(String(text));
  if (!m) throw new Error(`rules.json: not a code point: ${JSON.stringify(text)}`);
  return parseInt(m[1], 16);
}

function hex(cp) {
  return "U+" + cp.toString(16).toUpperCase().padStart(4, "0");
}

function positiveInt(value, what) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`rules.json: ${what} must be a positive integer`);
  return value;
}

const NAME_PROBLEMS = {
  control: () => "Names cannot hold control characters.",
  bidi: (cp) => `Names cannot hold text direction characters (${hex(cp)}).`,
  format: (cp) => `Names cannot hold invisible formatting characters (${hex(cp)}).`,
};

/**
 * The checks of one rules.json object: {checkName, checkRoom, isBlank, maxName, maxText,
 * cidWindowMs, typingEveryMs, typingShownMs, defaultRoom}. checkName and checkRoom return null for a value that may be sent, else one
 * sentence for the user.
 */
export function compileRules(raw) {
  if (!raw || typeof raw !== "object") throw new Error("rules.json: not an object");
  const room = raw.room || {};
  const name = raw.name || {};
  const text = raw.text || {};
  if (typeof room.pattern !== "string") throw new Error("rules.json: room.pattern must be a string");
  // The server matches the whole name (re.fullmatch); so does this.
  const roomRe = new RegExp(`^(?:${room.pattern})$`);
  const maxName = positiveInt(name.max_length, "name.max_length");
  const maxText = positiveInt(text.max_length, "text.max_length");
  const cid = raw.cid || {};
  const typing = raw.typing || {};
  const cidWindowMs = positiveInt(cid.window, "cid.window") * 1000;
  const typingEveryMs = positiveInt(typing.every, "typing.every") * 1000;
  const typingShownMs = positiveInt(typing.shown_for, "typing.shown_for") * 1000;
  const forbidden = (Array.isArray(name.forbidden) ? name.forbidden : []).map((r) => {
    const lo = codePoint(r.from);
    const hi = codePoint(r.to === undefined ? r.from : r.to);
    if (hi < lo) throw new Error(`rules.json: empty range ${r.from}..${r.to}`);
    return { lo, hi, kind: NAME_PROBLEMS[r.kind] ? r.kind : "format" };
  });

  function forbiddenIn(value) {
    for (const ch of value) {
      const cp = ch.codePointAt(0);
      for (const r of forbidden) if (cp >= r.lo && cp <= r.hi) return { cp, kind: r.kind };
    }
    return null;
  }

  /** A name typed by the user (already trimmed), or one remembered from an earlier visit. */
  function checkName(value) {
    const n = Array.from(value).length;
    if (n < 1) return "Pick a name first.";
    if (n > maxName) return `Names are at most ${maxName} characters.`;
    const bad = forbiddenIn(value);
    return bad ? NAME_PROBLEMS[bad.kind](bad.cp) : null;
  }

  function checkRoom(value) {
    return typeof value === "string" && roomRe.test(value) ? null :
      "Room names are 1 to 32 letters, digits, _ - or ., starting with a letter or digit.";
  }

  /** Nothing to send. (Longer than maxText is left to the server: its max_text is a setting.) */
  function isBlank(value) {
    return !String(value).trim();
  }

  return {
    checkName,
    checkRoom,
    isBlank,
    maxName,
    maxText,
    cidWindowMs, // a resend within it is not stored twice (docs/protocol.md, msg)
    typingEveryMs, // the server relays one typing per connection per this
    typingShownMs, // how long "… is typing" stays without a new one
    defaultRoom: typeof room.default === "string" && roomRe.test(room.default) ? room.default : "lobby",
  };
}

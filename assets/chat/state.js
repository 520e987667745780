/**
 * The protocol state of one widget, as a pure reducer: reduce(state, event) returns
 * {state, effects}. No DOM, no sockets, no timers; the state given is never changed.
 *
 * Events are the frames from the server ({type: "frame", frame}) and what the
 * connection and the user do:
 *   {type: "want", user?, room?}      the user picked a name and/or a room
 *   {type: "fix_user", user}          the name comes from the server (login): not remembered
 *   {type: "opening"}                 a new socket is being opened
 *   {type: "join_sent", payload}      a join went out: history frames follow until its welcome
 *   {type: "join_failed"}             that join failed and the connection will try again
 *   {type: "refused", frame}          that join was refused for good (an error frame)
 *   {type: "closed"}                  the socket closed
 *   {type: "compose", text, cid, now} the person sent a message (it waits in `outgoing` until stored)
 *   {type: "retry", cid} / {type: "discard", cid}   what to do with a refused one
 *   {type: "tick", now}               time passed ("… is typing" runs out)
 * Frames may carry `now` (ms) too.
 *
 * Effects are plain objects for the widget to carry out (see widget.js, apply()):
 *   clear, mark_own {me}, busy {on}, messages {items, countUnread, replay?}, gap {after, first},
 *   scroll_bottom, system {text, ts}, users {names, me, online, room}, remember {name?, room},
 *   welcome {user, room}, error {text}, clear_error, restore {user|null, room}, focus_name,
 *   join_again, composer {enabled}, degraded {on} (the server cannot store messages),
 *   send_msg {cid, text}, outgoing {items} (the unsent ones shown), save_outgoing {list},
 *   typing {names} (who is typing now), limits {maxText},
 *   edited {id, text, ts}, deleted {id}, reacted {id, emoji, user, on, mine} (changes to a message shown).
 */

// (with this file's own ?v=, as main.js loads every module: one version of each runs together)
const out = await import(new URL("./outgoing.js" + new URL(import.meta.url).search, import.meta.url).href);

export const TYPING_SHOWN_MS = 6000; // the default of rules.typingShownMs

export function initialState({ user = "", room = "lobby", fixedUser = false, outgoing = [],
  cidWindowMs = out.CID_WINDOW_MS, typingShownMs = TYPING_SHOWN_MS } = {}) {
  return {
    wanted: { user, room }, // where the user wants to be
    fixedUser, // the name comes from the server
    me: null, // the name the server accepted
    viewRoom: null, // the room whose messages the list shows
    everJoined: false, // a welcome came, on any socket
    joined: false, // a welcome came on the current socket
    pending: null, // msg payloads between our join and its welcome
    sent: null, // the payload of the last join sent
    ids: new Set(), // message ids in the list: each shown exactly once
    lastId: 0, // the newest message id seen in viewRoom
    users: new Map(), // lower-cased name -> name
    online: 0,
    outgoing: out.clean(outgoing), // messages written and not yet seen stored (outgoing.js)
    typing: new Map(), // lower-cased name -> {name, until}: who is typing in viewRoom
    cidWindowMs,
    typingShownMs,
  };
}

/**
 * Whether `text` mentions `me`: "@" + the name (any letter case), not followed by more
 * of a word ("@al" is not "@alice"). Names may hold spaces and any script.
 */
export function mentions(text, me) {
  if (!me || typeof text !== "string") return false;
  const hay = text.toLowerCase();
  const needle = "@" + me.toLowerCase();
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) {
    const after = hay.slice(i + needle.length, i + needle.length + 2);
    const before = i > 0 ? hay[i - 1] : " ";
    if (!/[\p{L}\p{N}_]/u.test(before) && !/^[\p{L}\p{N}_]/u.test(after)) return true;
  }
  return false;
}

/** A msg payload's reactions as [[emoji, [names]]], whatever the server sent. */
function reactionsOf(raw) {
  if (!raw || typeof raw !== "object") return [];
  return Object.keys(raw).filter((e) => Array.isArray(raw[e]))
    .map((e) => [e, raw[e].filter((n) => typeof n === "string")]).filter(([, names]) => names.length);
}

/** Case-insensitive order of names. */
export function byName(a, b) {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

function payloadOf(frame) {
  return frame && frame.payload && typeof frame.payload === "object" ? frame.payload : {};
}

function errorText(frame) {
  const code = (frame && frame.code) || "";
  return typeof frame.message === "string" && frame.message ? frame.message : "Error: " + code;
}

function usersEffect(s) {
  const names = Array.from(s.users.values()).sort(byName);
  return { type: "users", names, me: s.me, online: Math.max(s.online, names.length), room: s.viewRoom };
}

/** Add msg payloads not seen yet, in the order given (`replay`: what a reconnect brought back). */
function addMessages(s, payloads, countUnread, fx, replay = false) {
  let ids = s.ids;
  const items = [];
  for (const p of payloads) {
    const id = p.id;
    if (typeof id !== "number" || ids.has(id)) continue;
    if (ids === s.ids) ids = new Set(s.ids);
    ids.add(id);
    const user = typeof p.user === "string" ? p.user : "?";
    const text = typeof p.text === "string" ? p.text : "";
    items.push({
      id,
      user,
      text,
      ts: typeof p.ts === "number" ? p.ts : null,
      own: user === s.me,
      mention: user !== s.me && !p.deleted && mentions(text, s.me), // highlighted, counted, maybe notified
      append: id > s.lastId, // newest so far: goes at the end; else in id order
      edited: typeof p.edited === "number" ? p.edited : null,
      deleted: p.deleted === true,
      reactions: reactionsOf(p.reactions),
      bot: p.bot === true, // sent by a bot (a name the server keeps for one): shown with a badge
    });
    if (id > s.lastId) s.lastId = id;
  }
  s.ids = ids;
  if (items.length) fx.push(replay ? { type: "messages", items, countUnread, replay } : { type: "messages", items, countUnread });
  confirmSent(s, payloads, fx);
}

/** Our messages that came back stored leave `outgoing`; their writers stop typing. */
function confirmSent(s, payloads, fx) {
  let list = s.outgoing;
  let typing = s.typing;
  for (const p of payloads) {
    if (typeof p.cid === "string" && p.user === s.me) list = out.remove(list, p.cid);
    const key = typeof p.user === "string" ? p.user.toLowerCase() : "";
    if (typing.has(key)) {
      if (typing === s.typing) typing = new Map(typing);
      typing.delete(key);
    }
  }
  if (typing !== s.typing) setTyping(s, typing, fx);
  if (list !== s.outgoing) setOutgoing(s, list, fx);
}

function setOutgoing(s, list, fx) {
  s.outgoing = list;
  fx.push({ type: "outgoing", items: out.shown(list, s.me, s.viewRoom) });
  fx.push({ type: "save_outgoing", list });
}

function setTyping(s, typing, fx) {
  s.typing = typing;
  fx.push({ type: "typing", names: Array.from(typing.values()).map((t) => t.name).sort(byName) });
}

function sendDue(s, now, fx) {
  const { list, send } = out.due(s.outgoing, s.me, s.viewRoom, now, s.cidWindowMs);
  for (const e of send) fx.push({ type: "send_msg", cid: e.cid, text: e.text });
  if (list !== s.outgoing || s.outgoing.length) setOutgoing(s, list, fx);
}

function setUsers(s, names, online, fx) {
  const users = new Map();
  for (const n of names) if (typeof n === "string") users.set(n.toLowerCase(), n);
  s.users = users;
  s.online = typeof online === "number" ? online : users.size;
  fx.push(usersEffect(s));
}

function onWelcome(s, p, fx, now) {
  const history = s.pending || [];
  const sent = s.sent || {};
  const reconnect = s.everJoined && !s.joined && s.viewRoom === p.room;
  s.pending = null;
  // A new room, or a server whose history no longer has what we saw: start the list afresh.
  const fresh = s.viewRoom !== p.room ||
    (typeof sent.since === "number" && typeof p.last_id === "number" && p.last_id < sent.since);
  if (fresh) {
    s.ids = new Set();
    s.lastId = 0;
    s.users = new Map();
    s.online = 0;
    fx.push({ type: "clear" });
  }
  if (s.typing.size) setTyping(s, new Map(), fx);
  s.viewRoom = p.room;
  if (s.me !== p.user) {
    s.me = p.user;
    fx.push({ type: "mark_own", me: p.user });
  }
  s.joined = true;
  s.everJoined = true;
  s.wanted = { user: p.user, room: p.room };
  fx.push(s.fixedUser ? { type: "remember", room: p.room } : { type: "remember", name: p.user, room: p.room });

  fx.push({ type: "busy", on: true });
  const here = history.filter((m) => !m.room || m.room === p.room);
  addMessages(s, here.filter((m) => !m.change), !fresh, fx, reconnect && !fresh);
  for (const c of here.filter((m) => m.change)) onChange(s, c.change, { room: p.room, ...c }, fx); // in id order
  if (p.gap && typeof p.gap.first === "number") fx.push({ type: "gap", after: p.gap.after, first: p.gap.first });
  if (typeof p.last_id === "number" && p.last_id > s.lastId) s.lastId = p.last_id;
  fx.push({ type: "busy", on: false });
  if (fresh) fx.push({ type: "scroll_bottom" });
  if (reconnect) fx.push({ type: "system", text: "Reconnected.", ts: p.ts });

  setUsers(s, Array.isArray(p.users) ? p.users : [], p.online, fx);
  fx.push({ type: "welcome", user: p.user, room: p.room });
  fx.push({ type: "clear_error" });
  fx.push({ type: "composer", enabled: true });
  if (typeof p.max_text === "number" && p.max_text > 0) fx.push({ type: "limits", maxText: p.max_text });
  fx.push(rulesEffect(p));
  sendDue(s, now, fx); // what the replay did not bring back stored: again, same cid (never doubled)
}

function onNotice(s, kind, p, fx) {
  if (s.pending || (p.room && p.room !== s.viewRoom) || typeof p.user !== "string") return;
  const user = p.user;
  const key = user.toLowerCase();
  const users = new Map(s.users);
  if (kind === "join") {
    if (!users.has(key)) s.online += 1;
    users.set(key, user);
    if (user !== s.me) fx.push({ type: "system", text: user + " joined", ts: p.ts });
  } else {
    if (users.has(key) || s.online > users.size) s.online = Math.max(0, s.online - 1);
    users.delete(key);
    fx.push({ type: "system", text: user + " left", ts: p.ts });
    if (s.typing.has(key)) {
      const typing = new Map(s.typing);
      typing.delete(key);
      setTyping(s, typing, fx);
    }
  }
  s.users = users;
  fx.push(usersEffect(s));
}

/** Big rooms: coalesced changes instead of a line per join or leave. */
function onPresence(s, p, fx) {
  if (s.pending || (p.room && p.room !== s.viewRoom)) return;
  const users = new Map(s.users);
  for (const n of Array.isArray(p.joined) ? p.joined : []) if (typeof n === "string") users.set(n.toLowerCase(), n);
  for (const n of Array.isArray(p.left) ? p.left : []) if (typeof n === "string") users.delete(n.toLowerCase());
  s.users = users;
  if (typeof p.online === "number") s.online = p.online;
  fx.push(usersEffect(s));
}

/** An error that is not the answer to a join (the connection sorts those out). */
function onError(s, frame, fx) {
  const code = frame.code || "";
  if (code === "not_joined") {
    if (typeof frame.cid === "string") s.outgoing = out.set(s.outgoing, frame.cid, { state: "waiting" });
    fx.push({ type: "join_again" }); // (sent again after its welcome)
    return;
  }
  if (code === "store_unavailable") fx.push({ type: "degraded", on: true }); // the server cannot store now
  const entry = typeof frame.cid === "string" ? s.outgoing.find((e) => e.cid === frame.cid) : undefined;
  if (!entry) {
    fx.push({ type: "error", text: errorText(frame) });
    return;
  }
  // A refused message: the error goes beside it (or it waits for the next connection).
  const again = out.RESEND_ON_RECONNECT.indexOf(code) >= 0;
  setOutgoing(s, out.set(s.outgoing, entry.cid, again ? { state: "waiting", error: "" } :
    { state: "failed", error: errorText(frame) }), fx);
}

/** Our join was refused for good. */
function onRefused(s, frame, fx) {
  const code = frame.code || "";
  s.pending = null;
  fx.push({ type: "error", text: errorText(frame) });
  if (s.joined) { // a room switch that failed: we are still where we were
    s.wanted = { user: s.me, room: s.viewRoom };
    fx.push({ type: "restore", user: s.fixedUser ? null : s.me, room: s.viewRoom });
    return;
  }
  if (code === "bad_name" || code === "name_taken") fx.push({ type: "focus_name" });
}

/** An edit, delete or reaction (an entry of the room's sequence) to a message in the list. */
function onChange(s, kind, p, fx) {
  if (p.room !== s.viewRoom || typeof p.id !== "number" || typeof p.target !== "number") return;
  if (p.id > s.lastId) s.lastId = p.id; // (ids count changes too: `since` is the newest of any entry)
  if (!s.ids.has(p.target)) return; // a message this list does not have
  if (kind === "edit" && typeof p.text === "string") {
    fx.push({ type: "edited", id: p.target, text: p.text, ts: typeof p.ts === "number" ? p.ts : null });
  } else if (kind === "delete") {
    fx.push({ type: "deleted", id: p.target });
  } else if (kind === "react" && typeof p.emoji === "string" && typeof p.user === "string") {
    fx.push({ type: "reacted", id: p.target, emoji: p.emoji, user: p.user, on: p.on === true, mine: p.user === s.me });
  }
}

function onTyping(s, p, now) {
  if (s.pending || p.room !== s.viewRoom || typeof p.user !== "string" || p.user === s.me) return null;
  const typing = new Map(s.typing);
  typing.set(p.user.toLowerCase(), { name: p.user, until: now + s.typingShownMs });
  return typing;
}

/** The room's rules as moderators set them (welcome, or a `room` frame): the topic line. */
function rulesEffect(p) {
  return {
    type: "rules",
    topic: typeof p.topic === "string" ? p.topic : "",
    slow: typeof p.slow === "number" && p.slow > 0 ? p.slow : 0,
    locked: p.locked === true,
  };
}

function onFrame(s, frame, fx, now) {
  const p = payloadOf(frame);
  switch (frame.type) {
    case "msg":
      if (s.pending) { s.pending = s.pending.concat([p]); return; }
      if (p.room && p.room !== s.viewRoom) return;
      addMessages(s, [p], true, fx);
      if (p.user === s.me) fx.push({ type: "clear_error" }, { type: "degraded", on: false });
      return;
    case "welcome":
      onWelcome(s, p, fx, now);
      return;
    case "typing": {
      const typing = onTyping(s, p, now);
      if (typing) setTyping(s, typing, fx);
      return;
    }
    case "edit":
    case "delete":
    case "react":
      if (s.pending) { s.pending = s.pending.concat([{ change: frame.type, ...p }]); return; }
      onChange(s, frame.type, p, fx);
      return;
    case "join":
    case "leave":
      onNotice(s, frame.type, p, fx);
      return;
    case "presence":
      onPresence(s, p, fx);
      return;
    case "room":
      if (p.room === s.viewRoom) fx.push(rulesEffect(p));
      return;
    case "error":
      onError(s, frame, fx);
      return;
    default:
      return; // pong, and frame types this widget does not know
  }
}

/** The socket is gone: what was in flight waits for the next one; the box stays usable
 * once a room was joined (what is written then waits as well). */
function unsentAgain(s, fx) {
  fx.push({ type: "composer", enabled: s.everJoined });
  const list = out.unsent(s.outgoing);
  if (list !== s.outgoing) setOutgoing(s, list, fx);
  if (s.typing.size) setTyping(s, new Map(), fx);
}

function onCompose(s, event, fx) {
  if (!s.everJoined || typeof event.text !== "string" || typeof event.cid !== "string") return;
  const ready = s.joined && !s.pending;
  const entry = { cid: event.cid, text: event.text, room: s.viewRoom, user: s.me, ts: event.now || 0,
    state: ready ? "sending" : "waiting" };
  setOutgoing(s, out.add(s.outgoing, entry), fx);
  if (ready) fx.push({ type: "send_msg", cid: entry.cid, text: entry.text });
}

export function reduce(state, event) {
  const s = { ...state };
  const fx = [];
  switch (event && event.type) {
    case "frame":
      if (event.frame && typeof event.frame === "object") onFrame(s, event.frame, fx, event.now || 0);
      break;
    case "want":
      s.wanted = {
        user: event.user !== undefined ? event.user : s.wanted.user,
        room: event.room !== undefined ? event.room : s.wanted.room,
      };
      break;
    case "fix_user":
      s.fixedUser = true;
      s.wanted = { ...s.wanted, user: event.user };
      break;
    case "opening":
      s.joined = false;
      s.pending = null;
      unsentAgain(s, fx);
      break;
    case "join_sent":
      s.pending = [];
      s.sent = event.payload || {};
      break;
    case "join_failed":
      s.pending = null;
      break;
    case "refused":
      onRefused(s, event.frame || {}, fx);
      break;
    case "closed":
      s.joined = false;
      s.pending = null;
      unsentAgain(s, fx);
      break;
    case "compose":
      onCompose(s, event, fx);
      break;
    case "retry": {
      const entry = s.outgoing.find((e) => e.cid === event.cid);
      if (!entry) break;
      const ready = s.joined && !s.pending;
      setOutgoing(s, out.set(s.outgoing, entry.cid, { state: ready ? "sending" : "waiting", error: "" }), fx);
      if (ready) fx.push({ type: "send_msg", cid: entry.cid, text: entry.text });
      break;
    }
    case "discard":
      setOutgoing(s, out.remove(s.outgoing, event.cid), fx);
      break;
    case "tick": {
      const now = event.now || 0;
      if (!Array.from(s.typing.values()).some((t) => t.until <= now)) break;
      setTyping(s, new Map(Array.from(s.typing).filter(([, t]) => t.until > now)), fx);
      break;
    }
    default:
      return { state, effects: [] };
  }
  return { state: s, effects: fx };
}

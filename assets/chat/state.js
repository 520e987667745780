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
 *   {type: "text_sent", text}         a message went out (given back if the server refuses it)
 *
 * Effects are plain objects for the widget to carry out (see widget.js, apply()):
 *   clear, mark_own {me}, busy {on}, messages {items, countUnread}, gap {after, first},
 *   scroll_bottom, system {text, ts}, users {names, me, online, room}, remember {name?, room},
 *   welcome {user, room}, error {text}, clear_error, restore {user|null, room}, focus_name,
 *   join_again, give_back {text}, composer {enabled}, degraded {on} (the server cannot store messages).
 */

/** Error codes after which a message was not sent: the text goes back into the box. */
export const NOT_SENT = ["text_too_long", "empty_text", "store_unavailable", "rate_limited", "shutting_down"];

export function initialState({ user = "", room = "lobby", fixedUser = false } = {}) {
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
    lastSent: null, // the last text sent
  };
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

/** Add msg payloads not seen yet, in the order given. */
function addMessages(s, payloads, countUnread, fx) {
  let ids = s.ids;
  const items = [];
  for (const p of payloads) {
    const id = p.id;
    if (typeof id !== "number" || ids.has(id)) continue;
    if (ids === s.ids) ids = new Set(s.ids);
    ids.add(id);
    const user = typeof p.user === "string" ? p.user : "?";
    items.push({
      id,
      user,
      text: typeof p.text === "string" ? p.text : "",
      ts: typeof p.ts === "number" ? p.ts : null,
      own: user === s.me,
      append: id > s.lastId, // newest so far: goes at the end; else in id order
    });
    if (id > s.lastId) s.lastId = id;
  }
  s.ids = ids;
  if (items.length) fx.push({ type: "messages", items, countUnread });
}

function setUsers(s, names, online, fx) {
  const users = new Map();
  for (const n of names) if (typeof n === "string") users.set(n.toLowerCase(), n);
  s.users = users;
  s.online = typeof online === "number" ? online : users.size;
  fx.push(usersEffect(s));
}

function onWelcome(s, p, fx) {
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
  addMessages(s, history.filter((m) => !m.room || m.room === p.room), !fresh, fx);
  if (p.gap && typeof p.gap.first === "number") fx.push({ type: "gap", after: p.gap.after, first: p.gap.first });
  if (typeof p.last_id === "number" && p.last_id > s.lastId) s.lastId = p.last_id;
  fx.push({ type: "busy", on: false });
  if (fresh) fx.push({ type: "scroll_bottom" });
  if (reconnect) fx.push({ type: "system", text: "Reconnected.", ts: p.ts });

  setUsers(s, Array.isArray(p.users) ? p.users : [], p.online, fx);
  fx.push({ type: "welcome", user: p.user, room: p.room });
  fx.push({ type: "clear_error" });
  fx.push({ type: "composer", enabled: true });
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
    fx.push({ type: "join_again" });
    return;
  }
  if (s.lastSent && NOT_SENT.indexOf(code) >= 0) fx.push({ type: "give_back", text: s.lastSent });
  if (code === "store_unavailable") fx.push({ type: "degraded", on: true }); // the server cannot store now
  fx.push({ type: "error", text: errorText(frame) });
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

function onFrame(s, frame, fx) {
  const p = payloadOf(frame);
  switch (frame.type) {
    case "msg":
      if (s.pending) { s.pending = s.pending.concat([p]); return; }
      if (p.room && p.room !== s.viewRoom) return;
      addMessages(s, [p], true, fx);
      if (p.user === s.me) fx.push({ type: "clear_error" }, { type: "degraded", on: false });
      return;
    case "welcome":
      onWelcome(s, p, fx);
      return;
    case "join":
    case "leave":
      onNotice(s, frame.type, p, fx);
      return;
    case "presence":
      onPresence(s, p, fx);
      return;
    case "error":
      onError(s, frame, fx);
      return;
    default:
      return; // pong, and frame types this widget does not know
  }
}

export function reduce(state, event) {
  const s = { ...state };
  const fx = [];
  switch (event && event.type) {
    case "frame":
      if (event.frame && typeof event.frame === "object") onFrame(s, event.frame, fx);
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
      fx.push({ type: "composer", enabled: false });
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
      fx.push({ type: "composer", enabled: false });
      break;
    case "text_sent":
      s.lastSent = event.text;
      break;
    default:
      return { state, effects: [] };
  }
  return { state: s, effects: fx };
}

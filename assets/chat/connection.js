/**
 * The connection: one WebSocket to "<base>/ws" and the join handshake on it
 * (docs/protocol.md), kept up for as long as the user wants to be in a room.
 *
 * - reconnects after a close with exponential backoff and jitter: about 0.5 s, 1 s,
 *   2 s, ... up to backoffMax (15 s), each delay drawn from [ceiling/2, ceiling];
 * - sends `join` on every new socket, with `since` (the last message id seen) when it
 *   goes back to the room of its last welcome, and the name's resume token;
 * - treats a join without welcome within joinTimeout (10 s) as a broken connection;
 * - retries a join refused with bad_token (without the token), with store_unavailable
 *   (the server cannot read history now) after a backoff, with name_taken while
 *   rejoining under its own name (most likely its own ghost), or with rate_limited;
 * - stops for good on close code 4001 (the name was taken over by a newer tab);
 * - carries the page's ticket from api/me as ?ticket= (logins).
 *
 * Its state is one name, `connection.state`:
 *   "idle"          not wanted in a room (the start, or a join was refused)
 *   "connecting"    a socket is opening
 *   "joining"       the socket is open, the join is sent, no welcome yet
 *   "connected"     the socket has a welcome (a room switch may be in flight)
 *   "reconnecting"  waiting to try again (after a close, or before joining again)
 *   "replaced"      closed with 4001; waits for join()
 *   "removed"       closed with 4003 (a moderator); waits for join()
 *   "stopped"       stop() was called (the widget is gone); nothing happens any more
 * Each change is reported as {type: "state", state, info}.
 *
 * No DOM. The clock, the WebSocket constructor and the random source are options, so
 * tests can drive it with fakes.
 */

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 15000;
export const JOIN_TIMEOUT_MS = 10000;
export const REPLACED = 4001; // close code: our name was reclaimed by a newer connection
export const KICKED = 4003; // close code: a moderator removed us (kicked, or banned)
export const NO_WELCOME = 4000; // close code we use when a join gets no answer
const OPEN = 1; // WebSocket.OPEN

const realClock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
  now: () => Date.now(),
};

/** The socket's URL, next to `base`; with logins, the page session's ticket (from api/me). */
export function wsUrl(base, ticket) {
  const url = new URL("ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = ticket ? "?ticket=" + encodeURIComponent(ticket) : "";
  url.hash = "";
  return url.href;
}

/** Wait before reconnect attempt `attempt` (1, 2, ...): in [c/2, c], c = min(max, base * 2^(attempt-1)). */
export function backoffDelay(attempt, random = Math.random, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS) {
  const ceiling = Math.min(max, base * Math.pow(2, attempt - 1));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/** Wait before joining again after name_taken or rate_limited: min(max, base * 2^attempt), no jitter. */
export function retryDelay(attempt, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS) {
  return Math.min(max, base * Math.pow(2, attempt));
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}

function close(ws, code, reason) {
  try { ws.close(code, reason); } catch (e) { /* already closed */ }
}

export class Connection {
  /**
   * options:
   *   base         URL the socket's "ws" is resolved against (the page's base)
   *   target()     {user, room} to join, asked at every join
   *   lastSeen()   the last message id shown (sent as `since` when going back to the same room)
   *   tokens       {get(user), set(user, token), remove(user)}: resume tokens per name
   *   onEvent(ev)  {type: "state"|"opening"|"join_sent"|"join_failed"|"frame"|"refused"|"closed", ...}
   *   alive()      false once the widget left the page: the connection stops instead of going on
   *   ticket       ?ticket= for the socket (also setTicket)
   *   WebSocket, clock {setTimeout, clearTimeout, now}, random: the outside world
   *   backoffBase, backoffMax, joinTimeout (ms)
   */
  constructor(options = {}) {
    this.base = options.base;
    this.target = options.target || (() => null);
    this.lastSeen = options.lastSeen || (() => 0);
    this.tokens = options.tokens || { get: () => null, set() {}, remove() {} };
    this.onEvent = options.onEvent || (() => {});
    this.alive = options.alive || (() => true);
    this.ticket = options.ticket || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.clock = options.clock || realClock;
    this.random = options.random || Math.random;
    this.backoffBase = options.backoffBase || BACKOFF_BASE_MS;
    this.backoffMax = options.backoffMax || BACKOFF_MAX_MS;
    this.joinTimeout = options.joinTimeout || JOIN_TIMEOUT_MS;

    this.state = "idle";
    this.info = {};
    this.socket = null; // {ws, welcomed: a welcome came on it, join: the join payload in flight}
    this.welcomed = null; // {user, room} of the last welcome, on any socket
    this.attempt = 0; // reconnects (and join retries) since the last welcome
    this.timer = null; // the reconnect or join-retry timer
    this.joinTimer = null;
  }

  /** True while the connection tries to be (or is) in a room. */
  get active() {
    return this.state === "connecting" || this.state === "joining" ||
      this.state === "connected" || this.state === "reconnecting";
  }

  setTicket(ticket) {
    this.ticket = ticket || null;
  }

  /** Be in target(): on the open socket (a room switch), else on a new one. */
  join() {
    if (this.state === "stopped") return;
    if (this.socket && this.socket.ws.readyState === OPEN) this.sendJoin();
    else this.connect();
  }

  /** Back online or back in the tab: do not sit out the rest of the backoff. */
  wake() {
    if (this.state === "reconnecting" && !this.socket) this.connect();
  }

  /** Send a frame on the open socket; false if there is none. */
  send(frame) {
    const s = this.socket;
    if (!s || s.ws.readyState !== OPEN) return false;
    s.ws.send(JSON.stringify(frame));
    return true;
  }

  /** For good: the widget is gone. */
  stop() {
    if (this.state === "stopped") return;
    this.dropSocket("widget removed");
    this.setState("stopped");
  }

  // --- inside ----------------------------------------------------------------

  emit(event) {
    this.onEvent(event);
  }

  setState(state, info = {}) {
    this.state = state;
    this.info = info;
    this.emit({ type: "state", state, info });
  }

  /** Timers off, and the current socket (if any) let go and closed. */
  dropSocket(reason) {
    this.clearTimer();
    this.clearJoinTimer();
    if (this.socket) {
      const { ws } = this.socket;
      this.socket = null;
      detach(ws);
      close(ws, 1000, reason);
    }
  }

  clearTimer() {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  clearJoinTimer() {
    if (this.joinTimer !== null) this.clock.clearTimeout(this.joinTimer);
    this.joinTimer = null;
  }

  connect() {
    if (this.state === "stopped") return;
    this.dropSocket("reconnecting");
    this.emit({ type: "opening" });
    this.setState("connecting", { again: !!this.welcomed });
    let ws;
    try {
      ws = new this.WebSocket(wsUrl(this.base, this.ticket));
    } catch (e) {
      this.scheduleReconnect({ error: String(e && e.message || e) });
      return;
    }
    const socket = { ws, welcomed: false, join: null };
    this.socket = socket;
    ws.onopen = () => { if (this.socket === socket) this.sendJoin(); };
    ws.onmessage = (ev) => {
      if (this.socket !== socket) return;
      if (!this.alive()) { this.stop(); return; }
      let frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (frame && typeof frame === "object" && !Array.isArray(frame)) this.onFrame(frame, socket);
    };
    ws.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onClose(ev || {}, socket);
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  /** The join for target(), on the current socket. */
  sendJoin() {
    const t = this.target();
    const socket = this.socket;
    if (!t || !t.user || !socket) return;
    const payload = { user: t.user, room: t.room };
    // Back in the room of the last welcome: ask only for what was not seen.
    if (this.welcomed && this.welcomed.room === t.room) payload.since = Number(this.lastSeen()) || 0;
    const token = this.tokens.get(t.user);
    if (token) payload.token = token;
    this.clearTimer(); // a pending retry is superseded by this join
    this.emit({ type: "join_sent", payload });
    if (!this.send({ type: "join", payload })) return;
    socket.join = payload;
    if (!(socket.welcomed && this.state === "connected")) {
      this.setState("joining", { again: !!this.welcomed, retry: this.info.retry || null });
    }
    this.clearJoinTimer();
    this.joinTimer = this.clock.setTimeout(() => {
      this.joinTimer = null;
      if (this.socket !== socket || !socket.join) return;
      // no welcome: treat the connection as broken and start over
      this.socket = null;
      detach(socket.ws);
      close(socket.ws, NO_WELCOME, "no welcome");
      this.onClose({ code: NO_WELCOME, reason: "" }, socket);
    }, this.joinTimeout);
  }

  onFrame(frame, socket) {
    if (frame.type === "welcome") {
      const p = frame.payload && typeof frame.payload === "object" ? frame.payload : {};
      this.clearJoinTimer();
      socket.join = null;
      socket.welcomed = true;
      if (typeof p.user === "string" && typeof p.room === "string") this.welcomed = { user: p.user, room: p.room };
      this.attempt = 0;
      if (p.token && typeof p.user === "string") this.tokens.set(p.user, String(p.token));
      this.emit({ type: "frame", frame });
      this.setState("connected", { user: p.user, room: p.room });
      return;
    }
    if (frame.type === "error" && socket.join) {
      this.onJoinError(frame, socket);
      return;
    }
    this.emit({ type: "frame", frame });
  }

  /** The server refused our join: try again, or give up and say so. */
  onJoinError(frame, socket) {
    this.clearJoinTimer();
    socket.join = null;
    const code = frame.code || "";
    const t = this.target() || {};
    if (code === "bad_token") {
      // not this name's token (any more): the name may well be free without it
      if (t.user) this.tokens.remove(t.user);
      this.emit({ type: "join_failed", code });
      this.sendJoin();
      return;
    }
    const w = this.welcomed;
    const rejoining = !!(w && t.user && w.room === t.room && w.user.toLowerCase() === String(t.user).toLowerCase());
    if ((code === "name_taken" && rejoining) || code === "rate_limited" || code === "store_unavailable") {
      // Most likely our own earlier connection, which the server has not yet seen go.
      this.attempt += 1;
      const delay = retryDelay(this.attempt, this.backoffBase, this.backoffMax);
      this.emit({ type: "join_failed", code });
      this.clearTimer();
      this.setState("reconnecting", { retry: code, delay, due: this.clock.now() + delay, again: !!w });
      this.timer = this.clock.setTimeout(() => {
        this.timer = null;
        if (this.socket) this.sendJoin();
      }, delay);
      return;
    }
    this.emit({ type: "refused", frame, joined: socket.welcomed });
    if (socket.welcomed && w) this.setState("connected", { user: w.user, room: w.room }); // still where we were
    else this.setState("idle", { refused: code });
  }

  onClose(ev, socket) {
    this.clearJoinTimer();
    const wasJoined = socket.welcomed;
    this.emit({ type: "closed", code: ev.code, reason: ev.reason || "" });
    if (this.state === "stopped") return;
    if (!this.active) { // idle: nobody wants this socket
      this.setState("idle");
      return;
    }
    if (ev.code === REPLACED) {
      // The same name joined again elsewhere with our resume token (another tab, or this
      // person on another device): coming back on our own would start a tug of war.
      this.clearTimer();
      const t = this.target() || {};
      this.setState("replaced", { user: (this.welcomed && this.welcomed.user) || t.user });
      return;
    }
    if (ev.code === KICKED) { // coming back by ourselves would undo the moderator's kick
      this.clearTimer();
      this.setState("removed", { room: (this.welcomed && this.welcomed.room) || "" });
      return;
    }
    if (ev.code === 1008) this.attempt = Math.max(this.attempt, 4); // policy: do not hammer
    this.scheduleReconnect({ code: ev.code, reason: ev.reason || "", wasJoined, again: !!this.welcomed });
  }

  scheduleReconnect(info) {
    this.clearTimer();
    this.attempt += 1;
    const delay = backoffDelay(this.attempt, this.random, this.backoffBase, this.backoffMax);
    this.setState("reconnecting", { ...info, delay, due: this.clock.now() + delay });
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (!this.alive()) { this.stop(); return; }
      this.connect();
    }, delay);
  }
}

/**
 * One chat widget: wires the protocol state (state.js), the connection
 * (connection.js), the view (view.js) and storage (storage.js) together, with the
 * pre-checks of rules.js. It holds no protocol logic of its own: user actions become
 * events, events go through the reducer, and the reducer's effects are carried out
 * here (apply).
 *
 * The modules come in as `lib` (see main.js): main.js loads each with the same ?v=
 * cache-busting query as itself, so one version of every file runs together.
 *
 * Options (or attributes on the [data-chat-widget] element):
 *   base / data-base                 where /ws and /api live (default: document.baseURI)
 *   data-user="name"                 a name given by the server: not asked for
 *   data-user-url="url"              JSON {"user": name|null, "ticket": ...} to fetch that name from
 *   backoffMax / data-backoff-max    longest wait between reconnect attempts in ms (default 15000)
 */

const ROOMS_REFRESH_MS = 20000;

function byName(a, b) {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The room picker's entries: the rooms that exist (valid names only, with their online
 * counts), plus `first` (lobby) and `extra` names; `first` on top, the rest by name.
 */
export function roomOptions(rooms, extra, checkRoom, first) {
  const seen = new Map();
  for (const r of rooms || []) {
    if (r && typeof r.room === "string" && !checkRoom(r.room)) seen.set(r.room, r.online | 0);
  }
  for (const name of [first, ...extra]) if (name && !seen.has(name)) seen.set(name, null);
  const names = Array.from(seen.keys()).sort((a, b) => {
    if (a === first) return -1;
    if (b === first) return 1;
    return byName(a, b);
  });
  return names.map((n) => {
    const online = seen.get(n);
    return { value: n, label: online ? `${n} (${online} online)` : n };
  });
}

/** The status line for the connection's state: [data-state, text]. */
export function statusOf(state, info, now, degraded = false) {
  info = info || {};
  const waiting = info.retry === "rate_limited" ? "Joining too often; waiting…" :
    info.retry === "store_unavailable" ? "The chat cannot read its history right now (the server is degraded); retrying…" :
    "Waiting for the previous connection to time out…";
  switch (state) {
    case "connecting":
      return info.again ? ["reconnecting", "Reconnecting…"] : ["connecting", "Connecting…"];
    case "joining":
      if (info.retry) return ["reconnecting", waiting];
      return info.again ? ["reconnecting", "Reconnecting…"] : ["connecting", "Connecting…"];
    case "connected":
      if (degraded) {
        return ["degraded", `Connected as ${info.user} in #${info.room}, but the chat cannot save messages ` +
          "right now (the server is degraded): a message it refused stays below, to send again."];
      }
      return ["connected", `Connected as ${info.user} in #${info.room}.`];
    case "reconnecting": {
      if (info.retry) return ["reconnecting", waiting];
      const secs = Math.max(0, Math.ceil((info.due - now) / 1000));
      return ["reconnecting", closeReason(info) + " Reconnecting" + (secs ? " in " + secs + " s" : "") + "…"];
    }
    case "replaced":
      return ["replaced", `You are now chatting as ${info.user} in another tab or window. ` +
        "Press Join to chat here instead."];
    case "removed":
      return ["replaced", `A moderator removed you from #${info.room}. Press Join to come back ` +
        "(if you are banned, the chat says until when)."];
    default:
      return ["idle", info.refused ? "Not joined." : "Not connected: pick a name and join."];
  }
}

function closeReason(info) {
  if (info.error !== undefined) return "Could not open a WebSocket: " + info.error;
  if (info.code === 1001 || info.code === 1012) return "The server is restarting.";
  if (info.code === 1008) return "The server refused the connection" + (info.reason ? " (" + info.reason + ")" : "") + ".";
  if (info.code === 1013) return "This page fell behind.";
  if (!info.wasJoined && !info.again) return "Cannot reach the chat server.";
  return "Connection lost.";
}

/** The page title while the tab is hidden: how many new messages, and how many mention us. */
export function titleWith(base, unread, mentions) {
  if (!unread) return base;
  return (mentions ? `(${unread} · @${mentions}) ` : `(${unread}) `) + base;
}

export class Widget {
  constructor(root, lib, options = {}) {
    this.root = root;
    this.rules = lib.rules;
    this.reduce = lib.reduce;
    this.view = lib.createView(root);
    this.store = lib.createStorage();
    this.base = options.base || root.getAttribute("data-base") || root.ownerDocument.baseURI;
    this.stopped = false;
    this.queue = [];
    this.dispatching = false;
    this.roomList = null;
    this.roomsLoading = false;
    this.roomsLoadedAt = 0;
    this.countdown = null;

    this.newCid = lib.newCid;
    this.lastTyping = 0;
    this.typingTimer = null;
    this.away = { unread: 0, mentions: 0, title: "" }; // while the tab is hidden
    this.editingId = null; // the message the composer edits
    this.state = lib.initialState({
      room: this.store.room() || this.rules.defaultRoom,
      outgoing: this.store.outgoing(),
      cidWindowMs: this.rules.cidWindowMs,
      typingShownMs: this.rules.typingShownMs,
    });
    const backoffMax = Number(options.backoffMax || root.getAttribute("data-backoff-max")) || undefined;
    this.conn = new lib.Connection({
      base: this.base,
      backoffMax,
      tokens: this.store.tokens,
      target: () => this.state.wanted,
      lastSeen: () => this.state.lastId,
      alive: () => this.root.isConnected,
      onEvent: (ev) => this.onConnection(ev),
    });

    this.view.bind({
      join: () => this.joinFromForm(),
      pickRoom: (room) => this.switchRoom(room),
      roomsWanted: () => this.loadRooms(),
      createRoom: () => this.createRoom(),
      send: () => this.sendText(),
      typed: () => this.typed(),
      retry: (cid) => this.dispatch({ type: "retry", cid }),
      discard: (cid) => this.dispatch({ type: "discard", cid }),
      react: (id, emoji) => this.change({ type: "react", payload: { id, emoji } }),
      edit: (id, text) => { this.editingId = id; this.view.editing(id, text); },
      remove: (id) => this.change({ type: "delete", payload: { id } }),
      cancelEdit: () => this.stopEditing(),
      notify: () => this.toggleNotify(),
      visibility: (visible) => { if (visible) this.back(); },
      wake: () => this.conn.wake(),
    });
    this.showNotify();
    this.view.setMaxText(this.rules.maxText);
    this.setRoomOptions([], this.state.wanted.room);
    this.loadRooms();
    this.roomsTimer = setInterval(() => {
      if (!this.root.isConnected) { this.destroy(); return; }
      if (!this.root.ownerDocument.hidden) this.loadRooms();
    }, ROOMS_REFRESH_MS);
    this.start();
  }

  // --- events through the reducer ------------------------------------------

  dispatch(event) {
    this.queue.push(event);
    if (this.dispatching) return; // effects may cause events: they wait their turn
    this.dispatching = true;
    try {
      while (this.queue.length) {
        const { state, effects } = this.reduce(this.state, this.queue.shift());
        this.state = state;
        for (const effect of effects) this.apply(effect);
      }
    } finally {
      this.dispatching = false;
    }
  }

  apply(e) {
    const v = this.view;
    switch (e.type) {
      case "clear": v.clearList(); return;
      case "mark_own": v.markOwn(e.me); return;
      case "busy": v.busy(e.on); return;
      case "messages":
        v.addMessages(e.items, e.countUnread);
        this.attention(e);
        return;
      case "gap": v.addGap(e); return;
      case "scroll_bottom": v.scrollToBottom(); return;
      case "system": v.system(e.text, e.ts); return;
      case "users":
        v.renderUsers(e.names, e.me, e.online);
        this.setRoomCount(e.room, e.online);
        return;
      case "remember":
        if (e.name !== undefined) this.store.setName(e.name);
        this.store.setRoom(e.room);
        return;
      case "welcome":
        if (!this.state.fixedUser) v.setName(e.user);
        this.setRoomOptions(this.roomList || [], e.room);
        this.roomsLoadedAt = 0;
        this.loadRooms();
        return;
      case "error": v.showError(e.text); return;
      case "clear_error": v.clearError(); return;
      case "restore":
        v.setRoom(e.room);
        if (e.user !== null) v.setName(e.user);
        return;
      case "focus_name": v.focusName(); return;
      case "join_again": this.conn.sendJoin(); return;
      case "composer": v.composer(e.enabled); return;
      case "send_msg":
        if (!this.conn.send({ type: "msg", payload: { text: e.text, cid: e.cid } })) {
          this.dispatch({ type: "closed" }); // not open after all: it waits for the next socket
        }
        return;
      case "outgoing": v.renderOutgoing(e.items, this.state.me); return;
      case "save_outgoing": this.store.setOutgoing(e.list); return;
      case "typing":
        v.showTyping(e.names);
        clearInterval(this.typingTimer);
        this.typingTimer = e.names.length ? setInterval(() => this.dispatch({ type: "tick", now: Date.now() }), 1000) : null;
        return;
      case "limits": v.setMaxText(e.maxText); return;
      case "rules": v.showRules(e.topic, e.slow, e.locked); return;
      case "edited": v.edited(e.id, e.text, e.ts); return;
      case "deleted":
        v.deleted(e.id);
        if (this.editingId === e.id) this.stopEditing();
        return;
      case "reacted": v.reacted(e.id, e.emoji, e.user, e.on); return;
      case "degraded":
        this.degraded = e.on;
        this.showStatus();
        return;
      default: return;
    }
  }

  onConnection(ev) {
    switch (ev.type) {
      case "state":
        this.showStatus();
        if (ev.state === "stopped") this.destroy();
        return;
      case "frame":
        this.dispatch({ type: "frame", frame: ev.frame, now: Date.now() });
        return;
      case "refused":
        this.dispatch({ type: "refused", frame: ev.frame });
        return;
      case "join_sent":
        this.dispatch({ type: "join_sent", payload: ev.payload });
        return;
      default: // opening, join_failed, closed
        this.dispatch({ type: ev.type });
    }
  }

  showStatus() {
    clearInterval(this.countdown);
    this.countdown = null;
    const { state, info } = this.conn;
    if (state === "stopped") return;
    const show = () => {
      const [name, text] = statusOf(state, info, Date.now(), this.degraded);
      this.view.setStatus(name, text);
    };
    show();
    if (state === "reconnecting" && !info.retry) this.countdown = setInterval(show, 1000);
  }

  // --- names ---------------------------------------------------------------

  /** Pick the name (server-given, remembered, or asked for) and join if there is one. */
  start() {
    const given = this.root.getAttribute("data-user");
    const url = this.root.getAttribute("data-user-url");
    if (given) { this.useFixedName(given); return; }
    if (url) {
      fetch(new URL(url, this.base).href, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : {}))
        .then((j) => {
          if (this.stopped) return;
          if (j && j.ticket) this.conn.setTicket(String(j.ticket));
          if (j && j.user) this.useFixedName(String(j.user));
          else this.useStoredName();
        })
        .catch(() => { if (!this.stopped) this.useStoredName(); });
      return;
    }
    this.useStoredName();
  }

  useFixedName(name) {
    this.view.fixName(name);
    this.dispatch({ type: "fix_user", user: name });
    this.conn.join();
  }

  useStoredName() {
    const name = this.store.name();
    if (name && !this.rules.checkName(name)) {
      this.view.setName(name);
      this.dispatch({ type: "want", user: name });
      this.conn.join();
    } else {
      this.showStatus();
    }
  }

  // --- joining and rooms ---------------------------------------------------

  joinFromForm() {
    const v = this.view;
    const name = v.nameValue().trim();
    const problem = this.rules.checkName(name);
    if (problem) { v.showError(problem); v.focusName(); return; }
    const room = v.roomValue() || this.rules.defaultRoom;
    v.clearError();
    const s = this.state;
    if (s.joined && name === s.me && room === s.viewRoom) { v.focusInput(); return; }
    this.dispatch({ type: "want", user: name, room });
    this.conn.join();
  }

  switchRoom(room) {
    const problem = this.rules.checkRoom(room);
    if (problem) { this.view.showError(problem); return; }
    this.view.clearError();
    this.dispatch({ type: "want", room });
    this.store.setRoom(room);
    if (!this.conn.active || !this.state.wanted.user) return; // joins when the user does
    this.conn.join();
  }

  createRoom() {
    const v = this.view;
    const room = v.newRoomValue().trim();
    const problem = this.rules.checkRoom(room);
    if (problem) { v.showError(problem); v.focusNewRoom(); return; }
    v.resetNewRoom();
    this.setRoomOptions(this.roomList || [], room);
    if (!this.state.wanted.user) {
      // no name yet: the new room is picked, joining waits for the name
      this.dispatch({ type: "want", room });
      this.store.setRoom(room);
      v.focusName();
      return;
    }
    this.switchRoom(room);
  }

  loadRooms() {
    const now = Date.now();
    if (this.stopped || this.roomsLoading || (this.roomsLoadedAt && now - this.roomsLoadedAt < 1000)) return;
    this.roomsLoading = true;
    fetch(new URL("api/rooms", this.base).href, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        if (this.stopped || !j || !Array.isArray(j.rooms)) return;
        this.roomList = j.rooms;
        this.setRoomOptions(j.rooms, this.view.roomValue() || this.state.wanted.room);
      })
      .catch(() => { /* offline: keep the list we have */ })
      .then(() => { this.roomsLoading = false; this.roomsLoadedAt = Date.now(); });
  }

  setRoomOptions(rooms, selected) {
    const s = this.state;
    const options = roomOptions(rooms, [selected, s.viewRoom, s.wanted.room], this.rules.checkRoom,
      this.rules.defaultRoom);
    this.view.setRoomOptions(options, selected);
  }

  /** Keep the picker's count for the room we are in exact between room list loads. */
  setRoomCount(room, online) {
    if (!room) return;
    const list = (this.roomList || []).filter((r) => r && r.room !== room);
    list.push({ room, online });
    this.roomList = list;
    this.setRoomOptions(list, this.view.roomValue() || room);
  }

  // --- sending -------------------------------------------------------------

  /** The message goes into `outgoing` with a new cid: sent now if joined, else once
   * (re)connected; it leaves the list when it comes back stored. */
  sendText() {
    const v = this.view;
    const text = v.inputValue();
    if (this.rules.isBlank(text) || !this.state.everJoined || v.sendBlocked()) return;
    if (this.editingId !== null) {
      if (this.change({ type: "edit", payload: { id: this.editingId, text } })) this.stopEditing();
      return;
    }
    this.dispatch({ type: "compose", text, cid: this.newCid(), now: Date.now() });
    v.clearInput();
    v.focusInput();
  }

  /** An edit, delete or reaction: sent now, or (not connected) refused with a line that says so. */
  change(frame) {
    if (this.state.joined && this.conn.send(frame)) return true;
    this.view.showError("Not connected: that change was not made. Try again once reconnected.");
    return false;
  }

  stopEditing() {
    this.editingId = null;
    this.view.editing(null);
  }

  /** A keystroke: tell the room, at most once per typingEveryMs. */
  typed() {
    const now = Date.now();
    if (!this.state.joined || now - this.lastTyping < this.rules.typingEveryMs) return;
    this.lastTyping = now;
    this.conn.send({ type: "typing" });
  }

  // --- attention: the "new messages" line, the title while hidden, mentions ---

  attention(e) {
    const others = e.items.filter((i) => !i.own);
    if (!others.length || !e.countUnread) return;
    const doc = this.root.ownerDocument;
    if (e.replay) this.view.markNewLine(others[0].id); // where the reader left off, before the reconnect
    if (!doc.hidden) return;
    const away = this.away;
    if (!away.unread) {
      away.title = doc.title;
      if (!e.replay) this.view.markNewLine(others[0].id); // where the reader left off, before leaving the tab
    }
    away.unread += others.length;
    const mentions = others.filter((i) => i.mention);
    away.mentions += mentions.length;
    doc.title = titleWith(away.title, away.unread, away.mentions);
    for (const item of mentions) this.notifyMention(item);
  }

  /** Back to the tab: the title as it was. */
  back() {
    if (!this.away.unread) return;
    this.root.ownerDocument.title = this.away.title;
    this.away = { unread: 0, mentions: 0, title: "" };
  }

  notifyOn() {
    const N = globalThis.Notification;
    return !!N && N.permission === "granted" && this.store.get("chat:notify") === "1";
  }

  showNotify() {
    const N = globalThis.Notification;
    if (!N || N.permission === "denied") { this.view.setNotify(false, ""); return; }
    this.view.setNotify(true, this.notifyOn() ? "Stop mention alerts" : "Notify me of mentions");
  }

  /** Opt in (asking the browser) or out of a notification for each mention while the tab is hidden. */
  toggleNotify() {
    const N = globalThis.Notification;
    if (!N) return;
    if (this.notifyOn()) {
      this.store.set("chat:notify", null);
      this.showNotify();
      return;
    }
    Promise.resolve(N.permission === "granted" ? "granted" : N.requestPermission()).then((answer) => {
      if (answer === "granted") this.store.set("chat:notify", "1");
      this.showNotify();
    }).catch(() => this.showNotify());
  }

  notifyMention(item) {
    if (!this.notifyOn()) return;
    try {
      const n = new globalThis.Notification(`${item.user} mentioned you in #${this.state.viewRoom}`,
        { body: item.text.slice(0, 200), tag: "chat-mention" });
      n.onclick = () => { globalThis.focus(); n.close(); };
    } catch (err) { /* (some browsers allow notifications only from a service worker) */ }
  }

  // --- the end -------------------------------------------------------------

  /** Stop for good: the element left the page (e.g. Gradio re-rendered it). */
  destroy() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.roomsTimer);
    clearInterval(this.countdown);
    clearInterval(this.typingTimer);
    this.conn.stop();
    this.view.destroy();
    if (this.root.__chatWidget === this) delete this.root.__chatWidget;
  }
}

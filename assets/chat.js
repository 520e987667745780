/*
 * The chat widget: one file for the plain page (/chat) and the Gradio app (gr.HTML).
 *
 * It speaks the protocol of docs/protocol.md over one WebSocket at "<base>/ws", where
 * <base> is the directory of the page (document.baseURI), so it works on localhost,
 * through a Gradio share link, on *.hf.space and under a path prefix alike.
 *
 * Usage: markup with [data-chat-widget] (see page.html), then ChatWidget.mount(element).
 * Pages that load this file mount every [data-chat-widget] on their own; mounting
 * twice returns the same widget.
 *
 * Optional attributes on the [data-chat-widget] element:
 *   data-base="url"         where /ws and /api live (default: document.baseURI)
 *   data-user="name"        a name given by the server (e.g. the login name): not asked for
 *   data-user-url="url"     JSON {"user": "name" | null} to fetch that name from
 *   data-backoff-max="ms"   longest wait between reconnect attempts (default 15000)
 *
 * Every text from the network goes into the DOM through textContent or text nodes,
 * never as markup; links are made only for http(s) URLs.
 */
(function (global) {
  "use strict";
  if (global.ChatWidget) return; // loaded twice (e.g. page and component): keep the first

  var ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
  var CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
  var LINK_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
  var TRAILING_PUNCT_RE = /[.,;:!?)\]}]+$/;
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var JOIN_TIMEOUT_MS = 10000;
  var ROOMS_REFRESH_MS = 20000;
  var BOTTOM_SLACK_PX = 40;
  var REPLACED = 4001; // close code: our name was reclaimed by a newer connection
  var NOT_SENT = ["text_too_long", "empty_text", "store_unavailable", "rate_limited", "shutting_down"];

  // --- small helpers ------------------------------------------------------

  var storage = {
    get: function (key) {
      try { return global.localStorage.getItem(key); } catch (e) { return null; }
    },
    set: function (key, value) {
      try {
        if (value === null || value === undefined) global.localStorage.removeItem(key);
        else global.localStorage.setItem(key, value);
      } catch (e) { /* private mode, quota: the widget works without memory */ }
    }
  };

  // A resume token holds a name in every room (docs/protocol.md), so it is kept per name.
  function tokenKey(user) {
    return "chat:token:" + String(user).toLowerCase();
  }

  function checkName(name) {
    var n = Array.from(name).length;
    if (n < 1) return "Pick a name first.";
    if (n > 32) return "Names are at most 32 characters.";
    if (CONTROL_RE.test(name)) return "Names cannot hold control characters.";
    return null;
  }

  function checkRoom(room) {
    return ROOM_RE.test(room) ? null :
      "Room names are 1 to 32 letters, digits, _ - or ., starting with a letter or digit.";
  }

  /** The http(s) URL itself, or null for anything else (javascript:, data:, ...). */
  function safeHref(text) {
    try {
      var url = new URL(text);
      return (url.protocol === "http:" || url.protocol === "https:") ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  /** Put `text` into `el` as text nodes, with http(s) URLs as safe links. */
  function appendLinkified(el, text) {
    var last = 0;
    var match;
    LINK_RE.lastIndex = 0;
    while ((match = LINK_RE.exec(text)) !== null) {
      var raw = match[0];
      var trimmed = raw.replace(TRAILING_PUNCT_RE, "");
      // keep a closing bracket that belongs to the URL, as in https://en.wikipedia.org/wiki/Foo_(bar)
      while (trimmed.length < raw.length && raw.charAt(trimmed.length) === ")" &&
             (trimmed.split("(").length > trimmed.split(")").length)) {
        trimmed += ")";
      }
      var href = trimmed ? safeHref(trimmed) : null;
      if (!href) continue;
      if (match.index > last) el.appendChild(document.createTextNode(text.slice(last, match.index)));
      var a = document.createElement("a");
      a.href = href;
      a.textContent = trimmed;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      el.appendChild(a);
      last = match.index + trimmed.length;
      LINK_RE.lastIndex = last;
    }
    if (last < text.length) el.appendChild(document.createTextNode(text.slice(last)));
  }

  /** The socket's URL; with logins, the ticket of this page's session (from api/me),
   * which proves to the server that the socket comes from a page it served. */
  function wsUrl(base, ticket) {
    var url = new URL("ws", base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = ticket ? "?ticket=" + encodeURIComponent(ticket) : "";
    url.hash = "";
    return url.href;
  }

  function formatTime(ts) {
    var d = new Date(ts * 1000);
    if (isNaN(d.getTime())) return { short: "", full: "", iso: "" };
    return {
      short: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      full: d.toLocaleString(),
      iso: d.toISOString()
    };
  }

  function byName(a, b) {
    var x = a.toLowerCase(), y = b.toLowerCase();
    return x < y ? -1 : x > y ? 1 : 0;
  }

  // --- the widget ---------------------------------------------------------

  function Widget(root, options) {
    var self = this;
    options = options || {};
    this.root = root;
    var q = function (id) { return root.querySelector('[data-testid="' + id + '"]'); };
    this.el = {
      joinForm: root.querySelector('[data-role="join-form"]'),
      name: q("chat-name"),
      room: q("chat-room"),
      join: q("chat-join"),
      newRoomBox: root.querySelector('[data-role="new-room"]'),
      newRoom: q("chat-new-room"),
      createRoom: q("chat-create-room"),
      status: q("chat-status"),
      error: q("chat-error"),
      list: q("chat-messages"),
      unread: q("chat-unread"),
      online: q("chat-online"),
      users: q("chat-users"),
      composer: root.querySelector('[data-role="composer"]'),
      input: q("chat-input"),
      send: q("chat-send")
    };
    this.base = options.base || root.getAttribute("data-base") || document.baseURI;
    this.backoffMax = Number(options.backoffMax || root.getAttribute("data-backoff-max")) || BACKOFF_MAX_MS;

    this.ws = null;
    this.active = false;       // the user wants to be in a room: keep (re)connecting
    this.joined = false;       // a welcome arrived on the current socket
    this.everJoined = false;   // this page has been in a room before (a reconnect uses since)
    this.pending = null;       // frames that arrive between our join and its welcome
    this.joinSent = null;      // payload of the join in flight
    this.wanted = { user: "", room: storage.get("chat:room") || "lobby" };
    this.me = null;            // the name the server accepted
    this.viewRoom = null;      // the room whose messages the list shows
    this.ids = new Set();      // message ids in the list: each shown exactly once
    this.lastId = 0;
    this.users = new Map();    // lower-cased name -> name
    this.online = 0;
    this.unread = 0;
    this.attempt = 0;
    this.lastSent = null;
    this.fixedUser = false;
    this.timers = {};
    this.stopped = false;

    this.on(root, "submit", function (e) { e.preventDefault(); }, true);
    this.on(this.el.joinForm, "submit", function () { self.joinFromForm(); });
    this.on(this.el.room, "change", function () { self.switchRoom(self.el.room.value); });
    this.on(this.el.room, "focus", function () { self.loadRooms(); });
    this.on(this.el.room, "pointerdown", function () { self.loadRooms(); });
    this.on(this.el.createRoom, "click", function () { self.createRoom(); });
    this.on(this.el.newRoom, "keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); self.createRoom(); }
    });
    this.on(this.el.composer, "submit", function () { self.sendText(); });
    this.on(this.el.input, "keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        self.sendText();
      }
    });
    this.on(this.el.input, "input", function () { self.updateComposer(); });
    this.on(this.el.list, "scroll", function () {
      if (self.atBottom()) self.setUnread(0);
    });
    this.on(this.el.unread, "click", function () { self.scrollToBottom(); self.setUnread(0); });
    // Back online, or back to a tab the browser had put to sleep: do not sit out the backoff.
    this.on(global, "online", function () { if (self.active && !self.ws) self.connect(); });
    this.on(document, "visibilitychange", function () {
      if (!document.hidden && self.active && !self.ws) self.connect();
    });

    this.setRoomOptions([], this.wanted.room);
    this.loadRooms();
    this.timers.rooms = setInterval(function () {
      if (!self.root.isConnected) { self.destroy(); return; }
      if (!document.hidden) self.loadRooms();
    }, ROOMS_REFRESH_MS);
    this.start();
  }

  Widget.prototype.on = function (target, type, fn, capture) {
    if (!target) return;
    target.addEventListener(type, fn, !!capture);
    (this.listeners = this.listeners || []).push([target, type, fn, !!capture]);
  };

  /** Pick the name (server-given, remembered, or asked for) and join if we have one. */
  Widget.prototype.start = function () {
    var self = this;
    var given = this.root.getAttribute("data-user");
    var url = this.root.getAttribute("data-user-url");
    if (given) { this.useFixedName(given); return; }
    if (url) {
      fetch(new URL(url, this.base).href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : {}; })
        .then(function (j) {
          if (j && j.ticket) self.ticket = String(j.ticket);
          if (j && j.user) self.useFixedName(String(j.user)); else self.useStoredName();
        })
        .catch(function () { self.useStoredName(); });
      return;
    }
    this.useStoredName();
  };

  Widget.prototype.useFixedName = function (name) {
    this.fixedUser = true;
    this.el.name.value = name;
    this.el.name.readOnly = true;
    this.el.name.title = "Your name comes from your login.";
    this.wanted.user = name;
    this.active = true;
    this.connect();
  };

  Widget.prototype.useStoredName = function () {
    var name = storage.get("chat:name");
    if (name && !checkName(name)) {
      this.el.name.value = name;
      this.wanted.user = name;
      this.active = true;
      this.connect();
    } else {
      this.setState("idle", "Not connected: pick a name and join.");
    }
  };

  // --- joining and rooms --------------------------------------------------

  Widget.prototype.joinFromForm = function () {
    var name = this.el.name.value.trim();
    var problem = checkName(name);
    if (problem) { this.showError(problem); this.el.name.focus(); return; }
    var room = this.el.room.value || "lobby";
    this.clearError();
    if (this.joined && name === this.me && room === this.viewRoom) { this.el.input.focus(); return; }
    this.wanted = { user: name, room: room };
    this.active = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendJoin();
    else this.connect();
  };

  Widget.prototype.switchRoom = function (room) {
    var problem = checkRoom(room);
    if (problem) { this.showError(problem); return; }
    this.clearError();
    this.wanted.room = room;
    storage.set("chat:room", room);
    if (!this.active || !this.wanted.user) return; // joins when the user does
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendJoin();
    else this.connect();
  };

  Widget.prototype.createRoom = function () {
    var room = this.el.newRoom.value.trim();
    var problem = checkRoom(room);
    if (problem) { this.showError(problem); this.el.newRoom.focus(); return; }
    this.el.newRoom.value = "";
    if (this.el.newRoomBox) this.el.newRoomBox.open = false;
    this.setRoomOptions(this.roomList || [], room);
    if (!this.wanted.user) {
      // no name yet: the new room is picked, joining waits for the name
      this.wanted.room = room;
      storage.set("chat:room", room);
      this.el.name.focus();
      return;
    }
    this.switchRoom(room);
  };

  Widget.prototype.loadRooms = function () {
    var self = this;
    var now = Date.now();
    if (this.roomsLoading || (this.roomsLoadedAt && now - this.roomsLoadedAt < 1000)) return;
    this.roomsLoading = true;
    fetch(new URL("api/rooms", this.base).href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (j && Array.isArray(j.rooms)) {
          self.roomList = j.rooms;
          self.setRoomOptions(j.rooms, self.el.room.value || self.wanted.room);
        }
      })
      .catch(function () { /* offline: keep the list we have */ })
      .then(function () { self.roomsLoading = false; self.roomsLoadedAt = Date.now(); });
  };

  /** Fill the room picker: the rooms that exist, plus the selected one and lobby. */
  Widget.prototype.setRoomOptions = function (rooms, selected) {
    var select = this.el.room;
    var seen = new Map();
    rooms.forEach(function (r) {
      if (r && typeof r.room === "string" && !checkRoom(r.room)) seen.set(r.room, r.online | 0);
    });
    ["lobby", selected, this.viewRoom, this.wanted.room].forEach(function (name) {
      if (name && !seen.has(name)) seen.set(name, null);
    });
    var names = Array.from(seen.keys()).sort(function (a, b) {
      if (a === "lobby") return -1;
      if (b === "lobby") return 1;
      return byName(a, b);
    });
    var focused = document.activeElement === select;
    var same = select.options.length === names.length && names.every(function (n, i) {
      var o = select.options[i];
      return o.value === n && o.textContent === label(n);
    });
    function label(n) {
      var online = seen.get(n);
      return online ? n + " (" + online + " online)" : n;
    }
    if (!same && !focused) {
      while (select.firstChild) select.removeChild(select.firstChild);
      names.forEach(function (n) {
        var opt = document.createElement("option");
        opt.value = n;
        opt.textContent = label(n);
        select.appendChild(opt);
      });
    } else if (!same) {
      names.forEach(function (n) { // do not rebuild a list the user has open: only add
        if (!Array.from(select.options).some(function (o) { return o.value === n; })) {
          var opt = document.createElement("option");
          opt.value = n;
          opt.textContent = label(n);
          select.appendChild(opt);
        }
      });
    }
    if (selected) select.value = selected;
  };

  // --- the connection -----------------------------------------------------

  Widget.prototype.connect = function () {
    var self = this;
    if (this.stopped) return;
    clearTimeout(this.timers.reconnect);
    clearInterval(this.timers.countdown);
    if (this.ws) {
      var old = this.ws;
      this.ws = null;
      old.onopen = old.onmessage = old.onclose = old.onerror = null;
      try { old.close(1000, "reconnecting"); } catch (e) { /* already closed */ }
    }
    this.joined = false;
    this.pending = null;
    if (this.everJoined) this.setState("reconnecting", "Reconnecting…");
    else this.setState("connecting", "Connecting…");
    var ws;
    try {
      ws = new WebSocket(wsUrl(this.base, this.ticket));
    } catch (e) {
      this.scheduleReconnect("Could not open a WebSocket: " + e.message);
      return;
    }
    this.ws = ws;
    ws.onopen = function () { if (ws === self.ws) self.sendJoin(); };
    ws.onmessage = function (ev) {
      if (ws !== self.ws) return;
      if (!self.root.isConnected) { self.destroy(); return; }
      var frame;
      try { frame = JSON.parse(ev.data); } catch (e) { return; }
      if (frame && typeof frame === "object") self.onFrame(frame);
    };
    ws.onclose = function (ev) {
      if (ws !== self.ws) return;
      self.ws = null;
      self.onClose(ev);
    };
    ws.onerror = function () { /* a close event follows */ };
  };

  Widget.prototype.send = function (frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  };

  Widget.prototype.sendJoin = function () {
    var self = this;
    var w = this.wanted;
    if (!w.user) return;
    var payload = { user: w.user, room: w.room };
    // Back in the room we show: ask only for what we have not seen.
    if (this.viewRoom === w.room && this.everJoined) payload.since = this.lastId;
    var token = storage.get(tokenKey(w.user));
    if (token) payload.token = token;
    this.pending = [];
    this.joinSent = payload;
    if (!this.send({ type: "join", payload: payload })) return;
    clearTimeout(this.timers.join);
    this.timers.join = setTimeout(function () {
      if (self.pending && self.ws) {
        // no welcome: treat the connection as broken and start over
        var ws = self.ws;
        self.ws = null;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(4000, "no welcome"); } catch (e) { /* gone */ }
        self.onClose({ code: 4000, reason: "" });
      }
    }, JOIN_TIMEOUT_MS);
  };

  Widget.prototype.onClose = function (ev) {
    var wasJoined = this.joined;
    this.joined = false;
    this.pending = null;
    clearTimeout(this.timers.join);
    this.updateComposer();
    if (this.stopped) return;
    if (!this.active) {
      this.setState("idle", "Not connected: pick a name and join.");
      return;
    }
    if (ev.code === REPLACED) {
      // The same name joined again elsewhere with our resume token (another tab, or
      // this person on another device): coming back on our own would start a tug of war.
      this.active = false;
      this.setState("replaced", "You are now chatting as " + (this.me || this.wanted.user) +
        " in another tab or window. Press Join to chat here instead.");
      return;
    }
    var why = "Connection lost.";
    if (ev.code === 1001 || ev.code === 1012) why = "The server is restarting.";
    else if (ev.code === 1008) why = "The server refused the connection" + (ev.reason ? " (" + ev.reason + ")" : "") + ".";
    else if (ev.code === 1013) why = "This page fell behind.";
    else if (!wasJoined && !this.everJoined) why = "Cannot reach the chat server.";
    if (ev.code === 1008) this.attempt = Math.max(this.attempt, 4); // policy: do not hammer
    this.scheduleReconnect(why);
  };

  /** Exponential backoff with jitter: about 0.5 s, 1 s, 2 s, ... up to backoffMax. */
  Widget.prototype.scheduleReconnect = function (why) {
    var self = this;
    clearTimeout(this.timers.reconnect);
    clearInterval(this.timers.countdown);
    this.attempt += 1;
    var ceiling = Math.min(this.backoffMax, BACKOFF_BASE_MS * Math.pow(2, this.attempt - 1));
    var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    var due = Date.now() + delay;
    var show = function () {
      var secs = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      self.setState("reconnecting", why + " Reconnecting" + (secs ? " in " + secs + " s" : "") + "…");
    };
    show();
    this.timers.countdown = setInterval(show, 1000);
    this.timers.reconnect = setTimeout(function () {
      clearInterval(self.timers.countdown);
      if (!self.root.isConnected) { self.destroy(); return; }
      self.connect();
    }, delay);
  };

  // --- frames from the server ---------------------------------------------

  Widget.prototype.onFrame = function (frame) {
    var p = frame.payload && typeof frame.payload === "object" ? frame.payload : {};
    switch (frame.type) {
      case "msg":
        if (this.pending) { this.pending.push(p); return; }
        if (p.room && p.room !== this.viewRoom) return;
        this.addMessages([p], true);
        if (p.user === this.me) this.clearError();
        return;
      case "welcome":
        this.onWelcome(p);
        return;
      case "join":
      case "leave":
        if (this.pending || (p.room && p.room !== this.viewRoom) || typeof p.user !== "string") return;
        this.notice(frame.type, p.user, p.ts);
        return;
      case "presence":
        if (this.pending || (p.room && p.room !== this.viewRoom)) return;
        this.presence(p);
        return;
      case "error":
        this.onError(frame);
        return;
      default:
        return; // pong, and frame types this widget does not know
    }
  };

  Widget.prototype.onWelcome = function (p) {
    clearTimeout(this.timers.join);
    var history = this.pending || [];
    var sent = this.joinSent || {};
    var reconnect = this.everJoined && !this.joined && this.viewRoom === p.room;
    this.pending = null;
    // A new room, or a server whose history no longer has what we saw: start the list afresh.
    var fresh = this.viewRoom !== p.room ||
      (typeof sent.since === "number" && typeof p.last_id === "number" && p.last_id < sent.since);
    if (fresh) this.clearView();
    this.viewRoom = p.room;
    if (this.me !== p.user) { this.me = p.user; this.markOwn(); }
    this.joined = true;
    this.everJoined = true;
    this.attempt = 0;
    this.wanted = { user: p.user, room: p.room };
    if (!this.fixedUser) storage.set("chat:name", p.user);
    storage.set("chat:room", p.room);
    if (p.token) storage.set(tokenKey(p.user), String(p.token));
    if (!this.fixedUser) this.el.name.value = p.user;

    this.el.list.setAttribute("aria-busy", "true");
    this.addMessages(history.filter(function (m) { return !m.room || m.room === p.room; }), !fresh);
    if (p.gap && typeof p.gap.first === "number") this.addGap(p.gap);
    if (typeof p.last_id === "number" && p.last_id > this.lastId) this.lastId = p.last_id;
    this.el.list.setAttribute("aria-busy", "false");
    if (fresh) { this.scrollToBottom(); this.setUnread(0); }
    if (reconnect) this.system("Reconnected.", p.ts);

    this.setUsers(Array.isArray(p.users) ? p.users : [], p.online);
    this.setRoomOptions(this.roomList || [], p.room);
    this.clearError();
    this.setState("connected", "Connected as " + p.user + " in #" + p.room + ".");
    this.updateComposer();
    this.roomsLoadedAt = 0;
    this.loadRooms();
  };

  Widget.prototype.onError = function (frame) {
    var self = this;
    var code = frame.code || "";
    var text = typeof frame.message === "string" && frame.message ? frame.message : "Error: " + code;
    if (this.pending) { // our join was refused
      clearTimeout(this.timers.join);
      this.pending = null;
      var w = this.wanted;
      if (code === "bad_token") {
        storage.set(tokenKey(w.user), null);
        this.sendJoin();
        return;
      }
      var rejoining = this.everJoined && this.viewRoom === w.room && this.me &&
        this.me.toLowerCase() === w.user.toLowerCase();
      if ((code === "name_taken" && rejoining) || code === "rate_limited") {
        // Most likely our own earlier connection, which the server has not yet seen go.
        this.attempt += 1;
        var delay = Math.min(this.backoffMax, BACKOFF_BASE_MS * Math.pow(2, this.attempt));
        this.setState("reconnecting", code === "rate_limited" ? "Joining too often; waiting…" :
          "Waiting for the previous connection to time out…");
        clearTimeout(this.timers.reconnect);
        this.timers.reconnect = setTimeout(function () { if (self.ws) self.sendJoin(); }, delay);
        return;
      }
      this.showError(text);
      if (this.joined) { // a room switch that failed: we are still where we were
        this.wanted = { user: this.me, room: this.viewRoom };
        this.el.room.value = this.viewRoom;
        if (!this.fixedUser) this.el.name.value = this.me;
        return;
      }
      this.active = false;
      this.setState("idle", "Not joined.");
      if (code === "bad_name" || code === "name_taken") this.el.name.focus();
      return;
    }
    if (code === "not_joined") { this.sendJoin(); return; }
    if (this.lastSent && !this.el.input.value && NOT_SENT.indexOf(code) >= 0) {
      this.el.input.value = this.lastSent; // not sent: give the text back
      this.updateComposer();
    }
    this.showError(text);
  };

  // --- the message list ---------------------------------------------------

  Widget.prototype.clearView = function () {
    var list = this.el.list;
    while (list.firstChild) list.removeChild(list.firstChild);
    this.ids = new Set();
    this.lastId = 0;
    this.users = new Map();
    this.online = 0;
    this.setUnread(0);
  };

  Widget.prototype.atBottom = function () {
    var l = this.el.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight <= BOTTOM_SLACK_PX;
  };

  Widget.prototype.scrollToBottom = function () {
    this.el.list.scrollTop = this.el.list.scrollHeight;
  };

  Widget.prototype.setUnread = function (n) {
    this.unread = n;
    var b = this.el.unread;
    if (!b) return;
    b.hidden = n <= 0;
    b.textContent = n === 1 ? "1 new message ↓" : n + " new messages ↓";
  };

  /** Add msg payloads, each id once, in id order; keep the reader's scroll position. */
  Widget.prototype.addMessages = function (payloads, countUnread) {
    var stick = this.atBottom();
    var added = 0, others = 0, mine = false;
    for (var i = 0; i < payloads.length; i++) {
      var p = payloads[i];
      var id = p.id;
      if (typeof id !== "number" || this.ids.has(id)) continue;
      this.ids.add(id);
      var li = this.renderMessage(p);
      if (id > this.lastId) {
        this.el.list.appendChild(li);
        this.lastId = id;
      } else {
        this.insertById(li, id);
      }
      added += 1;
      if (p.user === this.me) mine = true; else others += 1;
    }
    if (!added) return;
    if (stick || mine) this.scrollToBottom();
    else if (countUnread) this.setUnread(this.unread + others);
  };

  Widget.prototype.insertById = function (li, id) {
    var items = this.el.list.querySelectorAll("li[data-id]");
    for (var i = 0; i < items.length; i++) {
      if (Number(items[i].getAttribute("data-id")) > id) {
        this.el.list.insertBefore(li, items[i]);
        return;
      }
    }
    this.el.list.appendChild(li);
  };

  Widget.prototype.renderMessage = function (p) {
    var li = document.createElement("li");
    li.className = "chat-msg";
    li.setAttribute("data-id", String(p.id));
    var user = typeof p.user === "string" ? p.user : "?";
    li.setAttribute("data-user", user);
    if (user === this.me) li.classList.add("chat-own");
    var meta = document.createElement("div");
    meta.className = "chat-meta";
    var author = document.createElement("span");
    author.className = "chat-author";
    author.dir = "auto"; // each name and text its own direction: one message cannot reorder the page
    author.textContent = user;
    meta.appendChild(author);
    meta.appendChild(this.timeElement(p.ts));
    var body = document.createElement("div");
    body.className = "chat-text";
    body.dir = "auto";
    appendLinkified(body, typeof p.text === "string" ? p.text : "");
    li.appendChild(meta);
    li.appendChild(body);
    return li;
  };

  Widget.prototype.timeElement = function (ts) {
    var t = formatTime(typeof ts === "number" ? ts : Date.now() / 1000);
    var el = document.createElement("time");
    el.className = "chat-time";
    el.textContent = t.short;
    if (t.iso) el.setAttribute("datetime", t.iso);
    el.title = t.full;
    return el;
  };

  Widget.prototype.markOwn = function () {
    var me = this.me;
    Array.prototype.forEach.call(this.el.list.querySelectorAll("li[data-id]"), function (li) {
      li.classList.toggle("chat-own", li.getAttribute("data-user") === me);
    });
  };

  Widget.prototype.system = function (text, ts, before) {
    var stick = this.atBottom();
    var li = document.createElement("li");
    li.className = "chat-system";
    var span = document.createElement("span");
    span.textContent = text;
    li.appendChild(span);
    li.appendChild(this.timeElement(ts));
    if (before) this.el.list.insertBefore(li, before);
    else this.el.list.appendChild(li);
    if (stick) this.scrollToBottom();
    return li;
  };

  /** welcome.gap: messages after `after` and before `first` could not be replayed. */
  Widget.prototype.addGap = function (gap) {
    var key = gap.after + "-" + gap.first;
    if (this.el.list.querySelector('li[data-gap="' + key + '"]')) return;
    var before = null;
    var items = this.el.list.querySelectorAll("li[data-id]");
    for (var i = 0; i < items.length; i++) {
      if (Number(items[i].getAttribute("data-id")) >= gap.first) { before = items[i]; break; }
    }
    var li = this.system("Some earlier messages could not be loaded: this view has a gap here.", null, before);
    li.classList.add("chat-gap");
    li.setAttribute("data-gap", key);
  };

  // --- people -------------------------------------------------------------

  Widget.prototype.setUsers = function (names, online) {
    var users = new Map();
    names.forEach(function (n) { if (typeof n === "string") users.set(n.toLowerCase(), n); });
    this.users = users;
    this.online = typeof online === "number" ? online : users.size;
    this.renderUsers();
  };

  Widget.prototype.notice = function (kind, user, ts) {
    var key = user.toLowerCase();
    if (kind === "join") {
      if (!this.users.has(key)) this.online += 1;
      this.users.set(key, user);
      if (user !== this.me) this.system(user + " joined", ts);
    } else {
      if (this.users.has(key) || this.online > this.users.size) this.online = Math.max(0, this.online - 1);
      this.users.delete(key);
      this.system(user + " left", ts);
    }
    this.renderUsers();
  };

  /** Big rooms: coalesced changes instead of a line per join or leave. */
  Widget.prototype.presence = function (p) {
    var users = this.users;
    (Array.isArray(p.joined) ? p.joined : []).forEach(function (n) {
      if (typeof n === "string") users.set(n.toLowerCase(), n);
    });
    (Array.isArray(p.left) ? p.left : []).forEach(function (n) {
      if (typeof n === "string") users.delete(n.toLowerCase());
    });
    if (typeof p.online === "number") this.online = p.online;
    this.renderUsers();
  };

  Widget.prototype.renderUsers = function () {
    var ul = this.el.users;
    var me = (this.me || "").toLowerCase();
    var names = Array.from(this.users.values()).sort(byName);
    while (ul.firstChild) ul.removeChild(ul.firstChild);
    names.forEach(function (n) {
      var li = document.createElement("li");
      li.className = "chat-user";
      li.setAttribute("data-user", n);
      var name = document.createElement("span");
      name.dir = "auto";
      name.textContent = n;
      li.appendChild(name);
      if (n.toLowerCase() === me) {
        li.classList.add("chat-user-me");
        var you = document.createElement("span");
        you.className = "chat-you";
        you.textContent = " (you)";
        li.appendChild(you);
      }
      ul.appendChild(li);
    });
    var online = Math.max(this.online, names.length);
    if (online > names.length) {
      var more = document.createElement("li");
      more.className = "chat-user chat-user-more";
      more.textContent = "and " + (online - names.length) + " more";
      ul.appendChild(more);
    }
    this.el.online.textContent = String(online);
    this.setRoomCount(this.viewRoom, online);
  };

  /** Keep the picker's count for the room we are in exact between room list loads. */
  Widget.prototype.setRoomCount = function (room, online) {
    if (!room) return;
    var list = (this.roomList || []).filter(function (r) { return r && r.room !== room; });
    list.push({ room: room, online: online });
    this.roomList = list;
    this.setRoomOptions(list, this.el.room.value || room);
  };

  // --- sending ------------------------------------------------------------

  Widget.prototype.sendText = function () {
    var text = this.el.input.value;
    if (!text.trim() || !this.joined) return;
    if (!this.send({ type: "msg", payload: { text: text } })) return;
    this.lastSent = text;
    this.el.input.value = "";
    this.updateComposer();
    this.el.input.focus();
  };

  Widget.prototype.updateComposer = function () {
    this.el.input.disabled = !this.joined;
    this.el.send.disabled = !this.joined || !this.el.input.value.trim();
  };

  // --- state and errors ---------------------------------------------------

  Widget.prototype.setState = function (state, text) {
    this.el.status.setAttribute("data-state", state);
    this.root.setAttribute("data-state", state);
    if (this.el.status.textContent !== text) this.el.status.textContent = text;
  };

  Widget.prototype.showError = function (text) {
    this.el.error.textContent = text;
    this.el.error.hidden = false;
  };

  Widget.prototype.clearError = function () {
    this.el.error.textContent = "";
    this.el.error.hidden = true;
  };

  /** Stop for good: the element left the page (e.g. Gradio re-rendered it). */
  Widget.prototype.destroy = function () {
    this.stopped = true;
    this.active = false;
    Object.keys(this.timers).forEach(function (k) {
      clearTimeout(this.timers[k]);
      clearInterval(this.timers[k]);
    }, this);
    if (this.ws) {
      var ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, "widget removed"); } catch (e) { /* gone */ }
    }
    (this.listeners || []).forEach(function (l) { l[0].removeEventListener(l[1], l[2], l[3]); });
    this.listeners = [];
    if (this.root.__chatWidget === this) delete this.root.__chatWidget;
  };

  // --- mounting -----------------------------------------------------------

  function mount(element, options) {
    if (!element) return null;
    var root = element.matches && element.matches("[data-chat-widget]") ? element :
      element.querySelector && element.querySelector("[data-chat-widget]");
    if (!root) return null;
    if (root.__chatWidget && !root.__chatWidget.stopped) return root.__chatWidget;
    root.__chatWidget = new Widget(root, options);
    return root.__chatWidget;
  }

  function mountAll() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chat-widget]"), function (el) { mount(el); });
  }

  global.ChatWidget = { mount: mount, version: 1 };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})(window);

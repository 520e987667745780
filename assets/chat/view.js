/**
 * The view: everything the widget does to the DOM of its [data-chat-widget] element.
 *
 * Every text from the network goes in through textContent or text nodes, never as
 * markup (no innerHTML anywhere); links are made only for http(s) URLs. Each name and
 * each text gets dir="auto": one message in another script cannot reorder the page.
 * The data-testid and class names are the widget's public hooks (tests, chat.css).
 */

const LINK_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
/** The reactions offered by a message's "React" button (any emoji can be given through the protocol). */
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
const TRAILING_PUNCT_RE = /[.,;:!?)\]}]+$/;
const BOTTOM_SLACK_PX = 40;

/** The http(s) URL itself, or null for anything else (javascript:, data:, ...). */
export function safeHref(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (e) {
    return null;
  }
}

/** `text` cut into [{text}, {text, href}, ...]: the http(s) URLs in it, and the rest. */
export function linkParts(text) {
  const parts = [];
  const re = new RegExp(LINK_RE.source, LINK_RE.flags);
  let last = 0;
  let match;
  while ((match = re.exec(text)) !== null) {
    const raw = match[0];
    let trimmed = raw.replace(TRAILING_PUNCT_RE, "");
    // keep a closing bracket that belongs to the URL, as in https://en.wikipedia.org/wiki/Foo_(bar)
    while (trimmed.length < raw.length && raw.charAt(trimmed.length) === ")" &&
           trimmed.split("(").length > trimmed.split(")").length) {
      trimmed += ")";
    }
    const href = trimmed ? safeHref(trimmed) : null;
    if (!href) continue;
    if (match.index > last) parts.push({ text: text.slice(last, match.index) });
    parts.push({ text: trimmed, href });
    last = match.index + trimmed.length;
    re.lastIndex = last;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

function formatTime(ts) {
  const d = new Date(ts * 1000);
  if (isNaN(d.getTime())) return { short: "", full: "", iso: "" };
  return {
    short: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
    full: d.toLocaleString(),
    iso: d.toISOString(),
  };
}

export function createView(root) {
  const doc = root.ownerDocument;
  const win = doc.defaultView;
  const q = (id) => root.querySelector(`[data-testid="${id}"]`);
  const el = {
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
    send: q("chat-send"),
    typing: q("chat-typing"),
    topic: q("chat-topic"),
    count: q("chat-count"),
    notify: q("chat-notify"),
    editing: q("chat-editing"),
    cancelEdit: q("chat-cancel-edit"),
  };
  const listeners = [];
  let enabled = false; // the composer: a room is joined
  let unread = 0;
  let maxText = 0; // the longest text the server takes (0: not known)
  let me = ""; // our name: its @mentions are highlighted
  const reactions = new Map(); // message id -> Map(emoji -> names in the order given)

  function on(target, type, fn, capture) {
    if (!target) return;
    target.addEventListener(type, fn, !!capture);
    listeners.push([target, type, fn, !!capture]);
  }

  function atBottom() {
    const l = el.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight <= BOTTOM_SLACK_PX;
  }

  function scrollToBottom() {
    el.list.scrollTop = el.list.scrollHeight;
  }

  function setUnread(n) {
    unread = n;
    const b = el.unread;
    if (!b) return;
    b.hidden = n <= 0;
    b.textContent = n === 1 ? "1 new message ↓" : n + " new messages ↓";
  }

  function updateSend() {
    el.input.disabled = !enabled;
    const left = maxText ? maxText - Array.from(el.input.value).length : Infinity;
    el.send.disabled = !enabled || !el.input.value.trim() || left < 0;
    showCount(left);
  }

  /** Near the limit, how many characters are left (or how many too many). */
  function showCount(left) {
    const c = el.count;
    if (!c) return;
    const near = left <= Math.min(200, Math.ceil(maxText / 10));
    c.hidden = !near;
    if (!near) return;
    c.toggleAttribute("data-over", left < 0);
    c.textContent = left >= 0 ? `${left} character${left === 1 ? "" : "s"} left` :
      `${-left} character${left === -1 ? "" : "s"} too many: shorten it to send`;
  }

  /** Where new lines go: before the messages still on their way out, which stay last. */
  function firstPending() {
    return el.list.querySelector("li.chat-pending");
  }

  function timeElement(ts) {
    const t = formatTime(typeof ts === "number" ? ts : Date.now() / 1000);
    const time = doc.createElement("time");
    time.className = "chat-time";
    time.textContent = t.short;
    if (t.iso) time.setAttribute("datetime", t.iso);
    time.title = t.full;
    return time;
  }

  /** Text, with each "@me" in a <mark> (as text, never markup). */
  function appendMentions(target, text, mark) {
    const needle = "@" + me.toLowerCase();
    const lower = text.toLowerCase();
    let last = 0;
    for (let i = mark && me ? lower.indexOf(needle) : -1; i >= 0; i = lower.indexOf(needle, last)) {
      if (i > last) target.appendChild(doc.createTextNode(text.slice(last, i)));
      const m = doc.createElement("mark");
      m.className = "chat-at";
      m.textContent = text.slice(i, i + needle.length);
      target.appendChild(m);
      last = i + needle.length;
    }
    if (last < text.length) target.appendChild(doc.createTextNode(text.slice(last)));
  }

  function appendLinkified(target, text, mark) {
    for (const part of linkParts(text)) {
      if (!part.href) {
        appendMentions(target, part.text, mark);
        continue;
      }
      const a = doc.createElement("a");
      a.href = part.href;
      a.textContent = part.text;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      target.appendChild(a);
    }
  }

  function renderMessage(item) {
    const li = doc.createElement("li");
    li.className = "chat-msg";
    li.setAttribute("data-id", String(item.id));
    li.setAttribute("data-user", item.user);
    if (item.own) li.classList.add("chat-own");
    if (item.mention) li.classList.add("chat-mention");
    const meta = doc.createElement("div");
    meta.className = "chat-meta";
    const author = doc.createElement("span");
    author.className = "chat-author";
    author.dir = "auto"; // each name and text its own direction: one message cannot reorder the page
    author.textContent = item.user;
    meta.appendChild(author);
    if (item.bot) {
      li.classList.add("chat-bot");
      const badge = doc.createElement("span");
      badge.className = "chat-bot-badge";
      badge.setAttribute("data-testid", "chat-bot-badge");
      badge.textContent = "BOT";
      badge.title = "A bot: this name is kept for it by the server";
      meta.appendChild(badge);
    }
    meta.appendChild(timeElement(item.ts));
    const body = doc.createElement("div");
    body.className = "chat-text";
    body.dir = "auto";
    appendLinkified(body, item.text, !!item.mention);
    li.appendChild(meta);
    li.appendChild(body);
    if (item.id > 0) {
      if (item.edited) markEdited(li, item.edited);
      reactions.set(item.id, new Map((item.reactions || []).map(([e, names]) => [e, names.slice()])));
      li.appendChild(actions(item));
      renderReactions(li, item.id);
      if (item.deleted) markDeleted(li);
    }
    return li;
  }

  function button(action, label, title, extra) {
    const b = doc.createElement("button");
    b.type = "button";
    b.className = "chat-act";
    b.setAttribute("data-action", action);
    b.setAttribute("data-testid", "chat-" + action);
    b.textContent = label;
    if (title) b.title = title;
    for (const [k, v] of Object.entries(extra || {})) b.setAttribute(k, v);
    return b;
  }

  /** React (a row of quick emoji), and for one's own messages Edit and Delete. */
  function actions(item) {
    const bar = doc.createElement("div");
    bar.className = "chat-actions";
    const picker = doc.createElement("span");
    picker.className = "chat-picker";
    for (const e of QUICK_REACTIONS) picker.appendChild(button("react", e, "React with " + e, { "data-emoji": e }));
    bar.appendChild(picker);
    if (item.own) {
      bar.appendChild(button("edit", "Edit", "Edit your message"));
      bar.appendChild(button("delete", "Delete", "Delete your message"));
    }
    return bar;
  }

  function renderReactions(li, id) {
    let row = li.querySelector(".chat-reactions");
    if (!row) {
      row = doc.createElement("div");
      row.className = "chat-reactions";
      li.insertBefore(row, li.querySelector(".chat-actions"));
    }
    clearChildren(row);
    for (const [emoji, names] of reactions.get(id) || []) {
      if (!names.length) continue;
      const chip = button("toggle", `${emoji} ${names.length}`, names.join(", "), { "data-emoji": emoji });
      chip.className = "chat-reaction";
      chip.setAttribute("data-testid", "chat-reaction");
      chip.setAttribute("aria-pressed", names.includes(me) ? "true" : "false");
      row.appendChild(chip);
    }
  }

  function markEdited(li, ts) {
    let mark = li.querySelector(".chat-edited");
    if (!mark) {
      mark = doc.createElement("span");
      mark.className = "chat-edited";
      mark.setAttribute("data-testid", "chat-edited");
      li.querySelector(".chat-meta").appendChild(mark);
    }
    mark.textContent = "(edited)";
    mark.title = "Edited " + formatTime(ts).full;
  }

  /** Who and when stay; the text, its edits and its reactions go. */
  function markDeleted(li) {
    li.classList.add("chat-deleted");
    li.classList.remove("chat-mention");
    const body = li.querySelector(".chat-text");
    clearChildren(body);
    body.textContent = "message deleted";
    for (const sel of [".chat-edited", ".chat-actions", ".chat-reactions"]) {
      const node = li.querySelector(sel);
      if (node) node.remove();
    }
    reactions.delete(Number(li.getAttribute("data-id")));
  }

  function byId(id) {
    return el.list.querySelector(`li[data-id="${Number(id)}"]`);
  }

  function insertById(li, id) {
    const items = el.list.querySelectorAll("li[data-id]");
    for (const item of items) {
      if (Number(item.getAttribute("data-id")) > id) {
        el.list.insertBefore(li, item);
        return;
      }
    }
    el.list.insertBefore(li, firstPending());
  }

  const PENDING_TEXT = { waiting: "not sent yet: waits for the connection", sending: "sending…" };

  function renderPending(item, me) {
    const li = renderMessage({ id: 0, user: me || item.user, text: item.text, ts: item.ts / 1000, own: true });
    li.removeAttribute("data-id");
    li.classList.add("chat-pending");
    li.setAttribute("data-cid", item.cid);
    li.setAttribute("data-state", item.state);
    const state = doc.createElement("span");
    state.className = "chat-pending-state";
    state.setAttribute("data-testid", "chat-pending-state");
    state.textContent = item.state === "failed" ? "Not sent: " + (item.error || "refused") : PENDING_TEXT[item.state] || "";
    li.querySelector(".chat-meta").appendChild(state);
    if (item.state === "failed") {
      const actions = doc.createElement("div");
      actions.className = "chat-pending-actions";
      for (const [action, label] of [["retry", "Send again"], ["discard", "Discard"]]) {
        const b = button(action, label);
        b.className = "chat-btn";
        actions.appendChild(b);
      }
      li.appendChild(actions);
    }
    return li;
  }

  function system(text, ts, before) {
    const stick = atBottom();
    const li = doc.createElement("li");
    li.className = "chat-system";
    const span = doc.createElement("span");
    span.textContent = text;
    li.appendChild(span);
    li.appendChild(timeElement(ts));
    el.list.insertBefore(li, before || firstPending());
    if (stick) scrollToBottom();
    return li;
  }

  function option(value, label) {
    const opt = doc.createElement("option");
    opt.value = value;
    opt.textContent = label;
    return opt;
  }

  function clearChildren(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  return {
    el,

    /** Wire the controls to the widget's handlers: join, pickRoom(room), roomsWanted, createRoom, send,
     * typed, retry(cid), discard(cid), react(id, emoji), edit(id, text), remove(id), cancelEdit, notify,
     * visibility(visible), wake. */
    bind(h) {
      on(root, "submit", (e) => e.preventDefault(), true);
      on(el.joinForm, "submit", () => h.join());
      on(el.room, "change", () => h.pickRoom(el.room.value));
      on(el.room, "focus", () => h.roomsWanted());
      on(el.room, "pointerdown", () => h.roomsWanted());
      on(el.createRoom, "click", () => h.createRoom());
      on(el.newRoom, "keydown", (e) => {
        if (e.key === "Enter") { e.preventDefault(); h.createRoom(); }
      });
      on(el.composer, "submit", () => h.send());
      on(el.input, "keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
          e.preventDefault();
          h.send();
        }
      });
      on(el.input, "input", () => {
        updateSend();
        if (el.input.value.trim()) h.typed();
      });
      on(el.list, "click", (e) => {
        const b = e.target && e.target.closest ? e.target.closest("[data-action]") : null;
        const li = b && b.closest("li");
        if (!li) return;
        const action = b.getAttribute("data-action");
        if (li.classList.contains("chat-pending")) {
          const cid = li.getAttribute("data-cid");
          if (action === "retry") h.retry(cid);
          else if (action === "discard") h.discard(cid);
          return;
        }
        const id = Number(li.getAttribute("data-id"));
        if (action === "react" || action === "toggle") h.react(id, b.getAttribute("data-emoji"));
        else if (action === "edit") h.edit(id, li.querySelector(".chat-text").textContent);
        else if (action === "delete") h.remove(id);
      });
      on(el.list, "scroll", () => { if (atBottom()) setUnread(0); });
      on(el.unread, "click", () => { scrollToBottom(); setUnread(0); });
      on(el.notify, "click", () => h.notify());
      on(el.cancelEdit, "click", () => h.cancelEdit());
      on(el.input, "keydown", (e) => { if (e.key === "Escape") h.cancelEdit(); });
      // Back online, or back to a tab the browser had put to sleep: do not sit out the backoff.
      on(win, "online", () => h.wake());
      on(doc, "visibilitychange", () => {
        h.visibility(!doc.hidden);
        if (!doc.hidden) h.wake();
      });
      // disabled in the markup until now: a click before the widget was there would submit the form
      if (el.join) el.join.disabled = false;
      if (el.createRoom) el.createRoom.disabled = false;
    },

    destroy() {
      for (const [target, type, fn, capture] of listeners) target.removeEventListener(type, fn, capture);
      listeners.length = 0;
    },

    // --- status and errors

    setStatus(state, text) {
      el.status.setAttribute("data-state", state);
      root.setAttribute("data-state", state);
      if (el.status.textContent !== text) el.status.textContent = text;
    },

    showError(text) {
      el.error.textContent = text;
      el.error.hidden = false;
    },

    clearError() {
      el.error.textContent = "";
      el.error.hidden = true;
    },

    // --- the join bar

    nameValue: () => el.name.value,
    setName(name) { el.name.value = name; },
    fixName(name) {
      el.name.value = name;
      el.name.readOnly = true;
      el.name.title = "Your name comes from your login.";
    },
    focusName() { el.name.focus(); },
    roomValue: () => el.room.value,
    setRoom(room) { el.room.value = room; },
    isRoomPickerFocused: () => doc.activeElement === el.room,
    newRoomValue: () => el.newRoom.value,
    resetNewRoom() {
      el.newRoom.value = "";
      if (el.newRoomBox) el.newRoomBox.open = false;
    },
    focusNewRoom() { el.newRoom.focus(); },

    /** Fill the room picker with [{value, label}]; a list the user has open only grows. */
    setRoomOptions(options, selected) {
      const select = el.room;
      const focused = doc.activeElement === select;
      const same = select.options.length === options.length && options.every((o, i) => {
        const have = select.options[i];
        return have.value === o.value && have.textContent === o.label;
      });
      if (!same && !focused) {
        clearChildren(select);
        for (const o of options) select.appendChild(option(o.value, o.label));
      } else if (!same) {
        for (const o of options) {
          if (!Array.from(select.options).some((have) => have.value === o.value)) {
            select.appendChild(option(o.value, o.label));
          }
        }
      }
      if (selected) select.value = selected;
    },

    // --- the message list

    clearList() {
      clearChildren(el.list);
      setUnread(0);
    },

    busy(on) {
      el.list.setAttribute("aria-busy", on ? "true" : "false");
    },

    /** Messages (each new to the list) in id order; keep the reader's scroll position. */
    addMessages(items, countUnread) {
      if (!items.length) return;
      const stick = atBottom();
      let others = 0;
      let mine = false;
      for (const item of items) {
        const li = renderMessage(item);
        if (item.append) el.list.insertBefore(li, firstPending());
        else insertById(li, item.id);
        if (item.own) mine = true;
        else others += 1;
      }
      if (stick || mine) scrollToBottom();
      else if (countUnread) setUnread(unread + others);
    },

    markOwn(name) {
      me = name || "";
      for (const li of el.list.querySelectorAll("li[data-id]")) {
        li.classList.toggle("chat-own", li.getAttribute("data-user") === me);
      }
    },

    edited(id, text, ts) {
      const li = byId(id);
      if (!li || li.classList.contains("chat-deleted")) return;
      const body = li.querySelector(".chat-text");
      clearChildren(body);
      appendLinkified(body, text, li.classList.contains("chat-mention"));
      markEdited(li, ts);
    },

    deleted(id) {
      const li = byId(id);
      if (li) markDeleted(li);
    },

    /** `user` gave (`on`) or took back `emoji` on message `id`. */
    reacted(id, emoji, user, on) {
      const li = byId(id);
      const all = reactions.get(Number(id));
      if (!li || !all) return;
      const names = (all.get(emoji) || []).filter((n) => n !== user);
      if (on) names.push(user);
      if (names.length) all.set(emoji, names);
      else all.delete(emoji);
      renderReactions(li, Number(id));
    },

    /** Whether our name has given `emoji` on message `id` (the next click takes it back). */
    hasReacted: (id, emoji) => ((reactions.get(Number(id)) || new Map()).get(emoji) || []).includes(me),

    /** The composer edits message `id` (Enter saves, Escape cancels); null: back to writing. */
    editing(id, text) {
      root.toggleAttribute("data-editing", id !== null);
      if (el.editing) el.editing.hidden = id === null;
      if (id !== null) {
        el.input.value = text;
        el.input.focus();
      } else {
        el.input.value = "";
      }
      updateSend();
    },

    /** The "new messages" line, just before message `id` (one line: it moves). */
    markNewLine(id) {
      const old = el.list.querySelector("li.chat-new-line");
      if (old) old.remove();
      const at = el.list.querySelector(`li[data-id="${Number(id)}"]`);
      if (!at) return;
      const li = doc.createElement("li");
      li.className = "chat-new-line";
      li.setAttribute("data-testid", "chat-new-line");
      li.setAttribute("role", "separator");
      const span = doc.createElement("span");
      span.textContent = "New messages";
      li.appendChild(span);
      el.list.insertBefore(li, at);
    },

    /** The button that asks for notifications of mentions: shown, its text, or gone. */
    setNotify(shown, text) {
      if (!el.notify) return;
      el.notify.hidden = !shown;
      el.notify.textContent = text;
    },

    system(text, ts) {
      system(text, ts, null);
    },

    /** welcome.gap: messages after `after` and before `first` could not be replayed. */
    addGap(gap) {
      const key = gap.after + "-" + gap.first;
      for (const li of el.list.querySelectorAll("li[data-gap]")) {
        if (li.getAttribute("data-gap") === key) return;
      }
      let before = null;
      for (const li of el.list.querySelectorAll("li[data-id]")) {
        if (Number(li.getAttribute("data-id")) >= gap.first) { before = li; break; }
      }
      const li = system("Some earlier messages could not be loaded: this view has a gap here.", null, before);
      li.classList.add("chat-gap");
      li.setAttribute("data-gap", key);
    },

    scrollToBottom() {
      scrollToBottom();
      setUnread(0);
    },

    /** The messages on their way out, shown after all the others, each with its state. */
    renderOutgoing(items, me) {
      const stick = atBottom();
      for (const li of el.list.querySelectorAll("li.chat-pending")) li.remove();
      for (const item of items) el.list.appendChild(renderPending(item, me));
      if (stick && items.length) scrollToBottom();
    },

    /** The topic line: the room's topic, and whether it is read-only or in slow mode (as text, never markup). */
    showRules(topic, slow, locked) {
      if (!el.topic) return;
      const notes = [];
      if (locked) notes.push("read-only: only moderators can write");
      if (slow) notes.push(`slow mode: one message every ${slow} s`);
      const text = [topic, notes.length ? "(" + notes.join("; ") + ")" : ""].filter(Boolean).join(" ");
      el.topic.textContent = text;
      el.topic.hidden = !text;
    },

    showTyping(names) {
      if (!el.typing) return;
      el.typing.textContent = !names.length ? "" :
        names.length === 1 ? `${names[0]} is typing…` :
        names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : "Several people are typing…";
    },

    // --- people

    renderUsers(names, me, online) {
      const ul = el.users;
      const mine = (me || "").toLowerCase();
      clearChildren(ul);
      for (const n of names) {
        const li = doc.createElement("li");
        li.className = "chat-user";
        li.setAttribute("data-user", n);
        const name = doc.createElement("span");
        name.dir = "auto";
        name.textContent = n;
        li.appendChild(name);
        if (n.toLowerCase() === mine) {
          li.classList.add("chat-user-me");
          const you = doc.createElement("span");
          you.className = "chat-you";
          you.textContent = " (you)";
          li.appendChild(you);
        }
        ul.appendChild(li);
      }
      if (online > names.length) {
        const more = doc.createElement("li");
        more.className = "chat-user chat-user-more";
        more.textContent = "and " + (online - names.length) + " more";
        ul.appendChild(more);
      }
      el.online.textContent = String(online);
    },

    // --- the composer

    composer(on) {
      enabled = !!on;
      updateSend();
    },
    setMaxText(n) {
      maxText = n;
      updateSend();
    },
    inputValue: () => el.input.value,
    /** The send button is off (over the limit): Enter must not send either. */
    sendBlocked: () => el.send.disabled,
    clearInput() {
      el.input.value = "";
      updateSend();
    },
    focusInput() { el.input.focus(); },
  };
}

/**
 * What the widget remembers between visits, in localStorage:
 *   chat:name                 the last name joined with (not for server-given names)
 *   chat:room                 the last room
 *   chat:token:<lower name>   the resume token for that name
 *   chat:outgoing             messages written and not yet seen stored (JSON, outgoing.js)
 *   chat:notify               "1": a browser notification for each mention (the person opted in)
 * A resume token holds the name in every room (docs/protocol.md), so it is kept per
 * name, not per room. Without storage (private mode, quota, a sandbox) every call is a
 * no-op and the widget works without memory.
 */

export function tokenKey(user) {
  return "chat:token:" + String(user).toLowerCase();
}

/** A wrapper around a Storage (window.localStorage by default) that never throws. */
export function createStorage(backend) {
  function area() {
    if (backend !== undefined) return backend;
    try { return globalThis.localStorage || null; } catch (e) { return null; }
  }

  function get(key) {
    try { const s = area(); return s ? s.getItem(key) : null; } catch (e) { return null; }
  }

  /** null or undefined removes the key. */
  function set(key, value) {
    try {
      const s = area();
      if (!s) return;
      if (value === null || value === undefined) s.removeItem(key);
      else s.setItem(key, String(value));
    } catch (e) { /* private mode, quota: forget it */ }
  }

  return {
    get,
    set,
    name: () => get("chat:name"),
    setName: (name) => set("chat:name", name),
    room: () => get("chat:room"),
    setRoom: (room) => set("chat:room", room),
    /** The unsent messages (anything unreadable is no list: outgoing.clean() checks each entry). */
    outgoing() {
      try { return JSON.parse(get("chat:outgoing") || "[]"); } catch (e) { return []; }
    },
    setOutgoing: (list) => set("chat:outgoing", list.length ? JSON.stringify(list) : null),
    /** The token store the connection uses: per name, case-insensitively. */
    tokens: {
      get: (user) => get(tokenKey(user)),
      set: (user, token) => set(tokenKey(user), token),
      remove: (user) => set(tokenKey(user), null),
    },
  };
}

// Fakes for the widget's Node tests: a clock with timers that run only when told,
// a WebSocket the test opens, feeds and closes, a random source, a token store.

/** setTimeout/clearTimeout/now on a clock that moves only with advance(). */
export class FakeClock {
  constructor(start = 1_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms | 0), ms, fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** The delays (ms) of the timers still due, soonest first. */
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at).map((t) => t.ms);
  }

  /** Move time on by `ms`, running every timer that falls due, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let due = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (!due || timer.at < due[1].at)) due = [id, timer];
      }
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
}

/** A WebSocket class whose instances the test drives; `made` lists them in order. */
export function fakeSockets() {
  const made = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      made.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // --- the test's side
    open() {
      this.readyState = 1;
      if (this.onopen) this.onopen({});
    }

    receive(frame) {
      if (this.onmessage) this.onmessage({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    /** The server (or the network) closes the socket. */
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      if (this.onclose) this.onclose({ code, reason });
    }

    joins() {
      return this.sent.filter((f) => f.type === "join").map((f) => f.payload);
    }
  }
  return { FakeWebSocket, made };
}

/** A random source that returns the given values in turn (the last one forever after). */
export function randoms(...values) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

/** The token store of storage.js, in a Map. */
export function tokenStore(initial = {}) {
  const map = new Map(Object.entries(initial));
  return {
    map,
    get: (user) => map.get(String(user).toLowerCase()) ?? null,
    set: (user, token) => { map.set(String(user).toLowerCase(), token); },
    remove: (user) => { map.delete(String(user).toLowerCase()); },
  };
}

export function welcome(user, room, extra = {}) {
  return { type: "welcome", payload: { user, room, ts: 1, users: [user], online: 1, last_id: 0, gap: null, ...extra } };
}

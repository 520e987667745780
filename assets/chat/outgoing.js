/**
 * Messages on their way out: written, not yet seen back from the server. Pure
 * functions over a list of entries; state.js keeps the list, storage.js keeps it
 * across page reloads.
 *
 * Every message gets a client id (`cid`, docs/protocol.md). It stays in the list
 * until the server sends it back stored (live, or in the replay after a reconnect),
 * and is sent again after every reconnect until then: the server stores a `cid` its
 * author sent within CID_WINDOW_MS only once, so a resend never doubles a message.
 *
 * An entry: {cid, text, room, user, ts (ms, when written), state, error}
 *   state "waiting"  not sent on this connection yet (offline, reconnecting)
 *         "sending"  sent; no echo yet
 *         "failed"   refused with an error (shown beside it): retry or discard
 */

export const CID_WINDOW_MS = 600 * 1000; // the default of rules.cidWindowMs (assets/rules.json cid.window)
export const MAX_OUTGOING = 50; // more unsent messages than this: the oldest are dropped

/** Codes after which the message is sent again by itself on the next connection. */
export const RESEND_ON_RECONNECT = ["shutting_down"];

/** Only well-formed entries, from storage that anyone could have written to. */
export function clean(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((e) => e && typeof e.cid === "string" && /^[A-Za-z0-9_.:-]{1,64}$/.test(e.cid) &&
    typeof e.text === "string" && typeof e.room === "string" && typeof e.user === "string" &&
    typeof e.ts === "number").slice(-MAX_OUTGOING).map((e) => ({
    cid: e.cid, text: e.text, room: e.room, user: e.user, ts: e.ts,
    state: e.state === "failed" ? "failed" : "waiting", // whatever was in flight: not on this page's socket
    error: typeof e.error === "string" ? e.error : "",
  }));
}

export function add(list, entry) {
  return list.concat([{ ...entry, error: "" }]).slice(-MAX_OUTGOING);
}

export function remove(list, cid) {
  return list.some((e) => e.cid === cid) ? list.filter((e) => e.cid !== cid) : list;
}

export function set(list, cid, changes) {
  return list.map((e) => (e.cid === cid ? { ...e, ...changes } : e));
}

/** Everything in flight is back to waiting (the socket closed). */
export function unsent(list) {
  return list.some((e) => e.state === "sending") ?
    list.map((e) => (e.state === "sending" ? { ...e, state: "waiting" } : e)) : list;
}

/**
 * After a welcome as `user` in `room`: the entries to send now, and the list with
 * those marked "sending". One written longer ago than the cid window is not sent by
 * itself (it might be stored already, and would be doubled): it is marked failed, for
 * the person to retry or discard.
 */
export function due(list, user, room, now, windowMs = CID_WINDOW_MS) {
  const send = [];
  const out = list.map((e) => {
    if (e.room !== room || e.user !== user || e.state !== "waiting") return e;
    if (now - e.ts > windowMs) {
      return { ...e, state: "failed", error: "Not confirmed by the server: send it again, or discard it." };
    }
    send.push(e);
    return { ...e, state: "sending" };
  });
  return { list: send.length || out.some((e, i) => e !== list[i]) ? out : list, send };
}

/** What the list shows for `user` in `room`, oldest first. */
export function shown(list, user, room) {
  return list.filter((e) => e.room === room && e.user === user);
}

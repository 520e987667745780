/**
 * The widget's entry module: loads the others and assets/rules.json, then sets
 * window.ChatWidget = {mount(element, options), version} and mounts every widget root
 * waiting for it: those queued in window.__chatPending (Gradio's js_on_load, which
 * may run before this module has) and every [data-chat-widget] on the page.
 *
 *   <script type="module" src="assets/chat/main.js"></script>           (page.html)
 *   <script src="assets/chat.js?v=<hash>"></script>                     (gr.HTML head=: a classic loader)
 *
 * Cache busting: whatever ?v= this module was loaded with is put on every file it
 * loads (the modules below and rules.json), so a page never mixes files of two
 * versions; the server's hash must therefore cover all of them (gradio_app.asset_url).
 * Every URL is relative to this file, so a path prefix (root_path) keeps working.
 */

const version = new URL(import.meta.url).searchParams.get("v");
const suffix = version ? "?v=" + encodeURIComponent(version) : "";
const here = (path) => new URL(path + suffix, import.meta.url).href;

function loadRules() {
  return fetch(here("../rules.json"), { credentials: "same-origin" }).then((r) => {
    if (!r.ok) throw new Error("assets/rules.json: HTTP " + r.status);
    return r.json();
  });
}

/** A message's client id (docs/protocol.md, msg.cid): random, of the form the server takes. */
function newCid() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function load() {
  const [raw, rules, state, connection, view, storage, widget] = await Promise.all([
    loadRules(),
    import(here("./rules.js")),
    import(here("./state.js")),
    import(here("./connection.js")),
    import(here("./view.js")),
    import(here("./storage.js")),
    import(here("./widget.js")),
  ]);
  return {
    Widget: widget.Widget,
    lib: {
      rules: rules.compileRules(raw),
      initialState: state.initialState,
      reduce: state.reduce,
      Connection: connection.Connection,
      createView: view.createView,
      createStorage: storage.createStorage,
      newCid: () => newCid(),
    },
  };
}

function rootOf(element) {
  if (!element) return null;
  if (element.matches && element.matches("[data-chat-widget]")) return element;
  return element.querySelector ? element.querySelector("[data-chat-widget]") : null;
}

function waiting() {
  const queued = window.__chatPending || [];
  window.__chatPending = [];
  return [...queued, ...document.querySelectorAll("[data-chat-widget]")];
}

function fail(error) {
  const text = "The chat could not start (" + (error && error.message || error) + "); reload the page.";
  console.error("chat widget:", error);
  const show = (element) => {
    const root = rootOf(element);
    const status = root && root.querySelector('[data-testid="chat-status"]');
    if (status) { status.textContent = text; status.setAttribute("data-state", "failed"); }
    return null;
  };
  window.ChatWidget = { mount: show, version: 1, failed: text };
  waiting().forEach(show);
}

function start({ Widget, lib }) {
  /** Mount the widget on `element` or the [data-chat-widget] inside it; mounting twice returns the same widget. */
  function mount(element, options) {
    const root = rootOf(element);
    if (!root) return null;
    if (root.__chatWidget && !root.__chatWidget.stopped) return root.__chatWidget;
    root.__chatWidget = new Widget(root, lib, options);
    return root.__chatWidget;
  }
  window.ChatWidget = { mount, version: 1 };
  const mountAll = () => waiting().forEach((el) => mount(el));
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
}

// Loaded twice (the page and a component, or two versions): the first one wins.
if (!window.ChatWidget && !window.__chatStarting) {
  window.__chatStarting = true;
  load().then(start, fail);
}

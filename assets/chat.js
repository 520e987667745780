/*
 * The chat widget's loader, a classic script: for pages that can only load a classic
 * <script src>, such as Gradio's gr.HTML `head=` (which re-creates each script with only
 * its src, so type="module" would be lost). It loads the widget's entry module,
 * assets/chat/main.js, with the same ?v= query as this file; main.js sets
 * window.ChatWidget and mounts the widget roots (including those queued in
 * window.__chatPending before it ran). Pages that can use a module script load
 * assets/chat/main.js directly (see page.html).
 */
(function () {
  "use strict";
  if (window.ChatWidget || window.__chatLoader) return;
  var self = document.currentScript;
  var here = new URL(self && self.src ? self.src : "assets/chat.js", document.baseURI);
  var entry = new URL("chat/main.js", here);
  entry.search = here.search; // the cache-busting ?v=<hash>
  var script = document.createElement("script");
  script.type = "module";
  script.src = entry.href;
  script.onerror = function () {
    var text = "The chat script (assets/chat/main.js) did not load; reload the page.";
    var show = function (el) {
      var status = el && el.querySelector && el.querySelector('[data-testid="chat-status"]');
      if (status) { status.textContent = text; status.setAttribute("data-state", "failed"); }
      return null;
    };
    window.ChatWidget = { mount: show, version: 1, failed: text };
    (window.__chatPending || []).forEach(show);
    window.__chatPending = [];
    Array.prototype.forEach.call(document.querySelectorAll("[data-chat-widget]"), show);
  };
  window.__chatLoader = script;
  document.head.appendChild(script);
})();

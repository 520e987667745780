"""The chat app: the chat widget in a Gradio page, on the same port as the chat server.

    python gradio_app.py                    # http://127.0.0.1:7860
    python gradio_app.py --share            # and a public share link to the same port
    uvicorn gradio_app:app --port 7860      # the same app, served by uvicorn (see the README's flags)

One port serves the Gradio UI at /, the chat WebSocket at /ws, the HTTP API
(/api/rooms, /healthz, /openapi.json, /docs) and the plain page /chat. This file
is the UI; what joins it to the chat server is chat_core.gradio_support.
"""

from __future__ import annotations

import hashlib

import gradio as gr

from chat_core.gradio_support import (  # noqa: F401
    ASSETS,
    ChatRoutes,
    bind_host,
    chat_app,
    gradio_login,
    launch,
    mount,
    parse_args,
    server_options,
    settings_from,
)

# --- the widget: the markup of assets/page.html, with chat.js and chat.css ---

PAGE = (ASSETS / "page.html").read_text(encoding="utf-8")
WIDGET_HTML = PAGE[PAGE.index("<section", PAGE.index("<!-- chat-widget:start")):PAGE.index("<!-- chat-widget:end")]


def asset_url(name: str, *also: str) -> str:
    """A relative URL (so it works under a path prefix) that changes when the file does,
    or any file under assets/ that the `also` globs match."""
    digest = hashlib.sha256()
    for path in [ASSETS / name, *sorted(p for pattern in also for p in ASSETS.glob(pattern))]:
        digest.update(path.relative_to(ASSETS).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"assets/{name}?v={digest.hexdigest()[:12]}"


# gr.HTML does not run <script> tags in its content, and `head` re-creates each script
# with its src alone (type="module" would be lost): so `head` loads assets/chat.js, a
# classic loader, which loads the widget's modules (assets/chat/main.js and the rest)
# with its own ?v=, a hash over all of them. Gradio runs `js_on_load` once chat.js has
# run, perhaps before the modules have: the element then waits in window.__chatPending,
# which main.js mounts when it starts.
WIDGET_HEAD = (
    f'<link rel="stylesheet" href="{asset_url("chat.css")}">'
    f'<script src="{asset_url("chat.js", "chat/*.js", "rules.json")}"></script>'
)
WIDGET_JS = """
if (window.ChatWidget) {
  window.ChatWidget.mount(element);
} else {
  window.__chatPending = (window.__chatPending || []).concat(element);
}
"""

with gr.Blocks(title="Realtime chat") as demo:
    gr.Markdown(
        "## Realtime chat\n"
        "Pick a name, join a room and talk. Open a second tab to see messages arrive. "
        "The same chat without Gradio is at [chat](chat); the HTTP API is described at [docs](docs)."
    )
    gr.HTML(
        WIDGET_HTML,
        head=WIDGET_HEAD,
        js_on_load=WIDGET_JS,
        apply_default_css=False,
        elem_id="chat-widget",
    )


if __name__ == "__main__":
    launch(demo)
else:
    app = mount(demo)

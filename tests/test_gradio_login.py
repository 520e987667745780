"""The Gradio internals chat_core.gradio_support.gradio_login reads (Gradio 6.31:
the session cookie ``access-token[-unsecure]-<App.cookie_id>`` and the ``App.tokens``
table): in-process, through Gradio's own login route, so a Gradio that changes them
fails here rather than locking every logged-in user out of the chat."""

from __future__ import annotations

from starlette.testclient import TestClient

from chat_core.settings import Settings


def test_a_gradio_login_session_is_the_chat_login() -> None:
    import gradio_app

    app = gradio_app.mount(gradio_app.demo, Settings(db=":memory:", auth="ann:pw"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/me").json() == {"user": None, "ticket": None}
        login = client.post("/login", data={"username": "ann", "password": "pw"})
        assert login.status_code == 200, login.text
        cookie_id = app.gradio.cookie_id
        names = set(client.cookies.keys())
        assert names & {f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"}, names
        me = client.get("/api/me").json()
        assert me["user"] == "ann" and me["ticket"]
        assert client.get("/api/rooms").status_code == 200
        client.cookies.clear()
        assert client.get("/api/rooms").status_code == 401

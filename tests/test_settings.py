"""Every setting is strict: a value it cannot take stops the start with one line
naming the setting, the value and what it accepts (before, an unknown boolean
silently became false, which turns a security check off)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chat_core.settings import SettingError, Settings
from servers import ROOT


@pytest.mark.parametrize(
    "env,named",
    [
        ({"CHAT_REQUIRE_ORIGIN": "ture"}, "--require-origin (CHAT_REQUIRE_ORIGIN): 'ture' is not a boolean"),
        ({"CHAT_RATE": "fast"}, "--rate (CHAT_RATE): 'fast' is not a number"),
        ({"CHAT_RATE": "nan"}, "--rate (CHAT_RATE): 'nan' is not a finite number"),
        ({"CHAT_BURST": "2.5"}, "--burst (CHAT_BURST): '2.5' is not a whole number"),
        ({"CHAT_TRUST_PROXY": "maybe"}, "--trust-proxy (CHAT_TRUST_PROXY): 'maybe' is not"),
        ({"CHAT_TRUST_PROXY": "0"}, "--trust-proxy (CHAT_TRUST_PROXY): '0' is not"),
        (
            {"CHAT_ALLOWED_ORIGINS": "example.org"},
            "--allowed-origins (CHAT_ALLOWED_ORIGINS): 'example.org' is not an origin",
        ),
        ({"CHAT_ALLOWED_HOSTS": "http://x"}, "--allowed-hosts (CHAT_ALLOWED_HOSTS): 'http://x' is not a host name"),
        ({"CHAT_AUTH": "nopassword"}, "--auth (CHAT_AUTH): auth entries are user:password"),
        ({"CHAT_MAX_TEXT": "-1"}, "--max-text (CHAT_MAX_TEXT): -1 must not be negative"),
    ],
)
def test_a_bad_value_is_refused_with_one_line_naming_it(env: dict, named: str) -> None:
    with pytest.raises(SettingError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert named in message and "\n" not in message, message


def test_good_values_pass() -> None:
    s = Settings.from_env(
        {
            "CHAT_REQUIRE_ORIGIN": "off",
            "CHAT_TRUST_PROXY": "2",
            "CHAT_RATE": "2.5",
            "CHAT_ALLOWED_ORIGINS": "https://*.hf.space, http://localhost:3000/",
            "CHAT_ALLOWED_HOSTS": "chat.example.org,*.example.org,[::1]",
        }
    )
    assert (s.require_origin, s.trust_proxy, s.rate) == (False, "2", 2.5)
    with pytest.raises(AttributeError):
        s.rate = 1  # type: ignore[misc]  # immutable


@pytest.mark.parametrize("how", ["env", "flag"])
def test_the_server_stops_at_startup_with_that_line(how: str) -> None:
    env = {**os.environ, "CHAT_DB": ":memory:"}
    argv = [sys.executable, "-m", "chat_core", "--port", "0"]
    if how == "env":
        env["CHAT_REQUIRE_ORIGIN"] = "ture"
    else:
        argv += ["--rate", "fast"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    wanted = "'ture' is not a boolean" if how == "env" else "'fast' is not a number"
    assert wanted in lines[-1] and "Traceback" not in done.stderr, lines

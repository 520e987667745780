"""assets/rules.json is the one source of the validation rules: the server reads it
(chat_core.rules), the widget reads it (assets/chat/rules.js, tested under Node), and
every character it forbids in a name the server's full name rules refuse too."""

from __future__ import annotations

import pytest

from chat_core import names, protocol, rules
from chat_core.settings import Settings


def test_the_server_reads_the_shared_rules() -> None:
    assert protocol.ROOM_RE is rules.ROOM_RE and protocol.DEFAULT_ROOM == rules.DEFAULT_ROOM == "lobby"
    assert names.MAX_NAME == rules.MAX_NAME and Settings().max_text == rules.MAX_TEXT


@pytest.mark.parametrize("low,high", rules.forbidden_in_names())
def test_every_character_the_widget_refuses_in_a_name_the_server_refuses(low: int, high: int) -> None:
    for code in sorted({low, (low + high) // 2, high}):
        for name in (f"a{chr(code)}b", f"{chr(code)}ab", f"ab{chr(code)}"):
            with pytest.raises(names.BadName):
                names.enforce(name)

"""The docs stay true: the README's generated parts, and docs/protocol.md against the code."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def test_readme_generated_parts_are_current():
    # The README's command, with this checkout's chat_core first on the path (not another one installed editable).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr


def test_every_error_code_and_close_code_in_the_code_is_documented():
    source = "\n".join(p.read_text() for p in (ROOT / "chat_core").glob("*.py"))
    codes = set(re.findall(r'(?:ProtocolError|Refusal)\(\s*"([a-z_]+)"', source))
    codes |= set(re.findall(r'error\(\s*"([a-z_]+)"', source))
    codes.discard("closed")  # internal: never sent (the connection is already closed)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", PROTOCOL, re.M))
    assert codes and codes <= documented, codes - documented
    from chat_core.protocol import CloseCode

    assert not re.findall(r"close\((\d{4})", source)  # every close code the server sends is a CloseCode
    for code in CloseCode:
        assert re.search(rf"^\| {code} \|", PROTOCOL, re.M), code


def test_every_setting_is_in_the_readme():
    import dataclasses

    from chat_core.settings import Settings, env_name

    readme = (ROOT / "README.md").read_text()
    for f in dataclasses.fields(Settings):
        assert env_name(f.name) in readme


def test_every_module_of_chat_core_is_in_its_list():
    """chat_core/__init__.py's docstring names each module with its job: a new one is added there."""
    import chat_core

    listed = set(re.findall(r":mod:`chat_core\.(\w+)`", chat_core.__doc__ or ""))
    modules = {p.stem for p in (ROOT / "chat_core").glob("*.py")} - {"__init__"}
    assert modules == listed, (modules - listed, listed - modules)

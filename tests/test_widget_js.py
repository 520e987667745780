"""The chat widget's JavaScript unit tests, tests/js/*.test.mjs, on Node's built-in runner
(`node --test`; no npm packages). They cover the parts of assets/chat/ that need no DOM:
the protocol reducer, the connection (with a fake WebSocket, clock and random source),
the rules from assets/rules.json, links in texts and the status line.

Without Node (18 or newer) this skips, except on CI, where it fails (tests/ci.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ci import missing
from servers import ROOT

JS_TESTS = sorted((ROOT / "tests" / "js").glob("*.test.mjs"))
NODE_MIN = 18  # the first with `node --test`


def node() -> str:
    wanted = os.environ.get("NODE")
    path = shutil.which(wanted) if wanted else shutil.which("node") or shutil.which("nodejs")
    if not path:
        missing(f"no node at {wanted}" if wanted else "node is not installed (apt-get install nodejs)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    found = re.match(r"v(\d+)\.", out)
    if not found or int(found.group(1)) < NODE_MIN:
        missing(f"node {out or '?'} at {path} is too old: `node --test` needs Node {NODE_MIN} or newer")
    return path


def test_widget_javascript_unit_tests() -> None:
    assert JS_TESTS, "no tests/js/*.test.mjs"
    # The files by name rather than the directory: Node 20 searches a directory for
    # test files, but Node 22 takes only files or globs.
    proc = subprocess.run(
        [node(), "--test", *(str(p.relative_to(ROOT)) for p in JS_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NODE_OPTIONS": "", "NO_COLOR": "1"},
    )
    report = f"node --test exited with {proc.returncode}\n{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", proc.stdout, re.M))
    assert int(counts.get("tests", 0)) > 0 and counts.get("fail") == "0", report

"""The benchmark command still runs (issue 5): `python bench/run.py --quick`, a
smoke run of every scenario against the app and both references. Figures are not
asserted here (the machines are noisy); docs/benchmarks.md holds them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_benchmark_runs_every_scenario(tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Busy room" in done.stdout and "websockets ref" in done.stdout and "app (chat_core)" in done.stdout
    assert "app (gradio_app.py)" in done.stdout
    results = json.loads(out.read_text())
    assert results

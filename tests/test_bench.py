"""The benchmark commands still run: `python bench/run.py --quick` (issue 5), a
smoke run of every scenario against the app and both references, and
`python bench/scale_out.py --quick` (issue 11), the crowd over two processes on Redis. Figures are not
asserted here (the machines are noisy); docs/benchmarks.md holds them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(script: str, out: Path, timeout: float) -> subprocess.CompletedProcess:
    """`python bench/<script> --quick`, its raw figures in `out`; it must end with 0."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.timeout(300)
def test_quick_benchmark_runs_every_scenario(tmp_path):
    out = tmp_path / "r.json"
    done = bench("run.py", out, 280)
    assert "Busy room" in done.stdout and "websockets ref" in done.stdout and "app (chat_core)" in done.stdout
    assert "app (gradio_app.py)" in done.stdout
    results = json.loads(out.read_text())
    assert results


@pytest.mark.redis
@pytest.mark.timeout(200)
def test_quick_scale_out_spreads_one_room_over_two_processes(tmp_path, redis_server):
    """`python bench/scale_out.py --quick`: one room over two processes on Redis, every client
    joined, half on each process, and every delivery received (the crowd of issue 11, small).
    (`redis_server` only for its check that redis-server exists: the script starts its own.)"""
    out = tmp_path / "s.json"
    done = bench("scale_out.py", out, 180)
    cluster = json.loads(out.read_text())["runs"][0]["crowd"]["redis-2"]
    assert cluster["joined"] == 400 and cluster["server_conns_each"] == [200, 200]
    assert cluster["lost"] == 0 and cluster["received"] == cluster["expected"] == 3 * 400
    assert "2 processes, Redis" in done.stdout

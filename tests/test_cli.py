"""The ``nbllm`` command as ``make demo`` runs it: offline on the simulator, in a fresh process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_offline_and_reports_a_speedup(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NBLLM_STORE": str(tmp_path / "store.sqlite3")}
    done = subprocess.run([sys.executable, "-m", "nbllm._cli", "demo", "-n", "3"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "concurrent (agenerate)" in done.stdout and "speedup" in done.stdout
    assert "embedded simulator" in done.stderr  # said once, so nobody mistakes it for a provider

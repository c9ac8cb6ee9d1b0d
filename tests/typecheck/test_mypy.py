"""The package and the example programs in tests/typecheck pass mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_accepts_the_package_and_public_api_programs() -> None:
    """mypy --strict (configured in pyproject.toml) reports no error."""
    pytest.importorskip("mypy", reason="mypy is not installed (the 'typing' extra)")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

"""The browser the page tests use: Debian's chromium, offline but for 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import CHROMIUM, child_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser


def test_the_browser_is_debians_chromium(browser: Browser) -> None:
    """The session's browser is the chromium binary the tests name, same version."""
    done = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True
    )
    assert browser.browser_type.name == "chromium"
    assert browser.version in done.stdout


def test_a_request_outside_127_0_0_1_is_aborted_and_noted(
    page: Page, blocked: list[str]
) -> None:
    """A page's request to another host never leaves the machine and is recorded."""
    page.set_content(
        '<img src="http://192.0.2.1/pixel.png">'
        '<link rel="stylesheet" href="https://cdn.example.invalid/x.css">'
    )
    page.wait_for_load_state("load")

    assert sorted(blocked) == [
        "http://192.0.2.1/pixel.png",
        "https://cdn.example.invalid/x.css",
    ]
    assert page.evaluate("document.images[0].naturalWidth") == 0


def test_a_missing_chromium_fails_the_test_with_the_install_command(
    tmp_path: Path,
) -> None:
    """Without chromium a browser test fails (never skips) and says how to install."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_needs_page.py").write_text(
        textwrap.dedent(
            """
            def test_uses_a_page(page):
                assert page is not None
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**child_env(), "RUNLOG_CHROMIUM": str(tmp_path / "no-chromium")},
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout
    assert "skipped" not in done.stdout
    assert "no chromium at" in done.stdout
    assert "apt-get install chromium" in done.stdout

"""Headless Chromium for the tests that look at a page as a person would (Debian's `chromium`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000", "--virtual-time-budget=30000"]


def chromium() -> str:
    """The browser's path; skips the calling test, saying why, when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found (Debian's `chromium` package; .ci/run installs it where it can)")


def dump_dom(browser: str, url: str) -> str:
    """The page's DOM once its scripts have run."""
    result = subprocess.run([browser, *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(browser: str, url: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([browser, *FLAGS, f"--screenshot={path}", url], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and path.exists(), result.stderr[-2000:]
    return path

"""A real headless Chromium (Debian's, /usr/bin/chromium) driven by Playwright, for the
report tests: console errors and every request are recorded, screenshots are written under
tests/artifacts/ (CI keeps them)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .helpers import REPO

ARTIFACTS = REPO / "tests" / "artifacts"
# as root, in a sandbox without a network: no sandbox, and none of Chromium's own traffic
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Opened:
    page: Any
    load_s: float
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> bytes:
        ARTIFACTS.mkdir(exist_ok=True)
        png: bytes = self.page.screenshot(path=str(ARTIFACTS / name), full_page=False)
        return png


@contextmanager
def opened(path: Path, width: int = 1200, height: int = 1600) -> Iterator[Opened]:
    """``path`` loaded in a fresh headless Chromium; fails (not skips) without one."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        raise AssertionError("Debian's chromium is not installed: tests/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            t = time.monotonic()
            page.goto(path.resolve().as_uri(), wait_until="load")
            yield Opened(page, time.monotonic() - t, errors, requests)
        finally:
            browser.close()


def blank_png(width: int = 1200, height: int = 1600) -> bytes:
    """A screenshot of an empty page of the same size: what "blank" looks like."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_content("<html><body></body></html>")
        png: bytes = page.screenshot()
        browser.close()
        return png

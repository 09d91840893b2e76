"""Debian's headless Chromium and its chromedriver, for the tests that drive a browser.

When they are missing and the tests run as root, the first test module that asks
installs them (apt-get); elsewhere those tests skip with one line, and REQUIRE_BROWSER=1
(set by CI) turns that skip into a failure. The check runs when it is asked, not when
this module is imported: on a clean machine the browser appears during collection.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_TIMEOUT_S = 600
BROWSER_REQUIRED = os.environ.get("REQUIRE_BROWSER", "") == "1"


@contextmanager
def _one_installer() -> Iterator[None]:
    # pytest-xdist's workers each collect the browser modules: two apt-gets at once
    # would fight over dpkg's lock, so the second waits and then finds the browser.
    with (Path(tempfile.gettempdir()) / "singleton-tests-browser.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def browser_missing() -> str:
    """Install Debian's chromium and chromium-driver if missing; return why not, or ''."""
    with _one_installer():
        if CHROMIUM.exists() and CHROMEDRIVER.exists():
            return ""
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            return "Chromium is not installed (apt-get install chromium chromium-driver, as root)"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        for args in (["apt-get", "update", "-q"], install):
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
            if done.returncode != 0:
                return f"{' '.join(args)} failed: {done.stderr.strip()[-300:]}"
        return "" if CHROMIUM.exists() and CHROMEDRIVER.exists() else "apt-get left no /usr/bin/chromium"


def require_browser() -> Path:
    """Return Chromium's path; skip the test without it (fail under REQUIRE_BROWSER=1)."""
    missing = browser_missing()
    if missing and BROWSER_REQUIRED:
        pytest.fail(f"REQUIRE_BROWSER=1 but {missing}", pytrace=False)
    if missing:
        pytest.skip(f"browser tests skipped: {missing}")
    return CHROMIUM


def rendered_dom(url: str, profile: Path, *, budget_ms: int = 15000) -> str:
    """Load `url` in headless Chromium, run its scripts, and return the page's DOM."""
    args = [str(require_browser()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
            "--dump-dom", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout

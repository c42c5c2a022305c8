"""Headless Chromium for the tests that look at a page (marker `browser`), driven by Selenium
with Debian's chromium and chromium-driver packages; no browser is ever downloaded.

`browser_or_skip()` gives a WebDriver, or skips the test with the reason (no selenium, no
chromium, no chromedriver); `.ci/run` installs all three, so CI runs these tests.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# the network is closed: no first-run, sync, update or QUIC traffic, and a fresh profile each time
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def find_browser() -> tuple[str | None, str | None, str]:
    """(chromium path, chromedriver path, why not) on this machine."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None:
        return None, driver, "no Chromium found (apt-get install chromium chromium-driver)"
    if driver is None:
        return browser, None, "no chromedriver found (apt-get install chromium-driver)"
    return browser, driver, ""


def open_browser(width: int = 1200, height: int = 800, profile: str | None = None):
    """A headless Chromium WebDriver of that window size, with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver, why = find_browser()
    if why:
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='charrnn-chromium-')}")
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def browser_or_skip(profile: str, width: int = 1200, height: int = 800):
    """open_browser, or pytest.skip with the reason there is none."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[browser]')")
    why = find_browser()[2]
    if why:
        pytest.skip(why)
    return open_browser(width, height, profile)

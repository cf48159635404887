"""Browser tests: Debian's chromium, headless, driven by Selenium through chromedriver.

``browser`` skips with the reason when chromium, chromedriver or selenium is absent
(``apt-get install -y chromium chromium-driver``; selenium is in the ``dev`` extra).
``dashboard_for(settings)`` starts ``moodstream dashboard``'s server in this process on a free port.
Helpers are in ``browserkit.py``.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _find(names) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


@pytest.fixture(scope="session")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    binary = os.environ.get("MOODSTREAM_TEST_CHROMIUM") or _find(CHROMIUM)
    driver_path = os.environ.get("MOODSTREAM_TEST_CHROMEDRIVER") or _find(("chromedriver",))
    if not binary or not driver_path:
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def dashboard_for():
    """``dashboard_for(settings)`` -> a started Dashboard (stopped after the test)."""
    pytest.importorskip("starlette", reason="needs the dashboard extra (starlette, uvicorn)")
    from moodstream.producer.dashboard.server import Dashboard

    started = []

    def start(settings):
        board = Dashboard(settings.replace(dashboard_port=0)).start()
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()

"""Helpers for the browser tests: waiting on the page, screenshots, a real service in threads."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager


def wait_until(fn, timeout_s: float = 30.0):
    """Call ``fn`` until it returns something truthy (then that) or ``timeout_s`` passes (then the last value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def wait_js(driver, script: str, timeout_s: float = 30.0):
    """:func:`wait_until` the page's ``script`` returns something truthy."""
    return wait_until(lambda: driver.execute_script(script), timeout_s)


def screenshot(driver, name: str) -> None:
    """With ``MOODSTREAM_SCREENSHOTS=DIR`` the page is saved as ``DIR/name`` (the README's figures:
    ``MOODSTREAM_SCREENSHOTS=docs/figures``)."""
    folder = os.environ.get("MOODSTREAM_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        driver.save_screenshot(os.path.join(folder, name))


@contextmanager
def service(settings, checkpoint, name: str = "w-browser"):
    """A real worker (the shipped detector and classifier) and the track stage, each in a thread."""
    from moodstream.worker.tracking.stage import TrackStage
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.service import Worker

    worker = Worker(settings, Pipeline(settings, checkpoint=checkpoint), name=name, handle_signals=False,
                    device="cpu")
    stage = TrackStage(settings, name=f"{name}-track", reorder_wait_ms=500)
    threads = [threading.Thread(target=x.run, name=n, daemon=True) for x, n in ((worker, name), (stage, "track"))]
    for t in threads:
        t.start()
    try:
        yield worker, stage
    finally:
        worker.request_stop()
        stage.request_stop()
        for t in threads:
            t.join(60)
    # (when the body passed) a stage still flushing would publish its summary after the test read the streams
    assert not any(t.is_alive() for t in threads), [t.name for t in threads if t.is_alive()]

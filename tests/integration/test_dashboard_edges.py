"""The dashboard as users and attackers met it (each case failed before its fix): a photo's boxes
without their track ids, two long source names in one card, a loopback address other than 127.0.0.1
that answered every request 'Invalid host header', and a page that stops reading (a stalled client)
holding the whole snapshot in the server's memory."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_dashboard import get, result, settings_for

from moodstream.producer.dashboard import model as dm
from moodstream.shared.record import FrameResult

pytest.importorskip("starlette", reason="needs the dashboard extra (starlette, uvicorn)")
from moodstream.producer.dashboard.server import Dashboard  # noqa: E402


def untracked(r: FrameResult) -> FrameResult:
    """``r`` as the worker publishes it, before the track stage gives its faces ids."""
    for f in r.faces:
        f.track_id, f.smoothed = None, None
    return r


def test_the_tracked_answer_of_the_frame_shown_replaces_its_untracked_one():
    """A photo (or any frame the worker answered before the track stage caught up): the untracked
    result came first and its tracked one, of the same frame, never replaced it: boxes labelled
    'sadness 44%' where the people list showed #0-#4."""
    model = dm.Model()
    model.fold("results", "1000-0", untracked(result("photo.jpg", 0)))
    model.fold("tracked", "1001-0", result("photo.jpg", 0, track_id=3))
    (src,) = model.snapshot()["sources"]
    assert [f["track_id"] for f in src["latest"]["faces"]] == [3]
    model.fold("results", "1002-0", untracked(result("photo.jpg", 0)))  # and not the other way round
    (src,) = model.snapshot()["sources"]
    assert [f["track_id"] for f in src["latest"]["faces"]] == [3]


def test_two_sources_whose_names_differ_after_300_characters_are_two_cards():
    """Names were cut to 300 characters to key the sources: 'A' * 400 + '0-one' and ... + '0-two'
    were one card with both sources' results and people (deep paths, long URLs)."""
    model = dm.Model()
    one, two = "A" * 400 + "0-one", "A" * 400 + "0-two"
    for k, name in enumerate((one, two)):
        model.fold("tracked", f"{1000 + k}-0", result(name, 0))
    names = [s["name"] for s in model.snapshot()["sources"]]
    assert len(names) == 2 and len(set(names)) == 2 and all(len(n) <= dm.TEXT_CHARS for n in names)


def test_a_loopback_address_of_its_own_answers(redis_url):
    """`dashboard --host 127.0.0.2` started, printed http://127.0.0.2:PORT/ and answered every request
    400 'Invalid host header': the Host guard knew only localhost, 127.0.0.1 and ::1."""
    b = Dashboard(settings_for(redis_url, dashboard_host="127.0.0.2")).start()
    try:
        status, _, body = get(b.url + "api/state")
        assert status == 200, body[:200]
        assert "sources" in json.loads(body)
        status, _, _ = get(b.url + "api/state", headers={"Host": "evil.example"})
        assert status == 400  # a rebound DNS name is still refused
    finally:
        b.stop()

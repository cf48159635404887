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


def _big_summaries(client, keys, n: int = 16) -> None:
    """n summaries of 64 tracks, each with a picture: a snapshot of about 1 MB a source (the bound)."""
    import base64
    import os as _os

    picture = base64.b64encode(_os.urandom(15000)).decode()
    for s in range(n):
        tracks = [{"track_id": i, "person": True, "first_timestamp_s": 0.0, "last_timestamp_s": 5.0, "frames": 150,
                   "dominant": "happiness", "mean_probabilities": {"happiness": 0.6}, "episodes": []}
                  for i in range(64)]
        client.xadd(keys.summaries, {"msg": json.dumps({"source": f"big-{s}", "run": 1, "tracks": tracks,
                                                         "thumbnails": {str(i): picture for i in range(64)}})})


def test_pages_that_stop_reading_hold_no_copy_of_the_snapshot_each(redis_url, client, keys):
    """A client that opens /events and never reads (a stalled tab, a slow link, anyone) held the whole
    snapshot in the server, serialised and encoded for it alone (18.8 MB here): 40 such clients took the
    dashboard from 192 MB to 869 MB, 80 to 2.6 GB, against the 256Mi of deploy/k8s. The snapshot is
    serialised once and sent in pieces as the client reads them; one that does not read holds a piece."""
    import socket
    import time
    import tracemalloc

    _big_summaries(client, keys)
    b = Dashboard(settings_for(redis_url)).start()
    socks = []
    try:
        big = 0
        deadline = time.monotonic() + 30
        while big < 10 << 20 and time.monotonic() < deadline:
            big = len(get(b.url + "api/state")[2])
            time.sleep(0.2)
        assert big >= 10 << 20, big
        host, port = b.url.split("//")[1].rstrip("/").rsplit(":", 1)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(12):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((host, int(port)))
            s.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            socks.append(s)
        time.sleep(4)
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert held < 40 << 20, f"{held / 2**20:.0f} MiB for 12 stalled clients of a {big / 2**20:.1f} MiB snapshot"
        status, _, body = get(b.url + "api/state")  # and the page still answers
        assert status == 200
    finally:
        for s in socks:
            s.close()
        b.stop()


def test_a_page_that_takes_nothing_is_dropped(redis_url, client, keys, monkeypatch, caplog):
    """Past SEND_TIMEOUT_S without taking a piece, a page's stream ends (its connection closed by the
    server; a browser's EventSource reconnects when it reads again): said at INFO, not as uvicorn's
    error for an unfinished response."""
    import logging
    import socket
    import time

    from moodstream.producer.dashboard import server

    monkeypatch.setattr(server, "SEND_TIMEOUT_S", 1.0)
    _big_summaries(client, keys, 4)
    b = Dashboard(settings_for(redis_url)).start()
    caplog.set_level(logging.INFO)
    s = socket.socket()
    try:
        host, port = b.url.split("//")[1].rstrip("/").rsplit(":", 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, int(port)))
        s.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("dropped a page" in r.getMessage() for r in caplog.records):
            time.sleep(0.2)
        assert any("dropped a page that took nothing for 1 s" in r.getMessage() for r in caplog.records)
        assert not any("without completing" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    finally:
        s.close()
        b.stop()

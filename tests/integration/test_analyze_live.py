"""`moodstream analyze URL` on a camera's stream that stalls (a real MJPEG server, tests/support/mjpeg.py,
and the real models): each frame is analysed as it is read, a stall holds none back, and Ctrl-C in the
stall ends the run at once with every frame read analysed and printed."""

from __future__ import annotations

import json
import time

from tests.support.mjpeg import ctrl_c_in_a_stall, serve, stalling, url

from moodstream.worker.analyze import analyze


def test_a_stall_holds_back_no_analysed_frame(pipeline):
    """A stream's frames waited for a full batch (batch_max, 16) before any was analysed: a camera that
    stalled, or sends a frame a second, held up to 15 read frames back (the 5 here until the stall
    ended), and Ctrl-C lost them ('interrupted after 0 frames'); the last one read before a stall was
    held, waiting for the next read to decide its shot, up to OpenCV's 30 s read timeout."""
    server = serve(0, lambda connection: stalling(5, 3.0, (96, 128)))
    try:
        started, came = time.monotonic(), []
        for record in analyze(url(server), pipeline=pipeline):
            came.append((record.frame, time.monotonic() - started))
    finally:
        server.shutdown()
        server.server_close()
    assert [f for f, _ in came] == list(range(6))
    assert all(t < 2.0 for _, t in came[:5]), came  # before the stall ends (3 s)
    assert came[5][1] >= 3.0


def test_ctrl_c_while_the_stream_stalls_ends_analyze_at_once():
    """Ctrl-C during a stalled read: the read blocked in FFmpeg on the main thread until OpenCV's 30 s
    read timeout (27 s measured), then 'interrupted after 0 frames', the 10 frames read never printed."""
    code, took, lines, err = ctrl_c_in_a_stall(["analyze", "--device", "cpu"], ready_s=20)  # the model loads
    assert code == 130 and "Traceback" not in err, (code, err[-2000:])
    assert took < 2, f"exited {took:.1f} s after Ctrl-C"
    assert [json.loads(line)["frame"] for line in lines] == list(range(10))
    assert "interrupted (Ctrl-C) after 10 frames" in err

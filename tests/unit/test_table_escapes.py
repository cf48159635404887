"""Text from a stream reaches a terminal escaped: a face's emotion strings in `results --format table`
and `analyze --format table`, a summary's strings in the people table (`tracks`, `up`), and the
schema version a reader names. Escape sequences there cleared the screen, set the window title or
hid what followed; newlines forged rows."""

from __future__ import annotations

import msgpack
import pytest

from moodstream.shared.errors import MessageError
from moodstream.shared.record import Face, Smoothed
from moodstream.shared.table import faces_cell
from moodstream.shared.wire import decode_result, encode_result
from moodstream.worker.tracking.summary import people_table

EVIL = "\x1b[2J\x1b]0;pwned\x07\x1b[31mRED\nforged row"


def test_a_faces_cell_escapes_the_emotion_strings():
    face = Face((1.0, 2.0, 3.0, 4.0), 0.9, emotion=EVIL, probabilities={EVIL: 0.9}, track_id=1,
                smoothed=Smoothed(EVIL, {EVIL: 0.9}))
    cell = faces_cell([face])
    assert "\x1b" not in cell and "\x07" not in cell and "\n" not in cell
    assert "RED" in cell


def test_the_people_table_escapes_a_summary_s_strings():
    track = {"source": "cam", "track_id": EVIL, "person": True, "dominant": EVIL, "mean_probabilities": {EVIL: 0.5},
             "first_timestamp_s": 0.0, "last_timestamp_s": 1.0,
             "episodes": [{"emotion": EVIL, "start_s": 0.0, "end_s": 1.0, "peak": 0.9}]}
    table = people_table([track])
    assert "\x1b" not in table and "\x07" not in table
    assert len(table.splitlines()) == 2  # the header and one row: no forged one


def test_a_schema_version_is_named_escaped():
    from moodstream.shared.record import FrameResult

    m = msgpack.unpackb(encode_result(FrameResult(job_id="j", source="s", frame=0, faces=[])))
    m["v"] = EVIL
    with pytest.raises(MessageError) as exc:
        decode_result(msgpack.packb(m))
    assert "\x1b" not in str(exc.value) and "\x07" not in str(exc.value)


def test_an_error_naming_a_typed_path_is_one_line_from_python_too(tmp_path):
    """Every MoodstreamError's message comes escaped (the CLI's "Error:" line, a log, a program's own print):
    a path as typed put a newline in `checkpoint ... not found` (and ESC [2J cleared the screen)."""
    from moodstream.shared.errors import BadInputError, ModelError
    from moodstream.shared.models import load_checkpoint

    path = tmp_path / "a\n\x1b[2Jforged" / "emotion.pt"
    with pytest.raises(ModelError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"checkpoint {tmp_path}/a\\n\\x1b[2Jforged/emotion.pt not found: pass an existing file " \
                             "to --checkpoint"
    assert exc.value.args[0].count("\n") == 1  # the text itself is kept
    bad = BadInputError("not_found", f"{path} does not exist")
    assert "\n" not in str(bad) and bad.detail == f"{path} does not exist"  # a record's detail: JSON escapes it

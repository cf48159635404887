"""The cells both readable tables share (`analyze --format table`, `results --format
table`): one way to show a source, a frame's faces and an error; and their rows as CSV
(`--format csv`). And the one wording of the frames a run is missing (:func:`missing_frames_note`)."""

from __future__ import annotations

import csv
import io
import sys
from typing import TYPE_CHECKING, TextIO

from moodstream.shared.labels import LABELS

if TYPE_CHECKING:
    from moodstream.shared.record import ErrorInfo, Face, FrameResult


class OtherSources:
    """The sources a ``--source`` filter left out (``tracks``, ``results``), counted, to name where none
    matched: a typo, or ``clip.mp4`` for a source sent as ``samples/clip.mp4``, was "no summaries yet"
    or nothing at all. At most :attr:`MAX` distinct names are kept, in the order they came."""

    MAX = 1000
    SAID = 10  # names said at most

    def __init__(self):
        self.names: dict[str, None] = {}  # (a dict: its keys in the order they came, each once)
        self.total = 0

    def add(self, name: object) -> None:
        self.total += 1
        if len(self.names) < self.MAX:
            self.names.setdefault(str(name))

    def line(self, command: str, what: str, whats: str, stream: str, source: str) -> str:
        """``tracks: none of the 4 summaries in moodstream:summaries is of source 'x'; their sources: ...``,
        the closest first (a name ending as ``source`` does), then as they came."""
        names = sorted(self.names, key=lambda name: not name.endswith(source))
        more = len(names) - self.SAID
        listed = ", ".join(names[:self.SAID]) + (f" and {more} more" if more > 0 else "") + \
            (" (and more: only the first were counted)" if len(self.names) >= self.MAX else "")
        return (f"{command}: none of the {plural(self.total, what, whats)} in {stream} is of source {source!r}; "
                f"their sources: {listed}")


def printable(text: str) -> str:
    """One cell on one line: control characters (CR, LF, ESC...) escaped, so a source
    name cannot forge rows or move the cursor."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 frame``, ``2 frames``; ``nouns`` where the plural is not noun + s (person, people)."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def source_cell(source: str, width: int) -> str:
    """The source, escaped, cut from the left to ``width`` characters (the file name stays)."""
    text = printable(source)
    return text if len(text) <= width else "…" + text[-(width - 1):]


RAW_SHOWN_MIN = 0.5  # a frame's own top emotion at least this sure is shown beside a different smoothed one


def face_label(face: Face) -> tuple[str, str]:
    """(emotion shown, its text): the smoothed emotion with ``#track_id`` in front when the
    face is tracked (``"#2 happiness 87%"``), else the raw one (``"happiness 87%"``). When
    this frame's own top emotion differs from the smoothed one and has at least
    ``RAW_SHOWN_MIN``, it follows a slash (``"#2 neutrality 45% / happiness 77%"``): the
    label never hides a clear expression on its frame. Tables and annotated frames say the same."""
    shown = face.shown
    emotion = shown.emotion or "face"
    p = shown.probabilities.get(emotion)
    text = emotion if p is None else f"{emotion} {p:.0%}"
    if face.track_id is not None:
        text = f"#{face.track_id} {text}"
    raw = (face.probabilities or {}).get(face.emotion or "", 0.0)
    if face.emotion and face.emotion != emotion and raw >= RAW_SHOWN_MIN:
        text = f"{text} / {face.emotion} {raw:.0%}"
    return emotion, printable(text)  # emotion strings come from a stream: no escape reaches a terminal


def legend(smoothing_tau_s: float) -> str:
    """One line that says what a table's EMOTIONS cell shows (:func:`face_label`)."""
    return (f"EMOTIONS: #N is the face's track; the emotion after it is smoothed along the track "
            f"({smoothing_tau_s:g} s of video, as --annotate draws it); '/ EMOTION P%' follows where this "
            f"frame's own top emotion differs and is at least {RAW_SHOWN_MIN:.0%} sure.")


def faces_cell(faces: list[Face]) -> str:
    """Each face as the annotated frame labels it (:func:`face_label`): ``#0 neutrality 58%, sadness 44%``."""
    return ", ".join(face_label(f)[1] for f in faces) or "-"


def missing_frames_note(summary: dict) -> str:
    """What a run summary's ``late_frames`` (the track stage's results that came after a later frame of the
    run was released: published untracked, in no track) and ``dropped_frames`` (frames its producer did not
    send, the backlog over lag_limit or stream_max_mb under backpressure "drop") say to a reader: ``"2 late
    frames not tracked (over reorder_wait_ms); 40 frames dropped by the producer (backlog over lag_limit or
    stream_max_mb)"``; "" for
    none, a summary of before the keys, or a value that is no count (a summary is another program's
    JSON). `tracks`, `up --summary` and the dashboard say the same."""
    def count(key: str) -> int:
        n = summary.get(key)
        return n if type(n) is int and n > 0 else 0

    late, dropped = count("late_frames"), count("dropped_frames")
    notes = [f"{plural(late, 'late frame')} not tracked (over reorder_wait_ms)"] if late else []
    if dropped:
        notes.append(f"{plural(dropped, 'frame')} dropped by the producer (backlog over lag_limit or stream_max_mb)")
    return "; ".join(notes)


def error_cell(error: ErrorInfo) -> str:
    return printable(f"ERROR {error.reason}: {error.detail}")


# `--format csv`: a row per face; a frame without faces, or an input that failed, a row of its own
# (its face cells empty), so no frame vanishes from the table. Probabilities by label; page 1-based
# (a still image's), timestamp_s and shot empty for one.
CSV_COLUMNS = ("source", "page", "frame", "timestamp_s", "shot", "width", "height", "job_id", "face", "track_id",
               "x1", "y1", "x2", "y2", "score", "emotion", "smoothed_emotion", *LABELS, "error", "error_detail",
               "scale")  # a photo over max_pixels read smaller (0.5, 0.25, 0.125): its size and box in those pixels
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula (CSV injection)


def text_cell(text: str | None) -> str:
    """A text cell a spreadsheet shows as text: a leading ``'`` where it would run a formula (a file
    named ``=HYPERLINK(...).jpg``)."""
    text = text or ""
    return "'" + text if len(text) > 1 and text.startswith(FORMULA_START) else text  # "-" is stdin


def csv_rows(record: FrameResult) -> list[list]:
    """``record``'s rows, in :data:`CSV_COLUMNS` order."""
    w, h = record.size if record.size else ("", "")
    head = [text_cell(record.source), record.page or "", record.frame,
            "" if record.timestamp_s is None else round(record.timestamp_s, 4), "" if record.shot is None else record.shot,
            w, h, text_cell(record.job_id)]
    error = [text_cell(record.error.reason), text_cell(record.error.detail)] if record.error else ["", ""]
    error.append(record.scale or "")  # the last column, after the error's
    if not record.faces:
        return [head + [""] * (len(CSV_COLUMNS) - len(head) - 3) + error]
    rows = []
    for i, f in enumerate(record.faces):
        p = f.probabilities or {}
        smoothed = f.smoothed.emotion if f.smoothed else ""
        rows.append(head + [i, "" if f.track_id is None else f.track_id, *(round(v, 2) for v in f.box),
                            round(f.score, 4), text_cell(f.emotion), text_cell(smoothed),
                            *(round(p.get(label, 0.0), 4) for label in LABELS)] + error)
    return rows


def csv_text(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


class CsvPrinter:
    """``--format csv`` (analyze, results, up): the header at once (an empty run is still a table),
    then :func:`csv_rows` of each record, each flushed as it comes (a pipe sees rows live)."""

    def __init__(self, out: TextIO | None = None):
        self.out = out
        self._write([list(CSV_COLUMNS)])

    def row(self, record: FrameResult) -> None:
        self._write(csv_rows(record))

    def _write(self, rows: list[list]) -> None:
        out = self.out or sys.stdout  # at call time: click's test runner swaps sys.stdout
        out.write(csv_text(rows))
        out.flush()

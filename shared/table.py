"""The cells both readable tables share (`analyze --format table`, `results --format
table`): one way to show a source, a frame's faces and an error."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moodstream.shared.record import ErrorInfo, Face


def printable(text: str) -> str:
    """One cell on one line: control characters (CR, LF, ESC...) escaped, so a source
    name cannot forge rows or move the cursor."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def source_cell(source: str, width: int) -> str:
    """The source, escaped, cut from the left to ``width`` characters (the file name stays)."""
    text = printable(source)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def faces_cell(faces: list[Face]) -> str:
    """Each face's top emotion and its probability as a percentage: ``neutrality 58%, sadness 44%``."""
    return ", ".join(f"{f.emotion} {f.probabilities[f.emotion]:.0%}" for f in faces) or "-"


def error_cell(error: ErrorInfo) -> str:
    return printable(f"ERROR {error.reason}: {error.detail}")

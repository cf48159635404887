"""Error classes. Each names what went wrong and, where it can, what to do."""

from moodstream.shared.table import printable


class MoodstreamError(Exception):
    """Base class: the CLI prints these as one line, never as a traceback.

    The message comes escaped (:func:`~moodstream.shared.table.printable`): it names what a user
    typed or a stream held (a path, a URL, a source), and a newline or an ESC in that forged a line
    or cleared the screen wherever it was printed (the CLI's "Error:", a log, a program's own print).
    Escaped here, once, for every message: ``args`` keep the text as it was."""

    def __str__(self) -> str:
        return printable(super().__str__())


class ConfigError(MoodstreamError):
    """A setting or flag has a value we cannot use."""


class DataError(MoodstreamError):
    """A dataset on disk is missing, empty or malformed (the message names the file)."""


class BadInputError(MoodstreamError):
    """One input (image, frame, message) cannot be used.

    ``reason`` is a short machine-readable code (``unreadable``, ``too_large``...)
    that goes into error records and dead-letter entries.
    """

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ModelError(MoodstreamError):
    """A model checkpoint is missing or does not fit the code that loads it."""


class OutputError(MoodstreamError):
    """An output file cannot be written (a full disk, a read-only file system, a size limit): the
    message names it; the file it would have replaced is left as it was."""


class MessageError(BadInputError):
    """A message on the wire cannot be decoded (bad msgpack, schema, fields)."""

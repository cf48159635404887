"""``moodstream tracks``: the per-person answer of the service, one summary per source run.

The track stage (``moodstream track``) tracks faces along each source in
``<prefix>:tracked`` and, when a source run ends (its frame numbers start
again, it goes idle for ``--source-idle-s``, or the stage stops), adds that
run's per-person summary to ``<prefix>:summaries``: the entries of
:mod:`moodstream.worker.tracking.summary` (mean raw probabilities, episodes, person
flag, median box), the same ``analyze --summary`` writes, and each face
picture as base64 JPEG. This command reads that stream (plain XREAD: it takes
nothing from anyone) and prints the people table, the summary JSON with
``--json`` (one object per line), or a CSV with ``--csv`` (a row per track, the columns of
``analyze --summary FILE.csv`` with ``run`` and ``part`` after the source:
:mod:`moodstream.worker.tracking.summary_csv`). A run that goes on (a live camera) has its
ended tracks published in parts as it goes (``part`` 1, 2, ...; ``last_part``
true on the one published when it ends): each track is in one part. A still
image (an image file, a page of a multi-page TIFF) is a run of its own,
published as soon as it is tracked: its summary and entries have ``page``
(1-based), the table says ``still image`` for the span, and the run is named by
file and page after the first (``scan.tif page 2``), as ``analyze`` names it.
A run is its ``source`` and ``run``: the stage does not number two runs of a source
alike, across its restarts either (``<prefix>:track:runs``), so the pictures
``--pictures`` writes, named by both, are each run's own. A run's ``late_frames``
(its results that came after ``reorder_wait_ms``: published
untracked, in no track) and ``dropped_frames`` (frames its producer did not send, the
backlog over ``lag_limit`` under ``--backpressure drop``) are said under its heading
when there are any.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click

from moodstream.options import (FiniteRange, NamedPath, Printing, follow_notice, setting_option, stop_ends_command,
                                to_stderr)
from moodstream.shared.settings import Settings

BLOCK_MS = 1000


def read_summaries(client, stream: str, start: str, follow: bool, timeout_s: float | None, stop: threading.Event,
                   retry) -> Iterator[tuple[str, dict]]:
    """(entry id, summary dict) from ``stream`` after ``start`` ("$": from now); without ``follow``,
    until the end of the stream; with it, until ``timeout_s`` or ``stop``. ``retry`` is made with ``stop``:
    at ``timeout_s`` (with ``follow``) ``stop`` is set, so a wait for an unreachable Redis ends there too
    (:class:`~moodstream.shared.retry.RedisGone`), as ``results --timeout-s`` ends (it retried for ever)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    timer = None
    if follow and deadline is not None:  # (at most what a Timer takes, as ResultReader's)
        timer = threading.Timer(min(timeout_s, threading.TIMEOUT_MAX / 2), stop.set)
        timer.daemon = True
        timer.start()
    try:
        yield from _read_summaries(client, stream, start, follow, deadline, stop, retry)
    finally:
        if timer is not None:
            timer.cancel()


def _read_summaries(client, stream: str, start: str, follow: bool, deadline: float | None, stop: threading.Event,
                    retry) -> Iterator[tuple[str, dict]]:
    import redis

    from moodstream.shared.transport import as_str, name_wrong_type
    from moodstream.shared.wire import FIELD

    def named(call):  # a key of another type: the ConfigError that names it (the retry's words named none)
        try:
            return call()
        except redis.ResponseError as exc:
            name_wrong_type(client, exc, {stream: "stream"})
            raise

    last = start
    if last == "$":  # from now: the id of the newest entry, so nothing is missed between reads
        info = retry.call(lambda: named(lambda: client.xrevrange(stream, count=1)))
        last = as_str(info[0][0]) if info else "0-0"
    while not stop.is_set():
        block = None
        if follow:
            left_ms = BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            block = max(1, min(BLOCK_MS, left_ms))
        resp = retry.call(lambda: named(lambda: client.xread({stream: last}, count=100, block=block)))
        entries = resp[0][1] if resp else []
        for eid, fields in entries:
            last = as_str(eid)
            try:
                summary = json.loads(fields.get(FIELD) or b"")
            except (ValueError, RecursionError) as exc:  # not JSON, or nested past the parser's depth
                to_stderr(f"tracks: skipping summaries entry {last}: not JSON ({type(exc).__name__})")
                continue
            if isinstance(summary, dict) and isinstance(summary.get("tracks"), list):
                yield last, summary
            else:
                to_stderr(f"tracks: skipping summaries entry {last}: not a run summary")
        if not entries and not follow:
            return


def _name_part(value: object) -> str:
    """A summary's run or track id as part of a file name: no path separator (an entry's values
    are another program's: "1/../../x" once wrote outside the pictures folder)."""
    return re.sub(r"[^\w.-]+", "_", str(value)) or "_"


def save_pictures(summary: dict, folder: Path) -> None:
    """Write the summary's face pictures into ``folder`` as ``<stem>-<hash of the source>-run<N>-t<id>.jpg``;
    each track's ``thumbnail`` becomes the file's name (relative to ``folder``, as in a summary file)."""
    from moodstream.worker.annotate import safe_stem

    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    # the file name's stem and a short hash of the whole source: cam1/video.mp4 and cam2/video.mp4 both
    # wrote video-run1-t0.jpg (the second replaced the first); the same source always gets the same names
    tag = hashlib.sha256(summary["source"].encode("utf-8", "replace")).hexdigest()[:8]
    base = f"{safe_stem(summary['source'])}-{tag}-run{_name_part(summary.get('run', 1))}"
    thumbnails = summary.get("thumbnails") if isinstance(summary.get("thumbnails"), dict) else {}
    for t in summary["tracks"]:
        data = thumbnails.get(str(t["track_id"]))
        try:
            jpeg = base64.b64decode(data, validate=True) if isinstance(data, str) else b""
        except binascii.Error:
            jpeg = b""
        if data and not jpeg:
            to_stderr(f"tracks: {summary['source']}: the picture of track {t['track_id']} is not base64; left out")
        if jpeg:
            name = f"{base}-t{_name_part(t['track_id'])}.jpg"
            try:
                (folder / name).write_bytes(jpeg)
            except OSError as exc:
                to_stderr(f"tracks: cannot write {folder / name}: {exc.strerror or exc}")
                continue
            t["thumbnail"] = name


@click.command()
@click.option("--from-start", is_flag=True, help="Every summary the stream still holds (default: from now on).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep waiting for new summaries (default when reading from now; Ctrl-C stops).")
@click.option("--timeout-s", type=FiniteRange(min=0), help="With --follow: stop after T seconds.")
@click.option("--source", help="Only summaries of this source, named as it was sent (the path given to produce, a "
                                "camera index, a URL); --from-start names the sources held where none is.")
@click.option("--json", "as_json", is_flag=True,
              help="Print each summary as one JSON object per line ({source, run, ended, frames, late_frames, "
                   "dropped_frames, part, last_part, tracks: [...]}, and page for a still image's run; a run that "
                   "goes on comes in parts) instead of the people table.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print a CSV instead: a header, then a row per track of each summary (people and not), the "
                   "columns of `analyze --summary FILE.csv` with run and part after the source.")
@click.option("--pictures", "pictures_dir", type=NamedPath(file_okay=False, path_type=Path),
              help="Write each track's face picture into this folder (the thumbnail of the JSON or CSV names "
                   "the file).")
@setting_option("redis_url")
@setting_option("prefix")
def tracks(from_start, follow, timeout_s, source, as_json, as_csv, pictures_dir, redis_url, prefix):
    """Print who felt what, when: the per-person summary of each source run.

    Reads <prefix>:summaries, where `moodstream track` adds a source run's
    summary when the run ends (a new run of the source starts, it is idle for
    the stage's --source-idle-s, or the stage stops; a still image, each page
    of a TIFF, is a run of its own, out as soon as it is tracked); a run that
    goes on (a live camera) comes in parts, 1000 ended tracks each. Each
    summary lists the tracks with their time span ("still image" for a
    photo's or a page's), mean raw probabilities, dominant emotion, episodes
    and whether they count as a person, and says how many of the run's
    frames came late (after the stage's --reorder-wait-ms: published
    untracked, in no track) when any did. --json prints each summary as
    JSON, --csv a row per track for a spreadsheet. Following, it says so once on
    stderr where that is a terminal. Ctrl-C (SIGTERM, SIGHUP) stops it, each
    summary printed whole, exit 130 (143, 129).
    """
    from moodstream.shared.keys import Keys
    from moodstream.shared.retry import RedisGone, RedisRetry
    from moodstream.shared.table import OtherSources
    from moodstream.shared.transport import check_connection, connect

    if as_json and as_csv:
        raise click.UsageError("--json and --csv: give one of them")
    settings = Settings.from_env(redis_url=redis_url, prefix=prefix)
    client = connect(settings.redis_url)
    check_connection(client, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
    stop = threading.Event()
    retry = RedisRetry("tracks", settings.redis_url, stop)
    follow = follow or not from_start
    n = 0
    if as_csv:  # the header at once: no summary is still a table, and a pipe sees it while --follow waits
        from moodstream.shared.table import csv_text
        from moodstream.worker.tracking.summary_csv import service_header

        click.echo(csv_text([service_header()]), nl=False)
        sys.stdout.flush()
    fmt = "csv" if as_csv else "json" if as_json else "table"
    # it was killed outright by SIGTERM, and exited 0 on Ctrl-C
    # `tracks --pictures DIR | head`: the pictures go on
    printing = Printing("tracks", ["--pictures"] if pictures_dir is not None else [])
    stream = Keys.from_settings(settings).summaries
    others = OtherSources()  # --source: the sources of the summaries left out
    if follow:
        follow_notice(f"tracks: following {stream} from {'the start' if from_start else 'now'}: a run's summary "
                      "comes when the run ends (`moodstream track` writes them; Ctrl-C stops)")
    with stop_ends_command():
        try:
            for entry_id, summary in read_summaries(client, stream, "0-0" if from_start else "$", follow,
                                                    timeout_s, stop, retry):
                if source is None or summary.get("source") == source:
                    n += _print_summary(entry_id, summary, fmt, pictures_dir, printing)
                else:
                    others.add(summary.get("source"))
        except RedisGone:
            pass
    if n == 0 and not follow:
        if others.total:  # a typo, or the file's name for the path it was sent as: not "no summaries yet"
            to_stderr(others.line("tracks", "summary", "summaries", stream, source))
        else:
            click.echo("tracks: no summaries yet (`moodstream track` adds one when a source run ends)", err=True)
    if printing.error is not None:  # a full disk under the lines: the pictures written, then said
        raise click.ClickException(printing.error)


def _print_summary(entry_id: str, summary: dict, fmt: str, pictures_dir: Path | None,
                   printing: Printing | None = None) -> bool:
    """One run's summary as `tracks` prints it in ``fmt`` (table, json, csv; its pictures written first, its
    lines through ``printing``: None, printed, a failure raised), whole before a stop; False (said on stderr)
    for an entry that is no run summary (another program's, or edited)."""
    from moodstream.shared.stop_signals import deferred_stop
    from moodstream.worker.tracking.summary import people_table
    from moodstream.worker.tracking.summary_csv import service_rows

    try:  # another program's entry, or one edited by hand: skipped, not a traceback
        if not isinstance(summary.get("source"), str):
            raise ValueError("no source")
        table = people_table(summary["tracks"])
        text = json.dumps({k: v for k, v in summary.items() if k != "thumbnails"}, allow_nan=False)
        if fmt == "csv":  # a track the CSV cannot show is found out here, as the table's
            service_rows(summary)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # the exception's words name the entry's values (another program's data): escaped, as every notice
        to_stderr(f"tracks: skipping summaries entry {entry_id}: not a run summary ({type(exc).__name__}: "
                  f"{str(exc)[:100]})")
        return False
    with deferred_stop():  # a summary is printed whole (its pictures written) before a stop
        if pictures_dir is not None:
            save_pictures(summary, pictures_dir)
            text = json.dumps({k: v for k, v in summary.items() if k != "thumbnails"}, allow_nan=False)
        if printing is None:
            printing = Printing("tracks", [])
        printing(lambda: _print_lines(summary, fmt, text, table))
    return True


def _print_lines(summary: dict, fmt: str, text: str, table: str) -> None:
    """A summary's lines on stdout, in ``fmt`` (``text``: its JSON; ``table``: its people table)."""
    from moodstream.shared.table import csv_text, missing_frames_note, plural, printable
    from moodstream.worker.tracking.summary_csv import service_rows

    if fmt == "json":
        click.echo(text)
    elif fmt == "csv":  # the rows after --pictures: their thumbnail names the file written
        click.echo(csv_text(service_rows(summary)), nl=False)
    else:
        part = "" if summary.get("part", 1) == 1 and summary.get("last_part", True) is True else \
            f"part {summary.get('part')}{'' if summary.get('last_part') else ' (the run goes on)'}, "
        page = summary.get("page")  # a still image's run: named by its page after the first, as analyze's
        name = summary["source"] + (f" page {page}" if page not in (None, 1) else "")
        frames = "a still image" if page is not None else plural(summary.get("frames", 0), "frame")
        click.echo(printable(f"{name} (run {summary.get('run', 1)}, {part}{frames}; "
                             f"ended: {summary.get('ended', '?')})"))
        missing = missing_frames_note(summary)  # frames the run is missing: said, when any
        if missing:
            click.echo(missing)
        click.echo(table + "\n")
    sys.stdout.flush()

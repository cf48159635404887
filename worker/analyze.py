"""``moodstream analyze``: the pipeline in one process, no Redis.

Images, folders and videos go through :func:`shared.media.iter_frames`; decoded
frames are batched across inputs (up to ``--batch-max`` frames per
:meth:`worker.video.VideoAnalyzer.analyze` call, which is one
:meth:`Pipeline.process` call with ``--detect-every 1``) and every frame gives
one JSON record on stdout, in input order. Faces of videos, cameras and streams
are tracked along their source (``track_id``, ``smoothed``); a still image's
faces get ids 0..k-1. An input that cannot be used gives an error record
instead and the run goes on; the exit code is 1 if any input failed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import cv2
import numpy as np

from moodstream.options import (FiniteRange, NamedPath, Printing, check_stdin_usage, setting_option, stdout_to_null,
                                to_stderr)
from moodstream.shared.errors import BadInputError, MoodstreamError
from moodstream.shared.inputs import check_sampling, input_specs
from moodstream.shared.media import (FrameItem, decoded_scale, expand_paths, image_records, input_files, is_stream_spec,
                                     is_video, iter_frames, no_media, opencv_can_name, plausible_fps)
from moodstream.shared.record import ErrorInfo, FrameResult
from moodstream.shared.stop_signals import (deferred_stop, exit_code, hold_stop_signals, raise_dropped_stop,
                                            restore_stop_signals, stopped_by, take_stop_signals)
from moodstream.shared.settings import MAX_THREADS, MIN_FACE_PX, Settings
from moodstream.shared.table import (RAW_SHOWN_MIN, CsvPrinter, error_cell, faces_cell, legend, plural,
                                    printable, source_cell)
from moodstream.worker.batching import BatchPolicy
from moodstream.worker.own_outputs import Output, expand_inputs, no_inputs
from moodstream.worker.report import CLIP_MAX_PX, check_report_usage, photo_folder, report_options

if TYPE_CHECKING:  # torch is imported only when a run starts, not for --help
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.video import VideoAnalyzer

log = logging.getLogger(__name__)
PROGRESS_MIN_FRAMES = 8  # fewer expected frames than this: no progress bar
SMALL_IMAGE_PX = 128  # a still image no larger than this without a face: perhaps a face crop (FER+'s are 48 px)


@dataclass
class Outcome:
    """One frame's record, with the decoded image (None for an error record)."""

    record: FrameResult
    image: np.ndarray | None
    video: bool
    rate: float | None = None  # a video frame's: its sampled frames' rate, from its reader


def error_record(item: FrameItem, exc: BadInputError) -> FrameResult:
    return FrameResult(source=item.source, frame=item.frame, timestamp_s=item.timestamp_s, page=item.page,
                       error=ErrorInfo(exc.reason, exc.detail))


def analyze_items(items: Iterable[FrameItem], analyzer: VideoAnalyzer, policy: BatchPolicy,
                  max_pixels: int) -> Iterator[Outcome]:
    """Frame items -> outcomes, in the same order; decoded frames (shared.media's one
    decode step) go to ``analyzer.analyze`` in batches by ``policy``, across inputs
    (all at hand: a batch goes when full). A camera's or a stream's frames are not at hand:
    each goes as it is read (a batch waited for the camera: a frame a second, or a stall, held
    up to 15 read frames unanalysed, and Ctrl-C lost them)."""
    pending: list[tuple[FrameItem, np.ndarray | None, BadInputError | None]] = []
    n_images = 0
    for item in items:
        try:
            image, error = item.decoded(max_pixels), None
        except BadInputError as exc:
            image, error = None, exc
        if error is not None and not pending:
            yield Outcome(error_record(item, error), None, False)
            continue
        pending.append((item, image, error))
        n_images += image is not None
        if policy.full(n_images) or (item.page is None and is_stream_spec(item.source)):
            yield from _flush(pending, analyzer)
            pending, n_images = [], 0
    yield from _flush(pending, analyzer)


def _flush(pending: list, analyzer: VideoAnalyzer) -> Iterator[Outcome]:
    from moodstream.worker.video import VideoFrame

    results = iter(analyzer.analyze([VideoFrame(item.source, item.frame, item.timestamp_s, image,
                                                item.timestamp_s is not None, item.shot)
                                     for item, image, _ in pending if image is not None]))
    if pending:  # sources come one after another: all but the last one of the batch have ended
        for source in [s for s in analyzer.sources if s != pending[-1][0].source]:
            analyzer.finish(source)
    for item, image, error in pending:
        if error is not None:
            yield Outcome(error_record(item, error), None, False)
            continue
        record = next(results)
        record.page = item.page  # a still image's, as a worker copies it from the job
        record.scale = decoded_scale(item.data, image)  # a JPEG over max_pixels, read smaller
        yield Outcome(record, image, item.timestamp_s is not None, item.rate)


def analyze(paths: str | os.PathLike | int | Iterable[str | os.PathLike | int], settings: Settings | None = None, *,
            every: int = 1, fps: float | None = None, max_frames: int | None = None,
            pipeline: Pipeline | None = None) -> Iterator[FrameResult]:
    """The Python form of ``moodstream analyze``: images, folders, videos, camera
    indexes or stream URLs in (a path, a camera index, or an iterable of them); one
    :class:`FrameResult` per frame out, in input order, as the command prints them (an
    input that cannot be used gives a result with ``error`` set and the run goes on).
    ``every`` / ``fps`` sample videos (one or the other), ``max_frames`` caps each video.
    ``settings`` default to :meth:`Settings.from_env`; pass a built ``pipeline`` to reuse
    its models across calls (its settings are then the run's: other ``settings`` are a ValueError).

    The arguments are checked here, at the call (a TypeError or ValueError that says what
    to pass; folders are listed then: inputs with no image or video are a ValueError, as the
    command refuses them); the records come lazily, as the iterator is read: the models load at the
    first, and a video stays open until it is read to its end or the iterator is closed.
    Frames already in memory go to :meth:`Pipeline.process` or :class:`VideoAnalyzer`."""
    from moodstream.worker.pipeline import Pipeline

    specs = input_specs(paths, "analyze")
    check_sampling(every, fps, max_frames)
    if settings is not None and not isinstance(settings, Settings):
        raise TypeError(f"settings must be a moodstream Settings (Settings.from_env(...)), got "
                        f"{type(settings).__name__}")
    if pipeline is not None and not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a moodstream Pipeline (Pipeline(settings)), got {type(pipeline).__name__}")
    if settings is not None and pipeline is not None and settings != pipeline.settings:
        differ = [f.name for f in dataclasses.fields(settings)
                  if getattr(settings, f.name) != getattr(pipeline.settings, f.name)]
        raise ValueError(f"settings differ from the pipeline's: {', '.join(differ[:6])}"
                         f"{', ...' if len(differ) > 6 else ''}: pass the pipeline alone (its settings are used) or "
                         "settings alone, not a mix of the two")
    files = list(expand_paths(specs))  # a folder's files, listed now: one with none is said at the call
    if specs and not files:
        raise ValueError(no_media(specs))
    return _analyze(files, settings, int(every), fps, max_frames, pipeline)


def _analyze(files: list[str], settings: Settings | None, every: int, fps: float | None, max_frames: int | None,
             pipeline: Pipeline | None) -> Iterator[FrameResult]:
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.video import VideoAnalyzer

    settings = settings if settings is not None else (pipeline.settings if pipeline is not None
                                                      else Settings.from_env())
    pipeline = pipeline if pipeline is not None else Pipeline(settings)
    analyzer = VideoAnalyzer(pipeline, settings.detect_every)
    items = iter_frames(files, every, fps, max_frames, max_pixels=settings.max_pixels,
                        max_image_bytes=settings.max_message_bytes)
    for out in analyze_items(items, analyzer, BatchPolicy.from_settings(settings), settings.max_pixels):
        yield out.record


def expected_frames(specs: list[str], every_n: int, fps: float | None, max_frames: int | None) -> int | None:
    """About how many records the inputs give (for the progress bar); None for a live stream."""
    total = 0
    for spec in specs:
        if spec == "-" or not is_video(spec):  # a TIFF's pages, an animation's frames
            total += 1 if spec == "-" or not os.path.isfile(spec) else image_records(spec, every_n, fps, max_frames)
            continue
        if is_stream_spec(spec):
            return None
        if not opencv_can_name(spec) or not os.path.isfile(spec):  # one error record (iter_video says why); a
            total += 1  # FIFO is opened once, by the read itself (this count consumed it, and the read then hung)
            continue
        cap = cv2.VideoCapture(os.path.abspath(spec))  # (a relative name's "cam:" is FFmpeg's protocol)
        count, native = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if count <= 0:
            total += 1
            continue
        native = plausible_fps(native)  # --fps above it samples every frame (iter_video's rate)
        n = math.ceil(count / native * min(fps, native)) if fps else math.ceil(count / every_n)
        total += min(n, max_frames) if max_frames else n
    return total


def table_row(record: FrameResult) -> str:
    source = source_cell(record.source, 36)
    if record.error is not None:
        return f"{source:36s} {record.frame:>6d}  {error_cell(record.error)}"
    ts = "-" if record.timestamp_s is None else f"{record.timestamp_s:.2f}"
    size = "x".join(map(str, record.size)) if record.size else "-"
    if record.scale:  # a photo over max_pixels read smaller: the size is of what was read
        size += f" (1/{round(1 / record.scale)})"
    return f"{source:36s} {record.frame:>6d} {ts:>8s} {size:>10s} {len(record.faces):>5d}  {faces_cell(record.faces)}"


TABLE_HEADER = f"{'SOURCE':36s} {'FRAME':>6s} {'TIME_S':>8s} {'SIZE':>10s} {'FACES':>5s}  EMOTIONS"


def this_run_writes(annotate_dir: Path | None, summary_path: Path | None, report_path: Path | None) -> list[Output]:
    """What this run writes, left out of a folder named as an input (:func:`worker.own_outputs.expand_inputs`):
    the --annotate folder, the --summary file and its pictures, the --report page, its clips and the
    folder of annotated photos beside it (``<page stem>-photos``)."""
    outputs = []
    if annotate_dir is not None:
        outputs.append(Output("--annotate", annotate_dir, folder=True))
    if summary_path is not None:
        outputs.append(Output("--summary", summary_path))
    if report_path is not None:
        outputs += [Output("--report", report_path), Output("--report", photo_folder(report_path), folder=True)]
    return outputs


def not_written(names: list[str], summary_path) -> str:
    """One line for the summary's pictures and timelines that could not be written (``names``: each
    "name: why", the OS's reason)."""
    shown = "; ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    return (f"{plural(len(names), 'picture')} of the summary not written beside {summary_path} ({shown}); the summary "
            "was written without them")


def _closing(close, what: str, path, unwritten: list[str]):
    """``close()`` (an output written at the end of the run); an OSError (a full disk, a folder
    removed meanwhile) is one line in ``unwritten``, not a traceback after the whole run."""
    try:
        return close()
    except OSError as exc:
        unwritten.append(f"cannot write {what} {path}: {exc.strerror or exc}")
        return None


@click.command(name="analyze")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--every", "every_n", type=click.IntRange(min=1), default=None,
              help="Videos: analyse every N-th frame (default 1: every frame).")
@click.option("--fps", type=FiniteRange(min=0, min_open=True), default=None,
              help="Videos: analyse about F frames per second of video instead of --every.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None,
              help="Videos: stop each video after this many analysed frames.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "table", "csv"]), default="jsonl", show_default=True,
              help="jsonl: one JSON record per frame on stdout; table: a readable line per frame, each face as "
                   "'#track emotion P%' (smoothed along the track) and '/ emotion P%' where this frame's own top "
                   f"emotion differs and is at least {RAW_SHOWN_MIN:.0%} sure (said again on stderr at the end); "
                   "csv: a header, then a row per face (source, page, frame, timestamp_s, shot, width, height, job_id, "
                   "face, track_id, x1, y1, x2, y2, score, emotion, smoothed_emotion, a column per emotion's "
                   "probability, error, error_detail, scale), a frame without faces or an input that failed a row of "
                   "its own.")
@click.option("--annotate", "annotate_dir", type=NamedPath(file_okay=False, path_type=Path), default=None,
              help="Write annotated copies to this folder: images with boxes, labels and confidences, "
                   "and one .mp4 per video, playing in the video's own time; a folder's files under "
                   "their sub-folders, as in it. Inside a folder named as an input, this folder is not read "
                   "(a rerun does not analyse its copies); the input folder itself is refused.")
@setting_option("detector")
@setting_option("device")
@setting_option("backend")
@setting_option("precision")
@setting_option("threads", type=click.IntRange(min=0, max=MAX_THREADS))
@setting_option("batch_max", "--batch", type=click.IntRange(min=1))  # --batch: the flag's older name
@setting_option("max_pixels", type=click.IntRange(min=1))
@setting_option("min_face_px", "--min-face", type=click.IntRange(min=MIN_FACE_PX))  # --min-face: the older name
@setting_option("checkpoint", type=click.Path(dir_okay=False))
@setting_option("detect_every", type=click.IntRange(min=1))
@setting_option("track_shot_cuts")
@setting_option("min_person_s", type=FiniteRange(min=0))
@click.option("--summary", "summary_path", type=NamedPath(dir_okay=False, path_type=Path), default=None,
              help="Write one JSON object with a 'tracks' list to this file (one entry per face track per "
                   "video: time span, whether it is a person, median box, mean probabilities, dominant "
                   "emotion, episodes with start, end and peak, face picture; a still image's faces one "
                   "each, with its 'page', at 0 s: it has no time), a face picture per track "
                   "and a timeline PNG per video (and per still image with faces) beside it, and print the "
                   "people table on stderr. A FILE whose name ends in .csv gets a CSV instead: a row per "
                   "track (people and not), the mean probabilities a column each, the episodes one cell, the "
                   "face picture's file name; a cell that starts with = + - @ gets a leading ' (read as text). "
                   "Inside a folder named as an input, those pictures are not read "
                   "(a rerun does not analyse them).")
@report_options()
def analyze_cmd(paths: tuple[str, ...], every_n: int | None, fps: float | None, max_frames: int | None, fmt: str,
            annotate_dir: Path | None, summary_path: Path | None, report_path: Path | None, report_clip_px: int | None,
            **flags) -> None:
    """Detect faces and classify their emotions in images, folders and videos.

    PATH is an image (JPEG incl. .jfif, PNG, WebP, HEIC, AVIF, TIFF, BMP, GIF, PNM; read
    upright as its EXIF, TIFF or HEIF orientation says; each page of a
    multi-page TIFF is a frame), a folder (searched recursively for
    images and videos), a video (an animated GIF, WebP, PNG or AVIF is one), a camera index, an
    rtsp:// or http(s):// URL (an http(s) one that serves an image is read as
    that photo, told by its bytes, as stdin's are; else as a video or live
    stream), or - to read one image or video from stdin (a named pipe, such as
    bash's <(curl -s URL), is read as stdin is; a camera piped in, Motion-JPEG,
    H.264 / H.265 or MPEG-TS, is read as it comes).
    Prints one JSON record per frame on stdout ({"source", "frame",
    "timestamp_s", "size": [W, H], "faces", "model_version", "timings_ms"}, and
    "page" for a still image, "shot" for a video frame, "scale" for a photo
    over max_pixels read smaller (a camera's JPEG, at 1/2, 1/4 or 1/8: its size
    and boxes in those pixels): the same record as
    `moodstream results`, without the service's fields), or for
    an input that cannot be used {"source", "frame", "faces": [], "error":
    {"reason", "detail"}}. Each face has its "box", "score", raw "emotion" and
    "probabilities", a "track_id" (kept along a video, camera or stream;
    0..k-1 on a still image) and "smoothed" ({"emotion", "probabilities"}
    averaged along its track). Exits with 1 if any input failed or an output could not
    be written, 130 on Ctrl-C (143 on SIGTERM, 129 on SIGHUP: stopped the same way, the
    outputs written for what was done, the summary marked "interrupted"), 0 otherwise.
    """
    if every_n is not None and fps is not None:
        raise click.UsageError("use either --every or --fps, not both")
    check_report_usage(summary_path, report_path, report_clip_px)  # said before the models load
    check_stdin_usage(paths, "analyze")
    if annotate_dir is not None:  # its copies went among the inputs, and each rerun copied the copies again
        same = next((p for p in paths if p != "-" and os.path.isdir(p)
                     and os.path.realpath(p) == os.path.realpath(annotate_dir)), None)
        if same is not None:
            raise click.BadParameter(f"is the input folder {printable(same)} itself: the copies would be among the "
                                     "inputs, and a rerun would analyse them; give another folder (one inside it "
                                     "is fine: a rerun leaves it out)", param_hint="'--annotate'")
    try:
        settings = Settings.from_env(**flags)
        started = time.perf_counter()
        from moodstream.worker.pipeline import Pipeline  # torch: only once the flags are known to be good
        from moodstream.worker.tracking.summary import (Summarizer, SummaryConfig, SummaryWriter, check_writable,
                                                        people_table, write_summary)
        from moodstream.worker.video import VideoAnalyzer

        pipeline = Pipeline(settings)
        analyzer = VideoAnalyzer(pipeline, settings.detect_every)
    except MoodstreamError as exc:
        raise click.ClickException(str(exc)) from None
    load_s = time.perf_counter() - started

    specs = expand_inputs(paths, this_run_writes(annotate_dir, summary_path, report_path), "analyze")
    if not specs:
        raise click.ClickException(no_inputs(paths, "--annotate, --summary, --report"))
    inputs = input_files(specs)  # never written over by an output
    # the annotated files take no name an input has, nor the summary's or the page's
    taken = inputs | {os.path.realpath(p) for p in (summary_path, report_path) if p is not None}
    expected = expected_frames(specs, every_n or 1, fps, max_frames)
    show_progress = sys.stderr.isatty() and (expected is None or expected >= PROGRESS_MIN_FRAMES)
    annotator = None
    if annotate_dir is not None:
        from moodstream.worker.annotate import Annotator

        try:
            annotator = Annotator(annotate_dir, taken, folders=[p for p in paths if p != "-" and os.path.isdir(p)])
        except MoodstreamError as exc:
            raise click.ClickException(str(exc)) from None
    if summary_path is not None:  # found out now, not after the whole video
        try:
            check_writable(summary_path, "summary", inputs)
        except MoodstreamError as exc:
            raise click.ClickException(str(exc)) from None
    summary = Summarizer(SummaryConfig.from_settings(settings)) if summary_path is not None else None
    # a run's pictures and timeline are written once it has ended (a photo at once), not held to the end
    summary_files = SummaryWriter(summary_path, inputs=inputs) if summary_path is not None else None
    summary_s = 0.0  # the time the summary adds
    report = None
    if report_path is not None:
        from moodstream.worker.report import Report

        try:
            report = Report(report_path, SummaryConfig.from_settings(settings), inputs=inputs,
                            clip_max_px=CLIP_MAX_PX if report_clip_px is None else report_clip_px,
                            read_again=False)  # it draws the frames it analyses
        except MoodstreamError as exc:
            raise click.ClickException(str(exc)) from None
    # "-" reads sys.stdin.buffer; an image read no further than the service would take it
    items = iter_frames(specs, every_n or 1, fps, max_frames, max_pixels=settings.max_pixels,
                        max_image_bytes=settings.max_message_bytes)
    frames = faces = errors = 0
    small_faceless = 0  # still images of at most SMALL_IMAGE_PX without a face: face crops, maybe (a hint at the end)
    interrupted = False
    stop_code = 130
    stdout_error = None
    previous = take_stop_signals()  # SIGTERM and SIGHUP as Ctrl-C
    started = time.perf_counter()
    from tqdm import tqdm

    progress = tqdm(total=expected, unit="frame", file=sys.stderr, disable=not show_progress, leave=False)
    # a closed pipe or a full disk under stdout: the files go on whole; without any, stop (below)
    printing = Printing("analyze", [flag for flag, out in (("--annotate", annotator), ("--summary", summary),
                                                            ("--report", report)) if out is not None])
    try:
        if fmt == "table":
            printing(lambda: click.echo(TABLE_HEADER))
        csv_printer = printing(CsvPrinter) if fmt == "csv" else None  # (its header printed as it is made)
        for out in analyze_items(items, analyzer, BatchPolicy.from_settings(settings), settings.max_pixels):
            raise_dropped_stop()  # a stop whose raise a finalizer dropped: not lost
            with deferred_stop():  # a stop signal waits for this frame's outputs: none is left half written
                if csv_printer is not None:
                    printing(lambda: csv_printer.row(out.record))
                else:
                    printing(lambda: click.echo(table_row(out.record) if fmt == "table" else
                                                json.dumps(out.record.to_json(service=False))))
                progress.update(1)
                if out.image is None:
                    errors += 1
                    if report is not None:  # named on the page, with the reason
                        report.add(out.record, None, out.video)
                    continue
                frames += 1
                r = out.record
                faces += len(r.faces)
                small_faceless += not r.faces and not out.video and max(out.image.shape[:2]) <= SMALL_IMAGE_PX
                if annotator is not None:
                    annotator.add(r.source, out.image, r.faces, out.video, out.rate, r.frame, r.timestamp_s)
                if summary is not None:  # a still image too, as the service's track stage summarises it
                    t0 = time.perf_counter()
                    # a still image (a TIFF's page: its frame) is tracked alone (ids 0..k-1): a run of its own
                    summary.add(r, out.image, page=r.page)
                    summary_files.write_ended(summary)
                    summary_s += time.perf_counter() - t0
                if report is not None:
                    report.add(r, out.image, out.video, out.rate)
    except BrokenPipeError:  # `moodstream analyze ... | head`: stop quietly
        stdout_to_null()
    except OSError as exc:  # standard output refused (a full disk, /dev/full): what was done is still written
        stdout_error = f"cannot write to standard output: {exc.strerror or exc}"
        stdout_to_null()
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: what was done is still written below, and said
        interrupted = True
        stop_code = exit_code(exc)
    finally:
        hold_stop_signals(previous)  # a second signal does not cut the outputs short
        progress.close()
        unwritten: list[str] = []  # outputs the disk refused at the end: one line each, then exit 1
        if annotator is not None:
            _closing(annotator.close, "the annotated files", annotate_dir, unwritten)
        if report is not None:
            _closing(report.close, "the report", report_path, unwritten)
        if summary is not None:
            t0 = time.perf_counter()
            pictures_failed: list[str] = []
            written = _closing(lambda: write_summary(summary_path, summary, {
                "detect_every": settings.detect_every, "model_version": pipeline.model_version,
                "smoothing_tau_s": analyzer.tracker_config.smoothing_tau_s, "interrupted": interrupted,
                "incomplete": (f"interrupted ({stopped_by(stop_code)}) after {plural(frames, 'frame')}"
                               if interrupted else None)},
                failed=pictures_failed, writer=summary_files),
                "the summary", summary_path, unwritten) or {"tracks": []}
            if pictures_failed:
                unwritten.append(not_written(pictures_failed, summary_path))
            summary_s += time.perf_counter() - t0
        restore_stop_signals(previous)
    elapsed = time.perf_counter() - started
    if fmt == "table" and faces:
        click.echo(legend(analyzer.tracker_config.smoothing_tau_s), err=True)
    if summary is not None:
        click.echo(people_table(written["tracks"]), err=True)
    if small_faceless and settings.detector != "none":
        click.echo(f"analyze: no face found in {plural(small_faceless, 'small image')} (at most {SMALL_IMAGE_PX} px): "
                   "if they are face crops, --detector none takes each whole image as the face", err=True)
    to_stderr(f"analyze: {f'interrupted ({stopped_by(stop_code)}) after ' if interrupted else ''}"
              f"{plural(frames, 'frame')}, {plural(faces, 'face')}, {plural(errors, 'error')} in {elapsed:.1f} s "
              f"({frames / elapsed if elapsed > 0 else 0.0:.1f} frames/s; startup {load_s:.1f} s"
              f" on {pipeline.device}; detect every {settings.detect_every})"
              + (f"; annotated files in {annotate_dir}" if annotator is not None else "")
              + (f"; summary in {summary_path} ({summary_s:.2f} s)" if summary is not None else "")
              + (f"; report in {report_path}" if report is not None else ""))
    stdout_error = stdout_error or printing.error  # stdout refused under the files: said once they are written
    if stdout_error is not None:
        unwritten.insert(0, stdout_error)
    if unwritten:
        raise click.ClickException("; ".join(unwritten))  # paths as typed: escaped by the root (lazy.escape_shown)
    if interrupted:
        click.get_current_context().exit(stop_code)  # as a shell reports it: 130 for Ctrl-C, 143 SIGTERM
    if errors:
        click.get_current_context().exit(1)

"""``moodstream bench encoding``: what each way of sending video frames costs.

``moodstream produce`` sends video frames as png (the default: lossless),
jpeg (quality 90), webp (quality 90) or raw arrays (``--encode``). For each
video, the frames are run through the default worker pipeline as they are
(what ``analyze`` sees), then encoded each way, decoded by the worker's one
decode step (:func:`shared.media.decode_pixels`) and run again. Reported per
encoding: bytes a frame (and against raw), encode and decode milliseconds a
frame, and how many of ``analyze``'s faces come back (IoU >= 0.5, one-to-one:
:func:`shared.boxes.match_one_to_one`), with their box (IoU >= 0.95) and with
the same top emotion.

Torch-free on CPU (the default pipeline there is ONNX Runtime).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import click
import numpy as np

import moodstream
from moodstream.options import DEVICE, OutputFile
from moodstream.trainer.bench import table_text, write_output
from moodstream.producer.client import DEFAULT_ENCODING, PNG_ADAPTIVE, PNG_PARAMS, encode_pixels
from moodstream.shared.settings import ENCODINGS
from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.errors import DataError
from moodstream.shared.media import decode_pixels, iter_video
from moodstream.shared.record import FrameResult
from moodstream.shared.settings import Settings
from moodstream.trainer.cli import OldSpellings

DEFAULT_VIDEO = Path(moodstream.__file__).resolve().parent / "samples" / "hamilton_clip.mp4"
FOUND_IOU = 0.5  # the same face
MATCH_IOU = 0.95  # the same box, as in bench throughput
NOTES = [
    "analyze runs the pipeline on the decoded video frames; the service runs it on what the worker decodes "
    "from the wire. Only a lossless encoding (png, raw) gives the service analyze's answers frame for frame.",
    "found: analyze's faces (those scoring >= face_score_min) that come back as the same face (IoU >= 0.5, "
    "one-to-one); box within: of analyze's faces, those whose box comes back at IoU >= 0.95; same emotion: "
    "found faces with the same top emotion; same answer: found with the same top emotion, over analyze's faces.",
    "encode: producer side, once a frame (cv2.imencode; png at compression level 1, each row filtered by the "
    "row above). decode: worker side (cv2.imdecode and the colour conversion). raw sends the array itself "
    "(msgpack bytes, no codec).",
    "encode ahead: a producer reads a file's frames and encodes them on several threads a few frames ahead of "
    "the one it sends (produce, up, the expander); against one thread, on the same frames, without Redis.",
    "png_vs_adaptive: the png the producer sends against the one it sent before (libpng choosing a filter per "
    "row), both on the same frames in this process, each the best of 3 passes; lossless both (pixels checked).",
]


def png_vs_adaptive(frames: list[np.ndarray], max_pixels: int, passes: int = 3) -> dict:
    """The shipped png parameters (:data:`PNG_PARAMS`) against the adaptive filter of before
    (:data:`PNG_ADAPTIVE`) on the same frames: encode and decode ms a frame (best of ``passes``),
    KiB a frame, and the ratios (before / now: above 1 is faster or smaller now)."""
    import cv2

    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
    out = {}
    for name, params in (("adaptive", PNG_ADAPTIVE), ("shipped", PNG_PARAMS)):
        enc_best = dec_best = float("inf")
        for _ in range(passes):
            t0 = time.perf_counter()
            blobs = [cv2.imencode(".png", f, params)[1].tobytes() for f in bgr]
            t1 = time.perf_counter()
            back = [decode_pixels(b, None, max_pixels) for b in blobs]
            t2 = time.perf_counter()
            enc_best, dec_best = min(enc_best, t1 - t0), min(dec_best, t2 - t1)
        if not all(np.array_equal(a, b) for a, b in zip(back, frames)):
            raise DataError(f"png ({name}) did not give the frames back whole")
        out[name] = {"encode_ms": round(1000 * enc_best / len(frames), 2),
                     "decode_ms": round(1000 * dec_best / len(frames), 2),
                     "kib_per_frame": round(sum(map(len, blobs)) / len(frames) / 1024, 1)}
    before, now = out["adaptive"], out["shipped"]
    out["encode_speedup"] = round(before["encode_ms"] / now["encode_ms"], 2)
    out["decode_speedup"] = round(before["decode_ms"] / now["decode_ms"], 2)
    out["size_ratio"] = round(now["kib_per_frame"] / before["kib_per_frame"], 3)
    return out


def encode_ahead(video: Path, settings: Settings, max_frames: int | None, every_n: int, passes: int = 3) -> dict:
    """The rate a producer reads and encodes a video's frames as the default encoding, on one thread
    against the shipped encode-ahead (:data:`producer.client.ENCODE_THREADS` threads), the same
    frames in this process, each the best of ``passes`` (alternating); the sent bytes checked equal.
    No Redis: what the producer's CPU allows before the push."""
    from moodstream.producer import client as producer_client

    producer = producer_client.Producer(settings.replace(redis_url="redis://127.0.0.1:1/0"))  # never connects
    shipped = producer_client.ENCODE_THREADS
    best, sent = {}, {}
    for _ in range(passes):
        for name, threads in (("one_thread", 1), ("ahead", shipped)):
            items = ((item, False) for item in iter_video(str(video), every_n, None, max_frames, settings.max_pixels))
            t0 = time.perf_counter()
            got = [item.data if item.data is not None else encode_pixels(item.image, producer.encoding)
                   for item, _ in producer.encoded_ahead(items, threads)]
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            sent[name] = got
    if sent["one_thread"] != sent["ahead"]:
        raise DataError(f"{video.name}: the frames encoded ahead differ from those encoded one at a time")
    n = len(sent["ahead"])
    return {"encoding": producer.encoding, "threads": shipped, "frames": n,
            "one_thread_fps": round(n / best["one_thread"], 2), "ahead_fps": round(n / best["ahead"], 2),
            "speedup": round(best["one_thread"] / best["ahead"], 2)}


def run_pipeline(pipeline, frames: list[np.ndarray], batch: int) -> list[FrameResult]:
    out: list[FrameResult] = []
    for i in range(0, len(frames), batch):
        out.extend(pipeline.process(frames[i:i + batch]))
    return out


def through(frames: list[np.ndarray], encoding: str,
            max_pixels: int) -> tuple[list[np.ndarray], list[int], float, float]:
    """``frames`` sent as ``encoding`` and decoded as the worker decodes them:
    (decoded frames, bytes per frame, encode ms per frame, decode ms per frame)."""
    decoded, sizes, enc_s, dec_s = [], [], 0.0, 0.0
    for rgb in frames:
        t0 = time.perf_counter()
        data = None if encoding == "raw" else encode_pixels(rgb, encoding)
        t1 = time.perf_counter()
        img = decode_pixels(data, rgb if data is None else None, max_pixels)
        t2 = time.perf_counter()
        enc_s, dec_s = enc_s + t1 - t0, dec_s + t2 - t1
        sizes.append(rgb.nbytes if data is None else len(data))
        decoded.append(img)
    n = max(1, len(frames))
    return decoded, sizes, 1000 * enc_s / n, 1000 * dec_s / n


def compare(ref: list[FrameResult], got: list[FrameResult]) -> dict:
    """How many of ``ref``'s faces ``got`` gives back: the same face (IoU >= 0.5,
    one-to-one), its box at IoU >= 0.95, and its top emotion. The detectors
    already drop faces under ``face_score_min``; a greedy matching at 0.95 is
    the one at 0.5 cut at 0.95 (:func:`shared.boxes.greedy_match`)."""
    n_ref = found = tight = same = 0
    for a, b in zip(ref, got, strict=True):
        n_ref += len(a.faces)
        if not a.faces or not b.faces:
            continue
        boxes_a, boxes_b = [f.box for f in a.faces], [f.box for f in b.faces]
        pairs = match_one_to_one(boxes_a, boxes_b, FOUND_IOU)
        found += len(pairs)
        tight += len(match_one_to_one(boxes_a, boxes_b, MATCH_IOU))
        same += sum(a.faces[i].emotion == b.faces[j].emotion for i, j in pairs)
    rate = (lambda k, n: round(k / n, 4) if n else 1.0)
    return {"faces_ref": n_ref, "faces_found": found, "boxes_within": tight, "same_emotion": same,
            "found_rate": rate(found, n_ref), "box_match_rate": rate(tight, n_ref),
            "emotion_agreement": rate(same, found), "same_answer_rate": rate(same, n_ref)}


def measure(pipeline, settings: Settings, video: Path, max_frames: int | None, every_n: int) -> dict:
    frames = [item.decoded(settings.max_pixels) for item in iter_video(str(video), every_n, None, max_frames)]
    if not frames:
        raise DataError(f"{video}: no decodable frames")
    ref = run_pipeline(pipeline, frames, settings.batch_max)
    raw_bytes = frames[0].nbytes
    rows = {}
    with click.progressbar(ENCODINGS, label=f"{video.name}: encodings", file=sys.stderr) as bar:
        for enc in bar:
            decoded, sizes, enc_ms, dec_ms = through(frames, enc, settings.max_pixels)
            got = run_pipeline(pipeline, decoded, settings.batch_max)
            kib = float(np.mean(sizes)) / 1024
            rows[enc] = {"kib_per_frame": round(kib, 1), "vs_raw": round(kib * 1024 / raw_bytes, 4),
                         "encode_ms": round(enc_ms, 2), "decode_ms": round(dec_ms, 2),
                         **compare(ref, got)}
    return {"video": video.name, "frames": len(frames), "frame_size": [frames[0].shape[1], frames[0].shape[0]],
            "every_n": every_n, "encodings": rows, "png_vs_adaptive": png_vs_adaptive(frames, settings.max_pixels),
            "encode_ahead": encode_ahead(video, settings, max_frames, every_n)}


def markdown(report: dict) -> str:
    lines = ["# Frame encodings: what each costs", "",
             f"Command: `{report['command']}`", "",
             f"Pipeline: the default worker pipeline, backend **{report['backend']}** on {report['device']}; "
             f"{report['machine']}; CPU {report.get('cpu', '?')}.", ""]
    for v in report["videos"]:
        w, h = v["frame_size"]
        lines += [f"## {v['video']} ({w}x{h}, {v['frames']} frames)", "",
                  "| encoding | KiB a frame | of raw | encode ms | decode ms | found | box within 0.95 "
                  "| same emotion | same answer |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for enc, r in v["encodings"].items():
            name = f"**{enc}** (default)" if enc == report["default"] else enc
            lines.append(f"| {name} | {r['kib_per_frame']:.1f} | {100 * r['vs_raw']:.1f}% | {r['encode_ms']:.2f} "
                         f"| {r['decode_ms']:.2f} | {r['faces_found']}/{r['faces_ref']} "
                         f"| {r['boxes_within']}/{r['faces_ref']} "
                         f"| {r['same_emotion']}/{r['faces_found']} | {100 * r['same_answer_rate']:.1f}% |")
        p = v["png_vs_adaptive"]
        lines += ["", f"png against its adaptive filter of before (same frames, best of 3): encode "
                      f"{p['adaptive']['encode_ms']:.2f} -> {p['shipped']['encode_ms']:.2f} ms "
                      f"({p['encode_speedup']:.2f}x), decode {p['adaptive']['decode_ms']:.2f} -> "
                      f"{p['shipped']['decode_ms']:.2f} ms ({p['decode_speedup']:.2f}x), "
                      f"{p['adaptive']['kib_per_frame']:.1f} -> {p['shipped']['kib_per_frame']:.1f} KiB "
                      f"({p['size_ratio']:.3f})", ""]
        a = v["encode_ahead"]
        lines += [f"A producer reading and encoding its frames ({a['encoding']}, no Redis, best of 3): one thread "
                  f"{a['one_thread_fps']:.1f} frames/s, encoded ahead on {a['threads']} threads "
                  f"{a['ahead_fps']:.1f} ({a['speedup']:.2f}x), the same bytes", ""]
    lines += [f"- {n}" for n in report["notes"]]
    return table_text(lines) + "\n"


@click.command("encoding")
@click.option("--video", "videos", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A video (repeatable). Default: the bundled sample clip.")
@click.option("--max-frames", type=click.IntRange(min=1), help="At most this many frames of each video.")
@click.option("--every", "--every-n", "every_n", cls=OldSpellings, type=click.IntRange(min=1), default=1,
              show_default=True, help="Keep every Nth frame.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of the table.")
@click.option("--out", type=OutputFile(table_beside=True),
              help="Also write the JSON here, and the table beside it (.md).")
def encoding_cmd(videos, max_frames, every_n, device, as_json, out):
    """Bytes, encode/decode time and answers kept for each way `produce --encode`
    sends video frames, against the frames as analyze sees them."""
    from moodstream.worker.pipeline import Pipeline
    from moodstream.worker.runtime import cpu_info

    settings = Settings.from_env(env={}, device=device)  # the defaults users get
    pipeline = Pipeline(settings, worker=True)
    report = {"command": "moodstream " + shlex.join(sys.argv[1:]),
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
                         f"Python {platform.python_version()}", "cpu": cpu_info().model,
              "device": str(pipeline.device), "backend": pipeline.backend, "default": DEFAULT_ENCODING,
              "found_iou": FOUND_IOU, "match_iou": MATCH_IOU, "notes": NOTES,
              "videos": [measure(pipeline, settings, v, max_frames, every_n) for v in (videos or (DEFAULT_VIDEO,))]}
    if out:
        write_output(out, json.dumps(report, indent=1) + "\n")
        write_output(out.with_suffix(".md"), markdown(report))
    click.echo(json.dumps(report) if as_json else markdown(report))

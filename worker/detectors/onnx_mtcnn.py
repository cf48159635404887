"""MTCNN on a CPU runtime (ONNX Runtime or OpenVINO), torch-free: facenet-pytorch's
three nets (exported by ``moodstream export onnx``) with the pre- and
post-processing in numpy.

Each step reproduces facenet-pytorch 2.5.3's ``detect_face`` (the reference,
:class:`worker.detectors.mtcnn_reference.MTCNNDetector`), so the boxes come out the same:

1. Pyramid: facenet resizes the frame to every scale with
   ``interpolate(mode="area")``, which is ``adaptive_avg_pool2d``: output pixel
   ``i`` averages input pixels ``[floor(i*L/n), ceil((i+1)*L/n))`` (windows
   overlap when ``L/n`` is not whole, so it is not OpenCV's INTER_AREA). The
   window sums are read from the frame's integer summed-area table, exact.
   PNet runs on each scale in horizontal strips (:func:`pnet_strips`): it is
   fully convolutional, so a strip of input rows that holds the whole 12-row
   window of each of its output rows gives exactly those rows of the output.
2. Candidates: PNet cells scoring >= thresholds[0], NMS (IoU 0.5) within each
   scale, then (IoU 0.7) across scales, PNet box regression, squared (``rerec``).
3. RNet on 24x24 and ONet on 48x48 area-resized crops of all candidates (crops
   from the same summed-area table: four gathers per output pixel, no per-box
   loop). RNet: threshold, NMS 0.7, regression, squared. ONet: threshold,
   landmarks, regression, then facenet's "Min"-overlap NMS (areas with +1) at 0.7.

Candidates keep facenet's order through every stage (NMS keeps descending
score, ties in input order), because ONet scores often tie at exactly 1.0 and
then the order decides which box the last NMS keeps.

Speed (measured one thread at a time on a 2-core EPYC, AVX2, and a 2-core Xeon
with AMX; ``moodstream bench profile`` shows where a frame's time goes). What
is left to win besides the nets is memory traffic:

* Each runtime reads its own form of the files (:func:`worker.onnx_session.net_file`)
  and gets its own run sizes (:data:`RUN_SIZES`). PNet costs ~45-55 ns per
  input pixel on ONNX Runtime in runs of 20-100k pixels but ~60-80 ns on a
  whole 1080p scale (650 x 1150), whose activations spill out of the caches,
  so it runs in strips of about 60k pixels there, although neighbouring strips
  share 10 input rows; OpenVINO (PReLUs fused) is ~25-30 ns per pixel and
  prefers taller strips. Packing all scales into one canvas for a single
  run is slower, not faster (a larger input costs more per pixel).
* PNet's face probability is a softmax computed in numpy on the few cells that
  can pass the threshold (:func:`pnet_outputs`), not in the net.
* The pyramid and the crops are area-resized by compiled code where it is built
  (``_area.c``, by setup.py at install; :func:`area_kernels`), the same values bit for
  bit as the numpy code here, which runs where it is not: on a 2-core Xeon, one
  thread, 8 frames, alternating in one process, the shipped OpenVINO pipeline took
  131-135 ms a 1080p frame in numpy and 104-109 compiled (pyramid 31 -> 16 ms,
  crops 19 -> 6.5), 20.2-21.3 and 16.6-17.1 ms at 360p. PNet's screened cells' windows
  are copied into their line by the same module (:func:`pnet_line`), and the lines go
  straight into the runs' pieces (:meth:`OnnxMTCNNDetector._rerun_line`): 1080p
  101.8-108.9 -> 97.7-101.4 ms a frame, 360p within noise. NMS too (:func:`nms`):
  0.52-0.55 -> 0.17-0.18 ms a 360p frame; and PNet's threshold scans (:func:`cells_above`,
  one pass instead of a subtraction, a comparison and ``nonzero``): on a 2-core Xeon
  (family 6 model 207) the rest of a 1080p frame 12.1-13.3 -> 9.9-12.2 ms. The resizes
  prefetch the next output row's table rows (the table is out of the caches by then).
* The summed-area table keeps the three channels of a pixel side by side
  (``(H+1, W+1, 3)``), so a crop gathers each corner's three channels as one
  12-byte element (:func:`area_crops`); each PNet strip is area-resized from
  the table just before its run (in row chunks of about :data:`RESIZE_PIXELS`
  table pixels, whose temporaries stay in cache), so the strip is still in
  cache when PNet reads it and no whole scale is written and copied out.
* Only single-threaded OpenCV calls (``cv2.integral``): the thread budget is
  the runtime's, and ``cvtColor``, ``merge``, ``remap`` and ``resize`` run on
  OpenCV's own thread pool.
* A batch's frames go through each stage together (:meth:`OnnxMTCNNDetector.detect`):
  PNet scale by scale over the frames of one size, and RNet / ONet on the crops of
  all of them in shared chunks. A runtime re-plans whenever a net's input shape
  changes (OpenVINO: ~0.1 ms a switch), and frame by frame every PNet run and
  most RNet / ONet runs changed it: on a 2-core Zen 4, one thread, 8 frames,
  the detector went from 28.4 to 26.5 ms a frame at 360p (1080p: the same
  within noise), answers identical. Small scales of several frames run as
  one batch; PNet on a large scale of 8 frames at once is no faster per frame
  than on one (ONNX Runtime). The crops go through RNet / ONet in chunks
  (ONNX Runtime: RNet 47 us a crop in runs of 32-64 against 66 us in runs of 1024).
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from moodstream.shared.errors import ConfigError
from moodstream.worker.detectors.base import Face
from moodstream.worker.detectors.first_layers import SplitNet, eligible
from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file, open_net, run_crops

try:  # the area resizes and more compiled (worker/detectors/_area.c, built by setup.py where a C compiler is)
    import moodstream.worker.detectors._area as _area
except ImportError:  # not built: the numpy code below, the same values, about 3-4x slower
    _area = None

log = logging.getLogger(__name__)

PNET_CELL = 12  # PNet's receptive field in pixels
PNET_STRIDE = 2
RESIZE_PIXELS = 64_000  # summed-area table pixels per chunk of a pyramid resize
# A screened net's crops run again at full precision where the bf16 score is above the
# threshold minus this (4.5x the largest bf16 error seen on 56,265 RNet crops: worker.runtime)
SCREEN_MARGIN = 0.2
# PNet is screened on scales of at least this many pixels: bf16 saves ~15-20 ns a pixel there
# and the full-precision runs of the cells near the threshold (0.4-2% of the cells of such a
# scale, ~1.5-3.3 us each in lines: pnet_line) cost less; on smaller scales near cells are
# denser and the fixed costs win. Measured on a 2-core Zen 4, one thread, 8 frames, the PNet
# stage with the reruns of a group of frames run together in lines: 360p 11.4 / 11.2 ms a
# frame at 80,000 / 40,000 (two of its scales qualify at 40,000; 20,000 gave 11.6), 1080p
# 96.6 / 96.7. The Xeon with AMX set the first value, 250,000 (1080p detector 138 -> 131 ms),
# when each scale's cells ran on their own as 12 x 12 inputs.
PNET_SCREEN_MIN_PIXELS = 40_000
PNET_CELL_CHUNK = 256  # PNet cell windows per run (screening, cut-short windows)...
PNET_CELL_BATCHES = (8, 32, 128, PNET_CELL_CHUNK)  # ...padded to one of these sizes
# Screened cells rerun as one line of windows 12 rows high (pnet_line), cut into pieces of this
# many columns (overlapping by 10, so each window is whole in one piece), run as a batch of
# pieces, padded to one of these counts. Per window 3.3 us against 5.1 us as 12 x 12 inputs
# (one thread, Zen 4), and the windows of nearby cells of a row share their columns
PNET_LINE_WIDTH = 1536
PNET_LINE_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
PNET_LINE_GAP = 6  # cells of a row at most this far apart share one segment of the line
# Per runtime: PNet input pixels per run (about), crops per RNet run, crops per ONet run: what
# each runs fastest (see the module docstring; measured on a 2-core Xeon, one thread:
# OpenVINO PNet 134 vs 139 ms a 1080p frame at 120k instead of 60k pixels, ONet in bf16 54
# vs 62 us in runs of 64 instead of 16; ONNX Runtime ONet 177 vs 199 us in runs of 4 instead
# of 16), within what keeps a crop's outputs the same in a run of any size up to the chunk
# (else a frame's faces depend on which frames share its batch): OpenVINO on a 2-core Zen 3
# EPYC ran RNet runs of 81 crops or more with another kernel, 1.6e-7 off, so its RNet runs
# hold 64 crops (the Xeon ran 128 a little faster, 26 against 28 us a crop; the Zen 3 57
# against 62 us the other way).
# Frames detected together (OnnxMTCNNDetector.detect) keep their summed-area tables
# (12 bytes a pixel) within this: 24 frames of 360p, 6 of 720p, 2 of 1080p. Grouping
# gains at 360p (see the module docstring); at 1080p 1, 2 and 8 frames a group timed the
# same. The tables' buffers are kept between calls (OnnxMTCNNDetector._tables): this much
# memory at most, per detecting thread
GROUP_TABLE_BYTES = 64 * 2**20
RUN_SIZES = {"onnx": (60_000, 64, 4), "openvino": (120_000, 64, 64)}


# --- pure numpy operations ---------------------------------------------------------


def pyramid_scales(height: int, width: int, min_face_px: float, factor: float) -> list[float]:
    """facenet's pyramid: the first scale maps ``min_face_px`` to PNet's 12 px
    cell; each next one is ``factor`` smaller while the short side stays >= 12 px."""
    m = PNET_CELL / min_face_px
    minl = min(height, width) * m
    scales, scale = [], m
    while minl >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def table_dtype(height: int, width: int) -> type:
    """The summed-area table's dtype for a frame of this size: int32 while its total fits
    (up to ~8.4 Mpx), else float64 (exact to 2**53)."""
    return np.int32 if height * width * 255 < 2**31 else np.float64


def table_bytes(height: int, width: int) -> int:
    """Bytes of the summed-area table of a frame of this size (:func:`integral_image`)."""
    return (height + 1) * (width + 1) * 3 * np.dtype(table_dtype(height, width)).itemsize


def integral_image(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 -> (H+1, W+1, 3) summed-area table, zero first row and
    column, the channels of a pixel side by side, of :func:`table_dtype`;
    written into ``out`` (that shape and dtype) where given."""
    h, w = frame.shape[:2]
    depth = cv2.CV_32S if table_dtype(h, w) is np.int32 else cv2.CV_64F
    return cv2.integral(frame, sdepth=depth) if out is None else cv2.integral(frame, sum=out, sdepth=depth)


def window_edges(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """adaptive_avg_pool's windows of ``size`` outputs over ``length`` inputs from
    ``start``: ``[start + floor(i*L/size), start + ceil((i+1)*L/size))``. (N,) -> 2 x (N, size)."""
    i = np.arange(size, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)[:, None]
    lo = (i[None, :] * length) // size
    hi = -((-(i[None, :] + 1) * length) // size)  # ceil division
    start = np.asarray(start, dtype=np.int64)[:, None]
    return start + lo, start + hi


def area_kernels() -> str:
    """Which code runs the pyramid and the crops (:func:`area_resize`, :func:`area_crops`),
    PNet's rerun windows (:func:`pnet_line`), its threshold scans (:func:`cells_above`) and NMS
    (:func:`nms`): "compiled" (``_area``, built at install where a C compiler is) or "numpy"
    (the same values, slower)."""
    return "numpy" if _area is None else "compiled"


@functools.lru_cache(maxsize=1)
def warn_numpy_kernels() -> None:
    """Say once a process that the compiled module is not built (:func:`area_kernels`)."""
    log.warning("the compiled pyramid and crops (worker/detectors/_area.c) are not built, so numpy runs them: "
                "the same faces, about 20% slower a frame; reinstall moodstream where a C compiler (gcc) is")


@functools.lru_cache(maxsize=256)
def resize_edges(hp: int, wp: int, out_h: int, out_w: int) -> tuple[np.ndarray, ...]:
    """The windows of :func:`area_resize` from a table ``(hp, wp, 3)`` to ``out_h`` x ``out_w``:
    rows ``[r0, r1)`` and columns ``[c0, c1)`` (read-only: shared between calls)."""
    (r0,), (r1,) = window_edges(np.zeros(1), np.array([hp - 1]), out_h)
    (c0,), (c1,) = window_edges(np.zeros(1), np.array([wp - 1]), out_w)
    edges = tuple(np.ascontiguousarray(e) for e in (r0, r1, c0, c1))
    for e in edges:
        e.setflags(write=False)
    return edges


def compiled_table(table: np.ndarray) -> bool:
    """The compiled area resizes take this table: built, int32 (a frame up to ~8.4 Mpx:
    :func:`table_dtype`) and C-contiguous."""
    return _area is not None and table.dtype == np.int32 and table.flags.c_contiguous


def area_resize(table: np.ndarray, out_h: int, out_w: int, rows: tuple[int, int] | None = None,
                normalised: bool = False) -> np.ndarray:
    """The frame of a summed-area table ``(H+1, W+1, 3)`` area-resized to
    ``(1, 3, out_h, out_w)`` float32: ``interpolate(frame, (out_h, out_w), mode="area")``;
    with ``rows=(start, stop)`` only those output rows, ``(1, 3, stop - start, out_w)``
    (the same values: each output row depends on the table alone); scaled as
    facenet's input (:func:`normalise`) when ``normalised``.

    Compiled where built (:func:`area_kernels`); else numpy, separable: the rows of each
    output row's window first (two whole table rows), then each output pixel's columns
    from those, in chunks of rows. Both give the same values, bit for bit."""
    hp, wp, c = table.shape
    r0, r1, c0, c1 = resize_edges(hp, wp, out_h, out_w)
    if rows is not None:
        r0, r1 = r0[rows[0]:rows[1]], r1[rows[0]:rows[1]]
    out = np.empty((1, c, len(r0), out_w), np.float32)
    if compiled_table(table):
        _area.resize(table, r0, r1, c0, c1, out, normalised)
        return out
    widths = (c1 - c0).astype(np.float32)
    step = max(1, RESIZE_PIXELS // wp)
    for i in range(0, len(r0), step):
        part = slice(i, i + step)
        # the indices are in range: mode="wrap" only skips numpy's bounds check
        band = np.take(table, r1[part], axis=0, mode="wrap")
        band -= np.take(table, r0[part], axis=0, mode="wrap")  # (rows, W+1, 3): window sums of each column prefix
        band = band.reshape(len(band), -1)
        area = np.multiply.outer((r1[part] - r0[part]).astype(np.float32), widths)
        for k in range(c):
            sums = np.take(band, c1 * c + k, axis=1, mode="wrap")
            sums -= np.take(band, c0 * c + k, axis=1, mode="wrap")
            np.divide(sums, area, out=out[0, k, part], casting="unsafe", dtype=np.float32)
    return normalise(out) if normalised else out


def pnet_cells(length: int) -> int:
    """PNet's outputs along an input side of ``length`` pixels (3x3 conv, 2x2
    stride-2 max pool with ceil_mode, two 3x3 convs): ``ceil((length - 2) / 2) - 4``."""
    return (length - 1) // 2 - 4


def pnet_strips(height: int, cells: int) -> list[tuple[int, int, int]]:
    """Horizontal strips of an input ``height`` rows high that give PNet's
    output rows in runs of at most ``cells`` (balanced): ``(start, stop,
    first)``, input rows ``[start, stop)`` give output rows from ``first`` on.

    Output row ``y`` sees input rows ``[2y, 2y + 12)``, so a strip starting on
    an even row gives exactly the rows whose windows it holds. The last strip
    ends with the input: there an odd height leaves a last output row whose
    max-pool window is cut short (ceil_mode), as it is on the whole input."""
    total = pnet_cells(height)
    if total <= 0:
        return []
    per = -(-total // -(-total // cells))  # the fewest runs, as even as they divide
    return [(PNET_STRIDE * first,
             height if first + per >= total else PNET_STRIDE * (first + per) + PNET_CELL - PNET_STRIDE,
             first)
            for first in range(0, total, per)]


def logit(p: float) -> float:
    """``log(p / (1 - p))``: the PNet logit margin of face probability ``p`` (-inf at p <= 0, inf at p >= 1)."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    return float(np.log(p / (1.0 - p)))


def pnet_outputs(heads: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PNet's output ``heads`` ``(6, h', w')`` (face logits, then the box
    regression: :func:`trainer.export.merge_pnet_heads`) -> the cells whose face
    probability is >= ``threshold``, in row-major order (as torch's ``nonzero``):
    rows, columns, probabilities.

    The probability is the softmax the net used to end with (``exp(x - max) /
    sum``, float32), computed only on cells whose logit margin can reach the
    threshold (``p >= t`` needs ``l1 - l0 >= log(t / (1 - t))``; a 0.05 margin
    covers rounding): a few hundred of a frame's ~100k cells."""
    _, y, x, out = pnet_passing([heads], threshold)
    return y, x, out[0]


def pnet_passing(scales: list[np.ndarray], threshold: float) -> tuple[np.ndarray, ...]:
    """:func:`pnet_outputs` for the ``heads`` of each of a frame's pyramid scales at once: the
    cells over ``threshold``, scale after scale, row-major within one -> their scale's index,
    rows, columns, and ``(5, n)`` outputs: the face probability, then the box regression.
    The cells that can pass are found scale by scale; the softmax and the threshold run once."""
    # p rounds to 1.0 in float32 from a margin of about 16.6 on: t >= 1 needs at least 15 (t <= 0: all cells)
    floor = min(logit(threshold) - 0.05, 15.0)
    cells = [cells_above(heads[0], heads[1], floor, strict=False) for heads in scales]
    y, x = (np.concatenate(c) for c in zip(*cells))
    values = np.concatenate([heads[:, yy, xx] for heads, (yy, xx) in zip(scales, cells)], axis=1)
    level = np.repeat(np.arange(len(scales)), [len(yy) for yy, _ in cells])
    l0, l1 = values[0], values[1]
    m = np.maximum(l0, l1)
    e0, e1 = np.exp(l0 - m), np.exp(l1 - m)
    values[1] = e1 / (e0 + e1)  # the softmax the net used to end with, float32
    keep = values[1] >= np.float32(threshold)
    return level[keep], y[keep], x[keep], values[1:, keep]


def cells_above(l0: np.ndarray, l1: np.ndarray, threshold: float, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cells of two PNet output planes ``(rows, columns)`` whose logit margin ``l1 - l0``
    (float32) is above ``threshold`` (as float32; ``>`` when ``strict``, else ``>=``), row-major
    (as numpy's ``nonzero``): rows, columns. Compiled where built (:func:`area_kernels`: one
    pass, no temporaries), else numpy; the same cells."""
    if (_area is not None and l0.dtype == l1.dtype == np.float32 and l0.ndim == 2 and l0.shape == l1.shape
            and l0.flags.c_contiguous and l1.flags.c_contiguous):
        out = np.empty((2, l0.size), np.int64)
        n = _area.above(l0, l1, float(threshold), strict, out)
        return out[0, :n], out[1, :n]
    margin, t = l1 - l0, np.float32(threshold)
    return np.nonzero(margin > t if strict else margin >= t)


def pnet_windows(pixels: np.ndarray, y: np.ndarray, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The input windows of PNet output cells ``(y, x)`` of a strip ``pixels``
    ``(3, rows, w)``: rows ``[2y, 2y + 12)`` and columns ``[2x, 2x + 12)``,
    cut at the strip's edge, as ``(cells, windows)`` groups of one window
    shape (``cells``: indices into ``y``; ``windows``: ``(n, 3, hh, ww)``).
    PNet on a window gives exactly that one cell: a full 12 x 12 window holds
    its receptive field, and a window cut to 11 at an odd edge is the max
    pool's cut-short window there (ceil_mode), as on the whole input."""
    _, rows, cols = pixels.shape
    top, left = PNET_STRIDE * y, PNET_STRIDE * x
    full = (top + PNET_CELL <= rows) & (left + PNET_CELL <= cols)
    groups = []
    idx = np.nonzero(full)[0]
    if len(idx):
        view = np.lib.stride_tricks.sliding_window_view(pixels, (PNET_CELL, PNET_CELL), axis=(1, 2))
        groups.append((idx, np.ascontiguousarray(view[:, top[idx], left[idx]].transpose(1, 0, 2, 3))))
    for i in np.nonzero(~full)[0].tolist():  # the odd last row / column: a few cells
        t, c = int(top[i]), int(left[i])
        groups.append((np.array([i]), np.ascontiguousarray(pixels[None, :, t:t + PNET_CELL, c:c + PNET_CELL])))
    return groups


def pnet_line(pixels: np.ndarray, y: np.ndarray, x: np.ndarray,
              gap: int = PNET_LINE_GAP) -> tuple[np.ndarray, np.ndarray]:
    """The input windows of PNet output cells ``(y, x)`` (row-major, each window whole:
    rows ``[2y, 2y + 12)``, columns ``[2x, 2x + 12)``) of a strip ``pixels`` ``(3, rows, w)``
    as one line ``(3, 12, width)``: segments side by side, each the columns of a run of
    cells of one row at most ``gap`` apart, and each cell's window start in the line
    (even). PNet on the line gives cell ``i`` at output column ``at[i] // 2``, exactly:
    its window is whole there, and the cells across two segments are never read."""
    if not len(y):
        return np.zeros((pixels.shape[0], PNET_CELL, 0), pixels.dtype), np.zeros(0, np.int64)
    new = np.ones(len(y), bool)
    new[1:] = (y[1:] != y[:-1]) | (x[1:] - x[:-1] > gap)
    starts = np.nonzero(new)[0]
    seg = np.cumsum(new) - 1
    first, last = x[starts], x[np.append(starts[1:], len(y)) - 1]
    widths = PNET_STRIDE * (last - first) + PNET_CELL
    begin = np.cumsum(widths) - widths  # each segment's first column in the line
    at = begin[seg] + PNET_STRIDE * (x - first[seg])
    if _area is not None and pixels.dtype == np.float32 and pixels.flags.c_contiguous:  # compiled: row copies
        line = np.empty((pixels.shape[0], PNET_CELL, int(widths.sum())), np.float32)
        _area.line(pixels, PNET_STRIDE * y[starts], PNET_STRIDE * first, widths, line)
        return line, at
    owner = np.repeat(np.arange(len(starts)), widths)  # the segment of each line column
    columns = PNET_STRIDE * first[owner] + np.arange(len(owner)) - begin[owner]
    rows = PNET_STRIDE * y[starts][owner] + np.arange(PNET_CELL)[:, None]  # (12, width)
    channels, _, cols = pixels.shape
    # the indices are in range: mode="wrap" only skips numpy's bounds check
    return np.take(pixels.reshape(channels, -1), rows * cols + columns, axis=1, mode="wrap"), at


def area_crops(table: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray,
               size: int, normalised: bool = False) -> np.ndarray:
    """Crops ``[y0, y1) x [x0, x1)`` (0-based, non-empty, inside the frame) of
    the frame of a summed-area table ``(H+1, W+1, 3)``, area-resized to
    ``size`` x ``size``: (N, 3, size, size) float32, facenet's crop +
    ``interpolate(mode="area")``, for all N boxes at once; scaled as facenet's input
    (:func:`normalise`) when ``normalised``.

    Compiled where built (:func:`area_kernels`); else numpy, where each table pixel
    is gathered whole, its three channels as one 12-byte element (a numpy void view):
    one gather per corner instead of three, and index arrays a third as large (1.6x
    faster than gathering per channel)."""
    hp, wp, c = table.shape
    ys0, ys1 = window_edges(y0, y1 - y0, size)  # (N, size)
    xs0, xs1 = window_edges(x0, x1 - x0, size)
    if compiled_table(table):
        out = np.empty((len(x0), c, size, size), np.float32)
        _area.crops(table, ys0, ys1, xs0, xs1, size, out, normalised)
        return out
    pixels = table.reshape(-1).view(np.dtype((np.void, table.itemsize * c)))  # one element per table pixel
    top, bottom = (ys0 * wp)[:, :, None], (ys1 * wp)[:, :, None]
    left, right = xs0[:, None, :], xs1[:, None, :]

    def corner(index: np.ndarray) -> np.ndarray:  # (N, size, size) pixel indices -> (N, size, size, c)
        # the indices are in range: "wrap" only skips numpy's bounds check (2x faster than indexing)
        return np.take(pixels, index, mode="wrap").view(table.dtype).reshape(*index.shape, c)

    sums = corner(bottom + right)
    sums -= corner(top + right)
    sums -= corner(bottom + left)
    sums += corner(top + left)
    area = (ys1 - ys0).astype(np.float32)[:, :, None] * (xs1 - xs0).astype(np.float32)[:, None, :]
    out = np.empty((len(x0), c, size, size), np.float32)
    np.divide(sums.transpose(0, 3, 1, 2), area[:, None], out=out, casting="unsafe", dtype=np.float32)
    return normalise(out) if normalised else out


def normalise(pixels: np.ndarray) -> np.ndarray:
    """facenet's input scaling, in place: ``(x - 127.5) / 128``."""
    pixels -= 127.5
    pixels *= 0.0078125
    return pixels


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, groups: np.ndarray | None = None,
        method: str = "union") -> np.ndarray:
    """Greedy NMS run separately in each group; kept indices, best first.

    ``method="union"``: torchvision's ``nms``: drop a box whose IoU with a kept,
    better box exceeds ``threshold`` (areas without +1); ties keep input order.
    ``method="min"``: facenet's last-stage ``nms_numpy(..., "Min")``: overlap is
    ``inter / min(area_i, area_j)`` with +1 pixel sides, order from numpy's
    default ``argsort`` taken from the end, as facenet does.

    Compiled where built (:func:`area_kernels`) and ``threshold >= 0``: the greedy loop
    over boxes in that order, each kept box tested against the boxes of its group whose
    x1 lies within the group's widest box of it (a sort by x). Else numpy, with no loop
    over boxes: the pairs that overlap in x come from one sort (groups
    shifted apart along x), and greedy NMS is the unique fixed point of
    ``keep[j] = no kept, better box suppresses j``, which a few vectorised
    rounds over those pairs reach (each round settles at least one more box).
    """
    n = len(scores)
    if method not in ("union", "min"):
        raise ValueError(f"method must be 'union' or 'min', got {method!r}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    plus = 1.0 if method == "min" else 0.0
    order = np.argsort(scores)[::-1] if method == "min" else np.argsort(-np.asarray(scores), kind="stable")
    if _area is not None and threshold >= 0:  # compiled: the greedy loop itself, the same float64 steps
        b = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64)[:, :4])
        if groups is None:
            labels = np.zeros(n, np.int64)
        else:
            labels = np.asarray(groups)
            if labels.dtype.kind not in "iu":  # any group values: labels that keep them apart
                labels = np.unique(labels, return_inverse=True)[1].reshape(-1)
            labels = np.ascontiguousarray(labels, dtype=np.int64)
        keep = np.empty(n, np.uint8)
        _area.nms(b, np.ascontiguousarray(order, dtype=np.int64), np.lexsort((b[:, 0], labels)), labels,
                  float(threshold), plus, method == "min", keep)
        return order[keep.view(bool)[order]]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    b = np.asarray(boxes, dtype=np.float64)[:, :4]
    area = (b[:, 2] - b[:, 0] + plus) * (b[:, 3] - b[:, 1] + plus)
    x1, x2 = b[:, 0], b[:, 2]
    if groups is not None:  # groups side by side along x, far enough apart never to overlap
        shift = np.asarray(groups, dtype=np.float64) * (max(x1.max(), x2.max()) - min(x1.min(), x2.min()) + 2 + plus)
        x1, x2 = x1 + shift, x2 + shift
    by_x = np.argsort(x1, kind="stable")
    ends = np.searchsorted(x1[by_x], x2[by_x] + plus, side="left")  # sorted boxes p+1 .. ends-1 start inside p
    counts = np.clip(ends - np.arange(n) - 1, 0, None)
    first = np.repeat(np.arange(n), counts)
    second = first + 1 + np.arange(len(first)) - np.repeat(np.cumsum(counts) - counts, counts)
    i, j = by_x[first], by_x[second]
    iw = np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]) + plus
    ih = np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]) + plus
    inter = iw.clip(min=0) * ih.clip(min=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = inter / (np.minimum(area[i], area[j]) if plus else area[i] + area[j] - inter)
    hit = overlap > threshold
    i, j = i[hit], j[hit]
    better, worse = np.where(rank[i] < rank[j], i, j), np.where(rank[i] < rank[j], j, i)
    keep = np.ones(n, dtype=bool)
    for _ in range(n):
        new = np.ones(n, dtype=bool)
        new[worse[keep[better]]] = False
        if np.array_equal(new, keep):
            break
        keep = new
    return order[keep[order]]


def rerec(boxes: np.ndarray) -> np.ndarray:
    """Boxes (N, >=4) -> squares around the same centres (side = the longer side), in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5  # facenet's expression order: same rounding
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """R/O-Net box regression (offsets in units of the +1 box side), in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return boxes


def pad_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """facenet's ``pad``: the crop of a box is ``[y0, y1) x [x0, x1)`` (0-based)
    of its truncated coordinates clipped to the frame. Returns x0, y0, x1, y1
    (int64) and ``valid`` (False where the crop is empty)."""
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(t[:, 0], 1) - 1
    y0 = np.maximum(t[:, 1], 1) - 1
    x1 = np.minimum(t[:, 2], width)
    y1 = np.minimum(t[:, 3], height)
    return x0, y0, x1, y1, (x1 > x0) & (y1 > y0)


# --- the detector -------------------------------------------------------------------


class OnnxMTCNNDetector:
    """Drop-in for :class:`worker.detectors.mtcnn_reference.MTCNNDetector` on a CPU runtime
    (ONNX Runtime or OpenVINO, :func:`worker.onnx_session.open_net`):
    same thresholds, pyramid factor, ``min_face_px`` and ``face_score_min``
    filter, same output (a list of :class:`Face` per frame, best first).

    ``threads``: inference threads of each net. ``runtime``: "onnx" (ONNX
    Runtime) or "openvino"; ``precision``: "fp32" or "bf16" (OpenVINO on a CPU
    with native bf16, :func:`worker.runtime.resolve_precision`), for all three
    nets or per net (``{"pnet": ..., "rnet": ..., "onet": ...}``, missing ones
    fp32: :func:`worker.runtime.net_precisions`). ``model_dir``: where
    ``mtcnn_{pnet,rnet,onet}.onnx`` are (default: the shipped ones; OpenVINO
    takes its form from ``openvino/`` in it where there is one). ``screened``:
    nets ("rnet", "onet") whose crops run in bf16 first, and again in their own
    precision only where the bf16 score is within
    :data:`SCREEN_MARGIN` of the threshold (OpenVINO on a CPU
    with native bf16: :func:`worker.runtime.screened_nets`); the answers are the
    second run's. ``compiled_first``: nets whose first convolution, PReLU and pool run in C
    before the rest on OpenVINO (fp32, unscreened: :mod:`worker.detectors.first_layers`, where
    :func:`worker.runtime.first_layers_here` measured them faster).
    """

    name = "mtcnn"

    def __init__(self, min_face_px: int = 20, face_score_min: float = 0.90,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 threads: int = 1, model_dir: str | Path | None = None, runtime: str = "onnx",
                 precision: str | dict[str, str] = "fp32", screened: tuple[str, ...] = (),
                 compiled_first: tuple[str, ...] = ()):
        if min_face_px <= 0:
            raise ConfigError(f"min_face_px must be > 0 for MTCNN, got {min_face_px}")
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"the pyramid factor must be in (0, 1), got {factor}")
        self.min_face_px = min_face_px
        self.face_score_min = face_score_min
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = factor
        folder = Path(model_dir) if model_dir is not None else ONNX_DIR
        self.strip_pixels, self.rnet_chunk, self.onet_chunk = RUN_SIZES.get(runtime, RUN_SIZES["onnx"])
        precisions = precision if isinstance(precision, dict) else dict.fromkeys(MTCNN_FILES, precision)
        self.precisions = {k: precisions.get(k, "fp32") for k in MTCNN_FILES}
        self.compiled_first = tuple(compiled_first)
        for k in self.compiled_first:  # checked before any net is compiled
            if k not in MTCNN_FILES:
                raise ConfigError(f"only pnet, rnet and onet have first layers to compile, not {k!r}")
            if k not in eligible(runtime, self.precisions, screened):
                raise ConfigError(f"compiled first layers run {k} in fp32 on OpenVINO, unscreened")
        # a net in compiled_first: its first layers in C, the rest on OpenVINO (first_layers.py)
        self.pnet, self.rnet, self.onet = (SplitNet(net_file(folder, MTCNN_FILES[k], runtime), k, threads)
                                           if k in self.compiled_first else
                                           open_net(net_file(folder, MTCNN_FILES[k], runtime), threads, runtime,
                                                    self.precisions[k])
                                           for k in ("pnet", "rnet", "onet"))
        unknown = set(screened) - set(MTCNN_FILES)
        if unknown:
            raise ConfigError(f"only pnet, rnet and onet can be screened, not {', '.join(sorted(unknown))}")
        # bf16 screens (worker.runtime.AUTO_SCREENED): None where the net runs alone
        self.screens = {k: open_net(net_file(folder, MTCNN_FILES[k], runtime), threads, runtime, "bf16")
                        if k in screened else None for k in MTCNN_FILES}
        self._local = threading.local()  # per thread: the summed-area table buffers (_tables)
        if _area is None:
            warn_numpy_kernels()

    def detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """RGB uint8 frames ``(H, W, 3)`` -> the faces of each, best first.

        Frames go through each stage together, in groups of one size whose
        summed-area tables fit in :data:`GROUP_TABLE_BYTES`: PNet scale by scale
        over the group's frames, RNet and ONet on the crops of all of them in
        shared runs. A net thus sees the same input shape many times in a row
        (a runtime re-plans whenever the shape changes), and RNet / ONet runs
        are full. Each frame's answer is the one it gets alone."""
        out: list[list[Face]] = [[] for _ in frames]
        for group in self._groups(frames):
            tables = self._tables(frames, group)
            h, w = frames[group[0]].shape[:2]
            boxes = self._stage1(tables, h, w)  # per frame (N, 5) x1, y1, x2, y2, score; float32
            boxes = self._stage2(tables, boxes, h, w)
            for i, (found, points) in zip(group, self._stage3(tables, boxes, h, w)):
                keep = found[:, 4] >= self.face_score_min
                out[i] = [Face((float(x1), float(y1), float(x2), float(y2)), float(score),
                               [(float(x), float(y)) for x, y in pts])
                          for (x1, y1, x2, y2, score), pts in zip(found[keep].tolist(), points[keep].tolist())]
        return out

    def detect_one(self, frame: np.ndarray) -> list[Face]:
        """One RGB uint8 frame ``(H, W, 3)`` -> its faces, best first."""
        return self.detect([frame])[0]

    def _groups(self, frames: list[np.ndarray]) -> list[list[int]]:
        """Indices of the frames a face fits in, in groups of one size (in order of first
        appearance) whose summed-area tables together take at most
        :data:`GROUP_TABLE_BYTES` (a group has at least one frame)."""
        sizes: dict[tuple[int, int], list[list[int]]] = {}
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if min(h, w) < max(PNET_CELL, self.min_face_px):
                continue  # no face fits (and facenet's pyramid would be empty)
            groups = sizes.setdefault((h, w), [[]])
            if groups[-1] and (len(groups[-1]) + 1) * table_bytes(h, w) > GROUP_TABLE_BYTES:
                groups.append([])
            groups[-1].append(i)
        return [g for groups in sizes.values() for g in groups]

    def _tables(self, frames: list[np.ndarray], group: list[int]) -> list[np.ndarray]:
        """The summed-area tables of a group's frames (:func:`integral_image`), written
        into buffers kept between calls: per thread, for one frame size, as many as
        the largest group within :data:`GROUP_TABLE_BYTES` had (a frame whose table
        alone is over it gets a fresh one). A fresh table each time is fresh memory,
        whose page faults cost ~5 ms a 1080p frame (2-core Zen 4, 16 frames: detector
        171-180 -> 161 ms a frame)."""
        h, w = frames[group[0]].shape[:2]
        key = ((h + 1, w + 1, 3), table_dtype(h, w))
        pool = getattr(self._local, "tables", None)
        if pool is None or pool[0] != key:
            pool = self._local.tables = (key, [])
        buffers = pool[1]
        keep = len(group) * table_bytes(h, w) <= GROUP_TABLE_BYTES
        tables = []
        for k, i in enumerate(group):
            if k < len(buffers):
                out = buffers[k]
            else:
                out = np.empty(*key)
                if keep:
                    buffers.append(out)
            tables.append(integral_image(np.ascontiguousarray(frames[i], dtype=np.uint8), out))
        return tables

    def _stage1(self, tables: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
        """PNet over the pyramid of frames of one size, scale by scale -> per
        frame squared candidate boxes, best first."""
        scales = pyramid_scales(h, w, self.min_face_px, self.factor)
        reruns: dict[str | tuple[int, int], list] = {}  # screened cells of all scales and frames: "line", window shapes
        heads = [self._pnet_frames(tables, h, w, scale, reruns) for scale in scales]
        self._rerun(reruns)
        scales32 = np.array(scales, np.float32)
        out = []
        for k in range(len(tables)):
            # row-major within a scale, as torch's nonzero
            level, y, x, values = pnet_passing([per_frame[k] for per_frame in heads], self.thresholds[0])
            cell = np.stack([x, y], axis=1).astype(np.float32)
            scale32 = scales32[level][:, None]
            q1 = np.floor((PNET_STRIDE * cell + 1) / scale32)
            q2 = np.floor((PNET_STRIDE * cell + PNET_CELL - 1 + 1) / scale32)
            boxes = np.concatenate([q1, q2, values[0, :, None]], axis=1)
            out.append(self._candidates(boxes, values[1:].T, level))  # regression (n, 4)
        return out

    @staticmethod
    def _candidates(boxes: np.ndarray, reg: np.ndarray, level: np.ndarray) -> np.ndarray:
        """One frame's PNet cells over the threshold (boxes, regression, pyramid level) ->
        squared candidate boxes, best first."""
        # NMS within each scale; facenet then lists the survivors scale by scale
        keep = nms(boxes, boxes[:, 4], 0.5, level)
        keep = keep[np.lexsort((-boxes[keep, 4], level[keep]))]  # stable: ties keep NMS order
        keep = keep[nms(boxes[keep], boxes[keep, 4], 0.7)]  # across scales
        boxes, reg = boxes[keep], reg[keep]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes[:, :4] += reg * np.stack([regw, regh, regw, regh], axis=1)  # PNet regression: sides without +1
        return rerec(boxes)

    def _pnet_frames(self, tables: list[np.ndarray], h: int, w: int, scale: float,
                     reruns: dict[str | tuple[int, int], list]) -> list[np.ndarray]:
        """PNet's ``heads`` on each frame area-resized by ``scale``: several frames in
        one run where their scale together is at most a run's pixels
        (:data:`RUN_SIZES`), the fixed cost of a run shared; else frame by frame
        (:meth:`_pnet`, which adds the cells a bf16 screen leaves to ``reruns``)."""
        out_h, out_w = int(h * scale + 1), int(w * scale + 1)
        per_run = self.strip_pixels // (out_h * out_w)
        if per_run < 2 or len(tables) < 2 or (self.screens["pnet"] is not None
                                             and out_h * out_w >= PNET_SCREEN_MIN_PIXELS):
            return [self._pnet(table, h, w, scale, reruns) for table in tables]
        heads = []
        for i in range(0, len(tables), per_run):
            pixels = np.concatenate([area_resize(table, out_h, out_w, normalised=True)
                                     for table in tables[i:i + per_run]])
            heads.extend(self.pnet.run(pixels)[0])  # (n, 6, h', w')
        return heads

    def _pnet(self, table: np.ndarray, h: int, w: int, scale: float,
              reruns: dict[str | tuple[int, int], list]) -> np.ndarray:
        """PNet on the frame area-resized by ``scale``, strip by strip
        (:func:`pnet_strips`), each strip resized just before its run (no copy,
        and still in cache when PNet reads it): its output ``heads``
        ``(6, h', w')`` for the whole scale (:func:`pnet_outputs`).

        Screened (``screened`` has "pnet", on a scale of at least
        :data:`PNET_SCREEN_MIN_PIXELS`): the strips run in bf16, and every
        cell whose bf16 face probability is within :data:`SCREEN_MARGIN` of the
        threshold goes to ``reruns`` with its input window (whole windows in a
        line: :func:`pnet_line`; those cut short at an odd edge on their own:
        :func:`pnet_windows`), to run again at full precision (:meth:`_rerun`)
        before anything reads ``heads``; the other cells keep bf16 values that
        no threshold reads."""
        out_h, out_w = int(h * scale + 1), int(w * scale + 1)
        heads = np.empty((6, pnet_cells(out_h), pnet_cells(out_w)), np.float32)
        per_run = max(1, (self.strip_pixels // out_w - PNET_CELL + PNET_STRIDE) // PNET_STRIDE)  # output rows
        # screened on large scales only: on a small one the cells' runs cost what bf16 saves
        screen = self.screens["pnet"] if out_h * out_w >= PNET_SCREEN_MIN_PIXELS else None
        near = logit(self.thresholds[0] - SCREEN_MARGIN)
        for start, stop, first in pnet_strips(out_h, per_run):
            pixels = area_resize(table, out_h, out_w, (start, stop), normalised=True)
            (out,) = (screen or self.pnet).run(pixels)  # (1, 6, rows, w')
            heads[:, first:first + out.shape[2]] = out[0]
            if screen is not None:  # the cells near or over the threshold, again at full precision later
                y, x = cells_above(out[0, 0], out[0, 1], near, strict=True)
                rows, cols = pixels.shape[2:]
                whole = (PNET_STRIDE * y + PNET_CELL <= rows) & (PNET_STRIDE * x + PNET_CELL <= cols)
                if whole.any():
                    line, at = pnet_line(pixels[0], y[whole], x[whole], PNET_LINE_GAP)
                    reruns.setdefault("line", []).append((heads, y[whole] + first, x[whole], line, at))
                for cells, windows in pnet_windows(pixels[0], y[~whole], x[~whole]):  # cut short at an odd edge
                    reruns.setdefault(windows.shape[2:], []).append(
                        (heads, y[~whole][cells] + first, x[~whole][cells], windows))
        return heads

    def _rerun(self, reruns: dict[str | tuple[int, int], list]) -> None:
        """The screened PNet cells (:meth:`_pnet`) of all scales and frames, at full precision,
        each cell's outputs written back into its ``heads``: the lines of whole windows
        (:func:`pnet_line`) joined and cut into pieces of :data:`PNET_LINE_WIDTH` columns, the
        windows cut short at an odd edge in chunks of :data:`PNET_CELL_CHUNK` per shape. All
        at once, the net sees the same input shapes many times in a row and its runs are full."""
        for key, groups in reruns.items():
            again = self._rerun_line(groups) if key == "line" else self._rerun_windows(groups)
            start = 0
            for heads, y, x, *_ in groups:
                heads[:, y, x] = again[start:start + len(y)].T
                start += len(y)

    def _rerun_line(self, groups: list) -> np.ndarray:
        """PNet on the joined lines of ``groups`` -> (n, 6) outputs of their cells, in order.

        The joined line is cut into pieces :data:`PNET_LINE_WIDTH` columns wide that overlap by a
        window less a stride: line column ``c`` is column ``c % step`` of piece ``c // step`` (and
        also column ``c % step + step`` of the piece before, where ``c % step`` is in the overlap).
        Each line is written straight into the pieces' batches, then each piece's overlap is copied
        from the next piece's first columns: no joined line, no copy of it into the batches."""
        widths = [g[3].shape[2] for g in groups]
        offsets = np.cumsum(widths) - widths
        at = np.concatenate([g[4] + offset for g, offset in zip(groups, offsets)])
        overlap = PNET_CELL - PNET_STRIDE  # a window less a stride
        step = PNET_LINE_WIDTH - overlap
        total = int(sum(widths))
        pieces = -(-total // step)
        batch_max = PNET_LINE_BATCHES[-1]
        last = pieces - (pieces - 1) // batch_max * batch_max  # pieces in the last run, padded to a batch size
        size = next(b for b in PNET_LINE_BATCHES if b >= last)  # a few input shapes: no new plan per count
        batches = np.empty((pieces - last + size, *groups[0][3].shape[:2], PNET_LINE_WIDTH), np.float32)
        for g, offset in zip(groups, offsets.tolist()):
            line, done = g[3], 0
            while done < line.shape[2]:
                piece, column = divmod(offset + done, step)
                n = min(line.shape[2] - done, step - column)
                batches[piece, :, :, column:column + n] = line[:, :, done:done + n]
                done += n
        batches[pieces - 1, :, :, total - (pieces - 1) * step:] = 0  # past the line's end: no cell reads it
        batches[pieces:] = 0  # padding pieces: no cell reads them
        batches[:pieces - 1, :, :, step:] = batches[1:pieces, :, :, :overlap]
        outs = [self.pnet.run(batches[i:i + batch_max])[0][:min(batch_max, pieces - i), :, 0]  # (n, 6, cells)
                for i in range(0, pieces, batch_max)]
        out = np.concatenate(outs)
        piece = at // step
        return out[piece, :, (at - piece * step) // PNET_STRIDE]

    def _rerun_windows(self, groups: list) -> np.ndarray:
        """PNet on the windows of ``groups`` (one shape) -> (n, 6) outputs, in order."""
        windows = np.concatenate([g[3] for g in groups])
        outs = []
        for i in range(0, len(windows), PNET_CELL_CHUNK):
            batch = windows[i:i + PNET_CELL_CHUNK]
            n = len(batch)
            size = next(b for b in PNET_CELL_BATCHES if b >= n)  # a few input shapes: no new plan per count
            if size > n:
                batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), np.float32)])
            outs.append(self.pnet.run(batch)[0][:n, :, 0, 0])  # (n, 6)
        return np.concatenate(outs)

    def _refine(self, tables: list[np.ndarray], boxes: list[np.ndarray], h: int, w: int,
                size: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """RNet (size 24) or ONet (size 48) on every box with a non-empty crop
        of frames of one size (their summed-area tables, their boxes), in chunks
        that run across frames: per frame, the boxes that pass the stage's
        threshold (score in column 4) and their other outputs (regression,
        ONet's landmarks)."""
        session, chunk, threshold = ((self.rnet, self.rnet_chunk, self.thresholds[1]) if size == 24
                                     else (self.onet, self.onet_chunk, self.thresholds[2]))
        screen = self.screens["rnet" if size == 24 else "onet"]
        edges, frame_of, box_of = [], [], []  # per frame's valid box: its crop's edges, frame and box
        for k, b in enumerate(boxes):
            x0, y0, x1, y1, valid = pad_boxes(b, w, h)
            ok = np.nonzero(valid)[0]
            edges.append(np.stack([x0[ok], y0[ok], x1[ok], y1[ok]]))
            frame_of.append(np.full(len(ok), k))
            box_of.append(ok)
        edges, frame_of, box_of = np.concatenate(edges, axis=1), np.concatenate(frame_of), np.concatenate(box_of)
        runs, crops = [], []
        for i in range(0, len(box_of), chunk):
            part = np.arange(i, min(i + chunk, len(box_of)))
            frames, starts = np.unique(frame_of[part], return_index=True)
            stops = [*starts[1:], len(part)]
            pixels = np.concatenate([area_crops(tables[k], *edges[:, part[a:z]], size, normalised=True)
                                     for k, a, z in zip(frames.tolist(), starts.tolist(), stops)])
            if screen is not None:  # only crops that bf16 puts near or over the threshold run again
                near = run_crops(screen, pixels)[-1][:, 1] > threshold - SCREEN_MARGIN
                part, pixels = part[near], pixels[near]
            runs.append(part)
            crops.append(pixels)
        if screen is not None and crops:  # the survivors of all chunks, in full chunks again
            survivors = np.concatenate(crops)
            crops = [survivors[i:i + chunk] for i in range(0, len(survivors), chunk)]
        outs = [run_crops(session, pixels) for pixels in crops if len(pixels)]
        if not outs:
            return [(b[:0], []) for b in boxes]
        ran = np.concatenate(runs)
        *rest, prob = (np.concatenate(o) for o in zip(*outs))  # RNet: reg, prob; ONet: reg, landmarks, prob
        passed = prob[:, 1] > threshold
        ran, score, rest = ran[passed], prob[passed, 1], [r[passed] for r in rest]
        found = []
        for k, b in enumerate(boxes):
            mine = frame_of[ran] == k
            kept = b[box_of[ran[mine]]]
            kept[:, 4] = score[mine]
            found.append((kept, [r[mine] for r in rest]))
        return found

    def _stage2(self, tables: list[np.ndarray], boxes: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
        """RNet -> per frame refined squares, best first."""
        out = []
        for found, outs in self._refine(tables, boxes, h, w, 24):
            if not len(found):
                out.append(found)
                continue
            (reg,) = outs
            keep = nms(found, found[:, 4], 0.7)
            out.append(rerec(bbreg(found[keep], reg[keep])))
        return out

    def _stage3(self, tables: list[np.ndarray], boxes: list[np.ndarray], h: int,
                w: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """ONet -> per frame final boxes (N, 5) and landmarks (N, 5, 2), best
        first (facenet's "Min" NMS order)."""
        out = []
        for found, outs in self._refine(tables, boxes, h, w, 48):
            if not len(found):
                out.append((found, np.zeros((0, 5, 2), np.float32)))
                continue
            reg, marks = outs
            # landmarks are relative to the box before its regression (facenet's order)
            bw = (found[:, 2] - found[:, 0] + 1)[:, None]
            bh = (found[:, 3] - found[:, 1] + 1)[:, None]
            points = np.stack([bw * marks[:, :5] + found[:, :1] - 1, bh * marks[:, 5:] + found[:, 1:2] - 1], axis=2)
            found = bbreg(found, reg)
            keep = nms(found, found[:, 4], 0.7, method="min")
            out.append((found[keep], points[keep]))
        return out

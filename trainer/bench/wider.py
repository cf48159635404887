"""WIDER FACE ground truth, mapped onto the benchmark's resized images.

The official ``wider_face_val_bbx_gt.txt`` lists, per image: its path
(``0--Parade/0_Parade_Parade_0_102.jpg``), the number of faces, then one line per
face ``x y w h blur expression illumination invalid occlusion pose`` in the
ORIGINAL image's pixels (an image with no face has count 0 and one line of
zeros). Our copy of the images was resized (stretched) to 416x416, so each box
is scaled by ``(W_img / width, H_img / height)`` with the original size from
``original_sizes.csv`` (``wider_path,width,height``) and the image size read
from the file header.

Two geometries:

* ``stretched`` (the paper's): the 416x416 files as they are; faces are
  stretched unevenly (a 1024x683 photo is squeezed 0.41x across, 0.61x down).
* ``restored``: each image resized back to its original aspect ratio, the
  shorter side kept at 416 px (``s = 416 / min(width, height)``, so one axis is
  upsampled and no pixel is thrown away); boxes scale by ``s`` on both axes.
  Faces then have their natural shape, as in deployment.

Layout of a benchmark folder::

    images/<basename>.jpg           the resized images
    original_sizes.csv              wider_path,width,height
    wider_face_val_bbx_gt.txt       the official ground truth
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from moodstream.shared.errors import BadInputError, DataError
from moodstream.shared.formats import image_size
from moodstream.shared.media import decode_image

GT_FILE = "wider_face_val_bbx_gt.txt"
SIZES_FILE = "original_sizes.csv"
IMAGES_DIR = "images"
GEOMETRIES = ("stretched", "restored")
ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass
class WiderImage:
    name: str  # file name under images/
    wider_path: str  # path in the official ground truth
    path: Path
    original_size: tuple[int, int]  # (width, height) before resizing
    size: tuple[int, int]  # (width, height) the detector sees (the file's, or restored)
    boxes: np.ndarray  # (N, 4) float64 x1, y1, x2, y2 in this file's pixels
    attributes: np.ndarray  # (N, 6) int64, columns as ATTRIBUTES

    @property
    def invalid(self) -> np.ndarray:  # (N,) bool: flagged invalid, or a degenerate box
        sides = self.boxes[:, 2:] - self.boxes[:, :2]
        return (self.attributes[:, ATTRIBUTES.index("invalid")] != 0) | (sides <= 0).any(axis=1)

    @property
    def min_side(self) -> np.ndarray:  # (N,) shorter side of each box after scaling, px
        return (self.boxes[:, 2:] - self.boxes[:, :2]).min(axis=1)

    def read(self, max_pixels: int = 50_000_000) -> np.ndarray:
        """The image as RGB uint8 (H, W, 3), resized to ``size`` when that differs from the file."""
        try:
            rgb = decode_image(self.path.read_bytes(), max_pixels)
        except BadInputError as exc:  # name the file: "truncated: ..." alone did not say which
            raise DataError(f"{self.path}: {exc}") from None
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_LINEAR)
        return rgb


def parse_gt(path: str | Path) -> dict[str, np.ndarray]:
    """``wider_path -> (N, 10) int64`` rows (x y w h + the six attributes), in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found (the official WIDER FACE ground truth)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); expected the official WIDER FACE "
                        "ground truth") from None
    out: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        where = f"{path}:{i + 1}"
        if i + 1 >= len(lines):
            raise DataError(f"{where}: {name} has no face count line")
        try:
            count = int(lines[i + 1])
        except ValueError:
            raise DataError(f"{where}: expected a face count after {name}, got {lines[i + 1]!r}") from None
        if count < 0:
            raise DataError(f"{where}: negative face count for {name}")
        n_lines = max(count, 1)  # an image with no face still has one line of zeros
        rows = []
        for j in range(i + 2, i + 2 + n_lines):
            if j >= len(lines):
                raise DataError(f"{path}:{j + 1}: file ends inside the boxes of {name}")
            try:
                values = [int(v) for v in lines[j].split()]
            except ValueError:
                raise DataError(f"{path}:{j + 1}: box values must be integers, got {lines[j]!r}") from None
            if len(values) != 10:
                raise DataError(f"{path}:{j + 1}: expected 10 values (x y w h + 6 attributes), got {len(values)}")
            rows.append(values)
        out[name] = np.array(rows[:count], dtype=np.int64).reshape(count, 10)
        i += 2 + n_lines
    if not out:
        raise DataError(f"{path}: no images found")
    return out


def read_sizes(path: str | Path) -> dict[str, tuple[int, int]]:
    """``wider_path -> (width, height)`` of the original image."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found (wider_path,width,height per image)")
    out = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"wider_path", "width", "height"} <= set(reader.fieldnames):
                raise DataError(f"{path}: expected the header wider_path,width,height")
            for lineno, row in enumerate(reader, 2):
                try:
                    w, h = int(row["width"]), int(row["height"])
                except (TypeError, ValueError):
                    raise DataError(f"{path}:{lineno}: width and height must be integers") from None
                if w <= 0 or h <= 0:
                    raise DataError(f"{path}:{lineno}: width and height must be > 0")
                out[row["wider_path"]] = (w, h)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); expected wider_path,width,height "
                        "per image") from None
    return out


def scale_boxes(rows: np.ndarray, original: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """GT rows ``(N, >=4)`` x y w h in original pixels -> ``(N, 4)`` x1 y1 x2 y2 in ``size`` pixels."""
    sx, sy = size[0] / original[0], size[1] / original[1]
    xywh = rows[:, :4].astype(np.float64)
    return np.stack([xywh[:, 0] * sx, xywh[:, 1] * sy,
                     (xywh[:, 0] + xywh[:, 2]) * sx, (xywh[:, 1] + xywh[:, 3]) * sy], axis=1).reshape(-1, 4)


def restored_size(original: tuple[int, int], file_size: tuple[int, int]) -> tuple[int, int]:
    """Original aspect ratio with the shorter side equal to the file's shorter side."""
    s = min(file_size) / min(original)
    return round(original[0] * s), round(original[1] * s)


def load_wider(root: str | Path, geometry: str = "stretched") -> list[WiderImage]:
    """Every image under ``root/images`` with its scaled ground truth, sorted by name."""
    if geometry not in GEOMETRIES:
        raise DataError(f"unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
    root = Path(root)
    img_dir = root / IMAGES_DIR
    if not img_dir.is_dir():
        raise DataError(f"{img_dir} not found (expected images/, {SIZES_FILE} and {GT_FILE} under {root})")
    gt = parse_gt(root / GT_FILE)
    sizes = read_sizes(root / SIZES_FILE)
    by_base = {Path(p).name: p for p in sizes}
    out = []
    for path in sorted(p for p in img_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
        wider_path = by_base.get(path.name)
        if wider_path is None:
            raise DataError(f"{path.name} is not listed in {root / SIZES_FILE}")
        if wider_path not in gt:
            raise DataError(f"{wider_path} has no ground truth in {root / GT_FILE}")
        try:
            size = image_size(path.read_bytes())
        except BadInputError as exc:  # a JPEG of thousands of header segments
            raise DataError(f"{path}: {exc.detail}") from None
        if size is None:
            raise DataError(f"{path}: cannot read the image size from its header")
        if geometry == "restored":
            size = restored_size(sizes[wider_path], size)
        rows = gt[wider_path]
        out.append(WiderImage(name=path.name, wider_path=wider_path, path=path,
                              original_size=sizes[wider_path], size=(int(size[0]), int(size[1])),
                              boxes=scale_boxes(rows, sizes[wider_path], size),
                              attributes=rows[:, 4:10].copy()))
    if not out:
        raise DataError(f"{img_dir}: no images")
    return out


def spread(items: list, limit: int | None) -> list:
    """At most ``limit`` items spread evenly over the list (all of them when None)."""
    if limit is None or limit >= len(items):
        return list(items)
    idx = np.unique(np.linspace(0, len(items) - 1, max(limit, 1)).round().astype(int))
    return [items[i] for i in idx]

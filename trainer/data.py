"""Datasets on disk -> arrays in memory.

Two layouts are understood:

* FER+ (``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with PNGs and
  a header-less ``label.csv``: image, face_rect, then ten vote counts in the order
  neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown,
  NF). The label is the majority vote; images whose majority is ``unknown`` or
  ``NF`` (or that have no votes) are dropped. Ties go to the first column. An image name
  is relative to its split's folder: an absolute one, or one with ``..``, is refused.
* Folder per class (``anger/ contempt/ ...``, aliases such as ``happy`` allowed),
  either under ``train/ valid/ test/`` or directly under the root, in which case
  the files are split (seeded, stratified) *before* any augmentation, so
  augmented copies never cross splits. The split's seed is fixed
  (:data:`FOLDER_SPLIT_SEED`), not the training run's: every run, ``eval`` and
  ``balance`` hold out the same files. Hidden names (``.ipynb_checkpoints/``,
  macOS ``._x.png``) are left out, as ``analyze`` leaves them out.

Every problem raises :class:`DataError` naming the file (and line).
"""

from __future__ import annotations

import csv
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from tqdm import tqdm

from moodstream.shared.errors import DataError
from moodstream.shared.labels import INDEX, LABELS, NUM_CLASSES, canonical
from moodstream.shared.media import IMAGE_EXTS, cannot_read_folder, walk_once

SPLITS = ("train", "valid", "test")
FERPLUS_DIRS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
# label.csv vote columns (after image, face_rect) -> our label index, None = dropped class
FERPLUS_COLUMNS = ("neutrality", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
FOLDER_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
# The folder layout's split: one for every command. It followed `train --seed`, so after `--seed 1`
# the Test and Valid that `eval` and `balance` read (seed 0) held that run's training images.
FOLDER_SPLIT_SEED = 0


@dataclass
class Split:
    images: np.ndarray  # (N, S, S) uint8 grayscale
    votes: np.ndarray  # (N, 8) float32, a distribution over LABELS (one-hot for folder data)
    labels: np.ndarray  # (N,) int64, index into LABELS
    paths: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=NUM_CLASSES)
        return {name: int(c) for name, c in zip(LABELS, counts)}


def detect_layout(root: Path) -> str:
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if any((root / d).is_dir() for d in FERPLUS_DIRS.values()):
        return "ferplus"
    return "folders"


def data_size(input_size: int) -> int:
    """The side faces are loaded at for a model of ``input_size``: its own where larger than 48 (a
    folder of larger faces keeps its detail; FER+'s 48 px faces are upsampled once, on load), else
    48 (downsampled to the model's with antialiasing by :func:`shared.models.preprocess`)."""
    return max(48, int(input_size))


def load_split(root: str | Path, split: str, size: int = 48, count: int | None = None,
               pick_seed: int = 0) -> Split:
    """Load one split (``train``, ``valid`` or ``test``) of either layout;
    ``count``: only that many of its faces, drawn at random (``pick_seed``), in split order."""
    paths, votes, labels = _index(root, split)
    if count is not None and count < len(paths):
        pick = np.sort(np.random.default_rng(pick_seed).choice(len(paths), count, replace=False))
        paths, votes, labels = [paths[i] for i in pick], votes[pick], labels[pick]
    images = np.empty((len(paths), size, size), dtype=np.uint8)  # filled in place: no second copy at the end
    # FER+ Train (28k faces) took 3-5 s of silence, a large folder dataset minutes: a bar on a terminal, as
    # train's epoch bar (disable=None: nothing away from one, where train logs each split once it is read)
    with tqdm(total=len(paths), desc=f"reading {split}", unit="img", leave=False,
              dynamic_ncols=True, disable=None, file=sys.stderr) as bar:
        for i, path in enumerate(paths):
            images[i] = read_gray(path, size)
            bar.update()
    return Split(images, votes, labels, [str(p) for p in paths])


def load_labels(root: str | Path, split: str) -> np.ndarray:
    """The labels ``(N,)`` of one split, as :func:`load_split` gives them, without decoding any image
    (e.g. to count the Train class prior)."""
    return _index(root, split)[2]


def _index(root: str | Path, split: str) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """One split of either layout -> (image paths, vote distributions, labels); no image is read."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root)
    if detect_layout(root) == "ferplus":
        return _ferplus_index(root / FERPLUS_DIRS[split])
    paths, labels = _folders_index(root, split)
    return paths, np.eye(NUM_CLASSES, dtype=np.float32)[labels], labels


def parse_ferplus_row(row: list[str], where: str) -> tuple[str, np.ndarray] | None:
    """One label.csv row -> (image name, vote distribution over LABELS), or None to drop."""
    if len(row) != 2 + len(FERPLUS_COLUMNS):
        raise DataError(f"{where}: expected {2 + len(FERPLUS_COLUMNS)} columns, got {len(row)}")
    name = row[0].strip()
    if not name:
        raise DataError(f"{where}: empty image name")
    if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        # it read a file outside the split's folder as one of its faces: a mistake, or a label.csv made to.
        # Any "..", not only one that normpath leaves: "sub/../x" leaves too where sub is a link
        raise DataError(f"{where}: image name {name!r} leaves the split's folder (an absolute path, or a .. "
                        "in it); names in label.csv are relative to the folder it is in")
    try:
        counts = np.array([float(v) for v in row[2:]], dtype=np.float64)
    except ValueError:
        raise DataError(f"{where}: vote counts must be numbers, got {row[2:]}") from None
    if not np.isfinite(counts).all() or counts.max() > np.finfo(np.float32).max:  # NaN soft labels: a NaN model
        raise DataError(f"{where}: vote counts must be finite numbers, got {row[2:]}")
    if (counts < 0).any():
        raise DataError(f"{where}: negative vote count")
    if counts.sum() == 0 or FERPLUS_COLUMNS[int(np.argmax(counts))] in ("unknown", "NF"):
        return None
    votes = np.zeros(NUM_CLASSES, dtype=np.float64)
    for column, count in zip(FERPLUS_COLUMNS[:8], counts[:8]):
        votes[INDEX[column]] = count
    return name, (votes / votes.sum()).astype(np.float32)


def _ferplus_index(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """label.csv of one FER+ split -> (image paths, vote distributions, majority labels)."""
    label_file = folder / "label.csv"
    if not label_file.is_file():
        raise DataError(f"{label_file} not found (FER+ layout needs label.csv beside the images)")
    names, votes = [], []
    try:
        with label_file.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row:
                    continue
                parsed = parse_ferplus_row(row, f"{label_file}:{lineno}")
                if parsed is not None:
                    names.append(parsed[0])
                    votes.append(parsed[1])
    except UnicodeDecodeError as exc:
        raise DataError(f"{label_file}: not UTF-8 text (byte {exc.start}); expected FER+ label rows") from None
    if not names:
        raise DataError(f"{label_file}: no usable rows")
    vote_arr = np.stack(votes)
    # argmax over our 8 in the FER+ column order, so ties go to the first column as documented
    order = np.array([INDEX[c] for c in FERPLUS_COLUMNS[:8]])
    labels = order[np.argmax(vote_arr[:, order], axis=1)]
    return [folder / n for n in names], vote_arr, labels.astype(np.int64)


def read_gray(path: Path, size: int) -> np.ndarray:
    """Read an image as (size, size) uint8 grayscale, or raise DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except cv2.error as exc:  # e.g. over OpenCV's pixel limit: its assertion, not None
        raise DataError(f"{path}: not a readable image ({str(exc).strip().splitlines()[-1][:160]})") from None
    if img is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype != np.uint8:  # 16-bit PNG
        img = (img / 257).astype(np.uint8)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def _class_dirs(folder: Path) -> dict[int, list[Path]]:
    found: dict[int, list[Path]] = {}
    for link in sorted(p for p in folder.iterdir() if p.is_symlink() and not p.exists() and canonical(p.name)):
        # a dangling link is no folder: the class was left out without a word
        raise DataError(f"{link}: a link to {os.readlink(link)}, which does not exist")
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = canonical(sub.name)
        if label is None:
            raise DataError(f"{sub}: unknown class folder {sub.name!r}; expected one of "
                            f"{', '.join(LABELS)} (or aliases such as happy, sad, angry)")
        files = _image_files(sub)
        if not files:
            raise DataError(f"{sub}: class folder holds no images")
        found.setdefault(INDEX[label], []).extend(files)
    if not found:
        raise DataError(f"{folder}: no class folders found (expected {', '.join(LABELS)})")
    return found


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``, sorted. A symlinked subfolder is entered (rglob skipped it,
    and its images, silently); a link back to this folder or above it, or to a folder seen already,
    is not (a loop, or the same images twice). Hidden files and folders are left out. A folder that
    cannot be listed is a DataError naming it: it was taken as empty ("class folder holds no images",
    or the rest of the class trained on without a word), and a dataset with a hole is another model."""
    def refuse(exc: OSError) -> None:
        if any(part.startswith(".") for part in Path(exc.filename).relative_to(folder).parts):
            return  # a hidden one (.Trash-1000) is left out, readable or not
        raise DataError(cannot_read_folder(exc.filename, exc))

    return sorted(Path(root) / f for root, files in walk_once(folder, inside=True, onerror=refuse)
                  if not any(part.startswith(".") for part in Path(root).relative_to(folder).parts)
                  for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTS)


def _folders_index(root: Path, split: str) -> tuple[list[Path], np.ndarray]:
    """The files of one split of the folder-per-class layout and their labels."""
    if (root / split).is_dir():
        by_class = _class_dirs(root / split)
    elif any((root / s).is_dir() for s in SPLITS):
        raise DataError(f"{root}: has split folders but no {split}/")
    else:
        by_class = {c: _take_split(files, split, FOLDER_SPLIT_SEED + c) for c, files in _class_dirs(root).items()}
    paths = [p for c in sorted(by_class) for p in by_class[c]]
    labels = np.array([c for c in sorted(by_class) for _ in by_class[c]], dtype=np.int64)
    if not paths:
        raise DataError(f"{root}: split {split!r} is empty")
    return paths, labels


def _take_split(files: list[Path], split: str, seed: int) -> list[Path]:
    """Seeded per-class split of the *source files* (80/10/10)."""
    shuffled = files[:]
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    n_train = int(round(n * FOLDER_SPLIT_FRACTIONS[0]))
    n_valid = int(round(n * FOLDER_SPLIT_FRACTIONS[1]))
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}
    lo, hi = bounds[split]
    return shuffled[lo:hi]

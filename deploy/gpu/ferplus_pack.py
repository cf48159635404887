"""FER+ in parts small enough to carry to a GPU machine, and back into its folder layout there.

FER+ is 89.6 MB of PNGs: with the code (~23 MB) it does not fit the 64 MiB one device call
may carry. Packed, its 35,710 48x48 grayscale images are xz-compressed uint8 arrays, split
into parts of about equal size, each carried by one call to the same warm machine (an
ignored folder a call leaves there stays until the machine goes back). The last call
unpacks them into the FERPlus layout the trainer reads (FER2013Train/Valid/Test, each with
its PNGs and label.csv), pixel for pixel the same images (PNG is lossless).

    python3 deploy/gpu/ferplus_pack.py pack ../shared/data/ferplus .fer --parts 3
    python3 deploy/gpu/ferplus_pack.py unpack /tmp/fer_parts /tmp/ferplus
    python3 deploy/gpu/ferplus_pack.py check ../shared/data/ferplus /tmp/ferplus

No pickle: each part is an xz stream of ``np.save`` records (allow_pickle=False) and text.
Needs numpy and OpenCV only.
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
from pathlib import Path

import cv2
import numpy as np

SPLITS = ("FER2013Train", "FER2013Valid", "FER2013Test")
MAGIC = b"moodstream-ferplus-part-1\n"


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return img


def pack(src: Path, out: Path, parts: int) -> None:
    """Every split's images in ``parts`` chunks of about equal count, one xz file each; the
    label files travel in the first part."""
    entries = [(split, p) for split in SPLITS for p in _images(src / split)]
    if not entries:
        raise SystemExit(f"no FER+ images under {src} (expected {', '.join(SPLITS)})")
    shape = _read(entries[0][1]).shape
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(entries), parts + 1).astype(int)
    for k in range(parts):
        chunk = entries[bounds[k]:bounds[k + 1]]
        pixels = np.stack([_read(p) for _, p in chunk])
        if pixels.shape[1:] != shape:
            raise SystemExit(f"images of another size than {shape} in part {k + 1}")
        names = np.array([f"{split}/{p.name}" for split, p in chunk])
        labels = {split: (src / split / "label.csv").read_text() for split in SPLITS} if k == 0 else {}
        path = out / f"ferplus_part{k + 1}of{parts}.xz"
        with lzma.open(path, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
            f.write(MAGIC)
            for arr in (names, pixels, np.array(list(labels)), np.array(list(labels.values()))):
                np.save(f, arr, allow_pickle=False)
        print(f"{path}: {len(chunk)} images, {path.stat().st_size / 1e6:.1f} MB")


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    with lzma.open(path, "rb") as f:
        data = io.BytesIO(f.read())
    if data.read(len(MAGIC)) != MAGIC:
        raise SystemExit(f"{path} is not a FER+ part written by ferplus_pack.py")
    names, pixels, splits, texts = (np.load(data, allow_pickle=False) for _ in range(4))
    return names, pixels, dict(zip(splits.tolist(), texts.tolist()))


def unpack(parts_dir: Path, dest: Path) -> None:
    files = sorted(parts_dir.glob("ferplus_part*of*.xz"))
    if not files:
        raise SystemExit(f"no ferplus_part*of*.xz in {parts_dir}")
    expected = int(files[0].stem.split("of")[-1])
    if len(files) != expected:
        raise SystemExit(f"{len(files)} of {expected} parts in {parts_dir}: carry the missing ones first")
    count = 0
    for path in files:
        names, pixels, labels = _load(path)
        for split, text in labels.items():
            (dest / split).mkdir(parents=True, exist_ok=True)
            (dest / split / "label.csv").write_text(text)
        for name, img in zip(names.tolist(), pixels):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), img):
                raise SystemExit(f"cannot write {target}")
        count += len(names)
    print(f"{dest}: {count} images from {len(files)} parts")


def check(original: Path, unpacked: Path) -> None:
    """Every original image and label file, the same in the unpacked tree."""
    bad = 0
    for split in SPLITS:
        if (original / split / "label.csv").read_text() != (unpacked / split / "label.csv").read_text():
            print(f"{split}/label.csv differs")
            bad += 1
        for p in _images(original / split):
            q = unpacked / split / p.name
            if not q.is_file() or not np.array_equal(_read(p), _read(q)):
                bad += 1
    print("identical" if not bad else f"differing or missing: {bad} file(s)")
    if bad:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="FERPlus folder -> xz parts")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--parts", type=int, default=3)
    u = sub.add_parser("unpack", help="xz parts -> FERPlus folder")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("dest", type=Path)
    c = sub.add_parser("check", help="an unpacked tree against the original, image for image")
    c.add_argument("original", type=Path)
    c.add_argument("unpacked", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.src, args.out, args.parts)
    elif args.command == "unpack":
        unpack(args.parts_dir, args.dest)
    else:
        check(args.original, args.unpacked)


if __name__ == "__main__":
    main()

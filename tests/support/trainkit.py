"""What the trainer's command tests share: a tiny run's flags, a folder-per-class dataset of noise
faces, a tiny checkpoint, a file's digest, and the check that a command ended in one line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from moodstream.shared.models import ModelConfig, build_model, save_checkpoint

TINY = ["--preset", "cpu", "--epochs", "1", "--widths", "8,16", "--device", "cpu", "--no-amp"]


def folder_dataset(root: Path, per_class: int = 12) -> Path:
    """Three emotions of ``per_class`` 48x48 faces each (noise at three brightness levels)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("happiness", "sadness", "anger")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.png"), (rng.random((48, 48)) * 60 + c * 60).astype(np.uint8))
    return root


def tiny_checkpoint(path: Path, **meta) -> Path:
    cfg = ModelConfig(widths=(8, 16), hidden=16)
    save_checkpoint(path, build_model(cfg), cfg, 0.5, 0.25, meta={"version": "mine", **meta})
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(res, code: int, *words: str) -> None:
    """A CliRunner result that exited ``code`` with one clear line: no traceback, no click "Aborted!",
    each of ``words`` said."""
    assert res.exit_code == code and isinstance(res.exception, SystemExit), (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output and "Aborted!" not in res.output, res.output
    assert all(w in res.output for w in words), res.output


def interrupt_the_second_epoch(monkeypatch):
    """Training raises KeyboardInterrupt (Ctrl-C) as its second epoch starts; returns the real epoch."""
    from moodstream.trainer import train as train_mod

    real, calls = train_mod.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    return real

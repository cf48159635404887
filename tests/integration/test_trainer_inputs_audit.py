"""The trainer commands (train, eval, balance, export) fed bad paths, odd data and interruptions:
one clear line instead of a traceback, and nothing the user had (the shipped model, an --init
checkpoint, the best epoch so far) lost."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tests.support.trainkit import interrupt_the_second_epoch

from moodstream.cli import cli
from moodstream.shared import models
from moodstream.shared.errors import DataError, ModelError
from moodstream.shared.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from moodstream.trainer import train as train_mod
from moodstream.trainer.data import load_labels, read_gray

TINY = ["--preset", "cpu", "--epochs", "1", "--widths", "8,16", "--device", "cpu", "--no-amp"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_checkpoint(path, version="mine"):
    cfg = ModelConfig(widths=(8, 16), hidden=16)
    save_checkpoint(path, build_model(cfg), cfg, 0.5, 0.25, meta={"version": version})
    return path


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped checkpoint standing in for it, so a failing test cannot harm the real one."""
    copy = tmp_path / "package" / "weights" / "emotion.pt"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(models.SHIPPED_CHECKPOINT, copy)
    monkeypatch.setattr(models, "SHIPPED_CHECKPOINT", copy)
    return copy


@pytest.mark.parametrize("command", [["train", "--data", "DATA"] + TINY, ["export", "onnx"]], ids=["train", "export"])
@pytest.mark.parametrize("where", ["under-a-file", "empty"])
def test_an_out_folder_that_cannot_be_made_is_a_usage_error(fixtures_dir, tmp_path, monkeypatch, command, where):
    """`--out /etc/passwd/x` was a NotADirectoryError traceback (train's after reading the whole
    dataset); `--out ''` wrote everything into the current folder."""
    (tmp_path / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    out = {"under-a-file": str(tmp_path / "file" / "run"), "empty": ""}[where]
    args = [str(fixtures_dir / "ferplus") if a == "DATA" else a for a in command]
    res = CliRunner().invoke(cli, args + ["--out", out])
    assert res.exit_code == 2 and "--out" in res.output and "Traceback" not in res.output, (res.output, res.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_train_into_the_shipped_models_folder_is_refused(fixtures_dir, shipped_copy):
    """`train --out <package>/shared/weights` wrote over the shipped emotion.pt (from the first
    epoch on, --install not given), with history.json, metrics.json and curves.png beside it."""
    before = digest(shipped_copy)
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"),
                                   "--out", str(shipped_copy.parent) + "/"] + TINY)
    assert res.exit_code == 2 and "--install" in res.output and "Traceback" not in res.output, res.output
    assert digest(shipped_copy) == before
    assert [p.name for p in shipped_copy.parent.iterdir()] == ["emotion.pt"]


def test_balance_does_not_overwrite_the_shipped_model_unless_told_to(fixtures_dir, shipped_copy, tmp_path):
    """`moodstream balance --data X` (no --checkpoint, no --out) replaced the shipped model with a
    copy fitted on X, whatever X was (the 24-face fixture will do)."""
    before = digest(shipped_copy)
    data = str(fixtures_dir / "ferplus")
    for extra in ([], ["--checkpoint", str(shipped_copy)]):
        res = CliRunner().invoke(cli, ["balance", "--data", data, "--device", "cpu"] + extra)
        assert res.exit_code == 2 and "--out" in res.output and "Traceback" not in res.output, res.output
        assert digest(shipped_copy) == before
    # asked for by name, it still can be done; another --out leaves it alone
    res = CliRunner().invoke(cli, ["balance", "--data", data, "--device", "cpu", "--out", str(tmp_path / "b.pt")])
    assert res.exit_code == 0, res.output
    assert digest(shipped_copy) == before and load_checkpoint(tmp_path / "b.pt").class_bias is not None


def test_an_init_checkpoint_that_the_run_would_replace_is_refused(fixtures_dir, tmp_path):
    """`train --init run/emotion.pt --out run` overwrote the starting checkpoint after epoch 1
    (even when interrupted, even when worse): the model it started from was gone."""
    start = tiny_checkpoint(tmp_path / "run" / "emotion.pt")
    before = digest(start)
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"), "--out", str(tmp_path / "run"),
                                   "--init", str(start)] + TINY)
    assert res.exit_code == 2 and "--init" in res.output and "Traceback" not in res.output, res.output
    assert digest(start) == before and load_checkpoint(start).version == "mine"


def test_a_bad_init_fails_before_the_data_is_read_or_out_is_made(fixtures_dir, tmp_path, monkeypatch):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setattr(train_mod, "load_data", lambda *a, **k: pytest.fail("read the data before --init"))
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"), "--out", str(tmp_path / "o"),
                                   "--init", str(tmp_path / "bad.pt")] + TINY)
    assert res.exit_code == 1 and "bad.pt" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_write_cut_short_keeps_the_previous_file(tmp_path, monkeypatch):
    """emotion.pt was written in place: a run killed (or a disk filled) while it saved a better
    epoch, the final model, or `balance`'s adjusted copy left a truncated file, and the previous
    best (or the checkpoint being adjusted) was lost."""
    path = tiny_checkpoint(tmp_path / "emotion.pt", version="best-so-far")
    real_save = torch.save

    def cut_short(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if hasattr(f, "truncate"):  # a file object (torch_save_atomic's own, for errno-bearing write errors)
            f.flush()
            f.truncate(100)
        else:
            with open(f, "r+b") as fh:
                fh.truncate(100)
        raise KeyboardInterrupt  # Ctrl-C (or ENOSPC) in the middle of the write

    monkeypatch.setattr(torch, "save", cut_short)
    ckpt = load_checkpoint(path)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, ckpt.model, ckpt.config, 0.5, 0.25, meta={"version": "newer"})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path).version == "best-so-far"
    assert [p.name for p in tmp_path.iterdir()] == ["emotion.pt"]  # no temporary left behind


def test_ctrl_c_in_training_says_what_was_kept_and_how_to_resume(fixtures_dir, tmp_path, monkeypatch):
    """Ctrl-C printed click's bare "Aborted!" (exit 1): not that the best epoch was kept, nor
    that --resume continues."""
    interrupt_the_second_epoch(monkeypatch)
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"), "--out", str(tmp_path),
                                   "--preset", "cpu", "--epochs", "3", "--widths", "8,16", "--device", "cpu",
                                   "--no-amp"])
    assert res.exit_code == 130, (res.output, res.exception)
    assert "--resume" in res.output and "emotion.pt" in res.output and "Traceback" not in res.output
    assert load_checkpoint(tmp_path / "emotion.pt").meta["partial"] is True


def _png_header_only(path, width, height):
    """A PNG that declares ``width`` x ``height`` gray pixels and holds almost none (a bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_an_image_over_opencvs_pixel_limit_is_a_data_error(tmp_path):
    """OpenCV raises (cv2.error, an assertion) rather than returning None for an image over its
    pixel limit: train / eval / balance ended in a traceback."""
    _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(DataError, match="bomb.png"):
        read_gray(tmp_path / "bomb.png", 48)


def test_images_in_a_symlinked_subfolder_are_used_and_link_loops_end(fixtures_dir, tmp_path):
    """rglob does not enter a symlinked folder: its images were left out of training silently."""
    faces = sorted((fixtures_dir / "ferplus" / "FER2013Train").glob("*.png"))
    data = tmp_path / "data"
    for label, part in (("anger", faces[:10]), ("happiness", faces[10:20])):
        (data / "train" / label).mkdir(parents=True)
        for f in part:
            shutil.copy(f, data / "train" / label / f.name)
    elsewhere = tmp_path / "more_happy"
    elsewhere.mkdir()
    for f in faces[20:30]:
        shutil.copy(f, elsewhere / f.name)
    (data / "train" / "happiness" / "more").symlink_to(elsewhere, target_is_directory=True)
    (data / "train" / "anger" / "loop").symlink_to(data / "train", target_is_directory=True)  # would add happiness
    (data / "train" / "anger" / "again").symlink_to(data / "train" / "anger", target_is_directory=True)
    labels = load_labels(data, "train")
    assert list(torch.bincount(torch.from_numpy(labels), minlength=8)[[0, 4]]) == [10, 20]


def test_a_pickled_module_is_named_without_torchs_advice(tmp_path):
    """`torch.save(model)` (a whole module, the common "torch file of another model") was reported
    with torch's advice cut at 120 characters, terminal escape codes included."""
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(ModelError) as exc:
        load_checkpoint(tmp_path / "module.pt")
    text = str(exc.value)
    assert "module.pt" in text and "\x1b" not in text and "do those steps" not in text, text


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", [["train", "--data", "DATA"] + TINY, ["export", "onnx"]], ids=["train", "export"])
def test_an_out_folder_the_system_refuses_is_one_line(fixtures_dir, command):
    """Where the check on the flag cannot tell (/proc looks writable to root; a read-only or full
    file system), making the folder was a FileNotFoundError traceback."""
    args = [str(fixtures_dir / "ferplus") if a == "DATA" else a for a in command]
    res = CliRunner().invoke(cli, args + ["--out", "/proc/moodstream-audit/run"])
    assert res.exit_code == 1 and "cannot make the output folder" in res.output, (res.output, res.exception)
    assert "Traceback" not in res.output


@pytest.mark.parametrize("command", ["train", "eval", "balance"])
@pytest.mark.parametrize("device", ["", "foo", "mps", "cuda:x"])
def test_a_device_that_is_not_one_of_the_documented_forms_is_a_usage_error(fixtures_dir, tmp_path, command, device):
    """--device '' / foo / mps were RuntimeError tracebacks from torch (after reading the data)."""
    args = [command, "--data", str(fixtures_dir / "ferplus"), "--out", str(tmp_path / "out.pt"), "--device", device]
    if command == "train":
        args = ["train", "--data", str(fixtures_dir / "ferplus"), "--out", str(tmp_path / "run"), "--preset", "cpu",
                "--epochs", "1", "--widths", "8,16", "--device", device]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "--device" in res.output and "Traceback" not in res.output, (res.output, res.exception)
    assert not any(tmp_path.iterdir())


def test_resume_with_other_data_is_refused(fixtures_dir, tmp_path, monkeypatch):
    """--resume checked the options, not the data: an interrupted run continued on another
    dataset, its epochs and its best-so-far mixed over two sets of images."""
    import shutil

    real = interrupt_the_second_epoch(monkeypatch)
    args = ["--out", str(tmp_path / "run"), "--preset", "cpu", "--epochs", "3", "--widths", "8,16", "--device", "cpu",
            "--no-amp"]
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"), *args])
    assert res.exit_code == 130, (res.output, res.exception)
    other = tmp_path / "other"
    shutil.copytree(fixtures_dir / "ferplus", other)
    labels = other / "FER2013Train" / "label.csv"  # a dataset of other images: three fewer
    labels.write_text("".join(labels.read_text().splitlines(keepends=True)[3:]))
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    res = CliRunner().invoke(cli, ["train", "--data", str(other), *args, "--resume"])
    assert res.exit_code == 1 and "other data" in res.output, (res.output, res.exception)
    res = CliRunner().invoke(cli, ["train", "--data", str(fixtures_dir / "ferplus"), *args, "--resume"])
    assert res.exit_code == 0, (res.output, res.exception)


def test_a_folder_dataset_of_one_class_is_refused_for_training(fixtures_dir, tmp_path):
    """A folder dataset with one class trained without a word (a "classifier" that answers one emotion);
    eval of one class stays allowed (a held-out set of smiles, say)."""
    import shutil

    happy = tmp_path / "data" / "happy"
    happy.mkdir(parents=True)
    for i, png in enumerate(sorted((fixtures_dir / "ferplus" / "FER2013Train").glob("*.png"))[:40]):
        shutil.copy(png, happy / f"{i}.png")
    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 1 and "one class" in res.output and "happiness" in res.output, (res.output, res.exception)
    assert not (tmp_path / "run").exists()

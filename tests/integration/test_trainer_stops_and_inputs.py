"""What the trainer audit (test_trainer_user_attacks.py) left: Ctrl-C and SIGTERM in `eval` and
`balance`, a progress bar while a dataset is read, FER+ image names that leave their folder, a
`train --out` inside `--data`, a file that is not a checkpoint, and a batch of 10**9. Each test
failed before its fix."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.support.trainkit import TINY, digest, folder_dataset, one_line, tiny_checkpoint

from moodstream.cli import cli
from moodstream.shared.models import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sigterm_guard():
    """SIGTERM as a KeyboardInterrupt while a test runs: the signal's default action (where the
    command installs no handler, as before its fix) would end pytest itself."""
    def guard(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, previous)


def signal_on_image(monkeypatch, signum: int, at: int = 3) -> None:
    """A real ``signum`` to this process while the dataset is read (its ``at``-th image)."""
    from moodstream.trainer import data

    real, seen = data.read_gray, []

    def read_gray(path, size):
        seen.append(path)
        if len(seen) == at:
            os.kill(os.getpid(), signum)
        return real(path, size)

    monkeypatch.setattr(data, "read_gray", read_gray)


# -- 1. Ctrl-C and SIGTERM in eval and balance ---------------------------------------------------------

@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
@pytest.mark.parametrize("command", ["eval", "balance"])
def test_a_stop_while_eval_or_balance_reads_is_one_line_and_the_shells_code(tmp_path, monkeypatch, sigterm_guard,
                                                                          command, signum, code, said):
    """Ctrl-C: click's "Aborted!" and exit 1; SIGTERM: the process ended at once, without a word,
    exit 143. `train` and `export` say what was stopped and exit 130 / 143; so do these now. The
    checkpoint `balance` adjusts is left as it was."""
    data = folder_dataset(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    before = digest(ckpt)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal_on_image(monkeypatch, signum)
    res = CliRunner().invoke(cli, [command, "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu"])
    one_line(res, code, f"moodstream {command}: stopped ({said})")
    assert res.output.strip().count("\n") == 0, res.output
    assert digest(ckpt) == before
    if command == "balance":
        assert f"{ckpt} left as it was" in res.output, res.output
    assert not list(tmp_path.rglob("*.tmp"))
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # given back


def test_a_stop_while_balance_writes_its_checkpoint_leaves_it_whole(tmp_path, monkeypatch, sigterm_guard):
    """SIGTERM while the adjusted checkpoint is written: it is written whole first (as train's
    saves are), then the command stops, exit 143, and says it was written."""
    import moodstream.shared.models as models

    data = folder_dataset(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    real = torch.save

    def save_then_stop(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # mid-write: the temporary file is open, the checkpoint not replaced
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(models.torch, "save", save_then_stop)
    res = CliRunner().invoke(cli, ["balance", "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu"])
    monkeypatch.setattr(models.torch, "save", real)
    one_line(res, 143, "moodstream balance: stopped (SIGTERM)", f"wrote {ckpt}")
    assert "balance" in load_checkpoint(ckpt).meta
    assert not list(tmp_path.rglob("*.tmp"))


# -- 2. a progress bar while images are read --------------------------------------------------------------

def _stderr_on_a_terminal(args: list[str], timeout_s: float = 90) -> str:
    """``moodstream ARGS`` with its stderr on a pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0x0: no bar fits
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_reading_a_dataset_shows_a_progress_bar_on_a_terminal(tmp_path, fixtures_dir):
    """FER+ Train (28k images) was read in ~5 s of silence before train's first line; a large
    folder dataset for minutes. On a terminal a bar counts the images (as the epoch bar does);
    away from one, nothing more is written."""
    from moodstream.trainer.data import load_labels

    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    args = ["eval", "--data", str(fixtures_dir / "ferplus"), "--checkpoint", str(ckpt), "--device", "cpu"]
    shown = _stderr_on_a_terminal(args)
    n = len(load_labels(fixtures_dir / "ferplus", "test"))
    assert re.search(rf"reading test: .*\| *\d+/{n} ", shown), shown[-2000:]
    piped = subprocess.run([sys.executable, "-m", "moodstream", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=90)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr[-2000:]


# -- 3. FER+ names that leave their folder -------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside.png", "ABSOLUTE", "sub/../../outside.png"])
def test_a_ferplus_name_that_leaves_its_folder_is_refused(tmp_path, fixtures_dir, name):
    """label.csv naming `../x.png` or `/etc/...` read a file outside the split's folder (here a
    face beside the dataset), as if it were one of its images."""
    root = tmp_path / "ferplus"
    shutil.copytree(fixtures_dir / "ferplus", root)
    outside = tmp_path / "ferplus" / "outside.png"
    shutil.copy(next((root / "FER2013Test").glob("*.png")), outside)
    name = str(outside) if name == "ABSOLUTE" else name
    label = root / "FER2013Test" / "label.csv"
    label.write_text(label.read_text() + f'{name},"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n')
    rows = len(label.read_text().splitlines())
    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    res = CliRunner().invoke(cli, ["eval", "--data", str(root), "--checkpoint", str(ckpt), "--device", "cpu"])
    one_line(res, 1, f"label.csv:{rows}", repr(name), "leaves the split's folder")


# -- 4. train --out inside --data --------------------------------------------------------------------------

@pytest.mark.parametrize("inside", ["runs/a", "happiness/run", "."])
def test_train_out_inside_data_is_refused(tmp_path, inside):
    """`--data ds --out ds/happiness/run`: the next run trained on the run's curves.png as a happy
    face; `--out ds/runs/a`: the next run refused 'runs' as an unknown class folder."""
    data = folder_dataset(tmp_path / "data")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    out = data / inside
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(out), *TINY])
    one_line(res, 2, "--out", "inside --data")
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


# -- 5. files that are not checkpoints -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["text", "truncated", "empty"])
def test_a_file_that_is_not_a_checkpoint_is_one_clear_line(tmp_path, kind):
    """A text file said "cannot be read: not a checkpoint torch can load (KeyError: 101)"; a
    truncated one ended mid-word: "... This is an internal miniz error. If yo"."""
    path = tmp_path / "some.txt"
    if kind == "text":
        path.write_text("epochs: 60\nbatch: 128\n")
    elif kind == "truncated":
        whole = tiny_checkpoint(tmp_path / "whole.pt").read_bytes()
        path.write_bytes(whole[:len(whole) // 2])
    else:
        path.write_bytes(b"")
    data = folder_dataset(tmp_path / "data")
    res = CliRunner().invoke(cli, ["eval", "--data", str(data), "--checkpoint", str(path), "--device", "cpu"])
    one_line(res, 1, f"{path} is not a moodstream emotion checkpoint (")
    line = res.output.strip()
    assert line.count("\n") == 0 and line.endswith(")"), line
    assert {"text": "text", "truncated": "cut short", "empty": "empty"}[kind] in line, line
    assert "KeyError" not in line and "miniz" not in line, line


# -- 6. --batch-size ---------------------------------------------------------------------------------------

def test_a_batch_size_past_the_bound_is_a_usage_error(tmp_path):
    """`--batch-size 1000000000` trained (a tiny dataset is one batch of itself); on FER+ Train it is
    one batch of 28k faces, about 150 GB: the machine ran out of memory. The bound is named."""
    data = folder_dataset(tmp_path / "data")
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY,
                                   "--batch-size", "1000000000"])
    one_line(res, 2, "--batch-size")
    assert not (tmp_path / "run").exists()
    from moodstream.trainer.cli import BATCH_SIZE_MAX

    assert str(BATCH_SIZE_MAX) in res.output
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY,
                                   "--batch-size", str(BATCH_SIZE_MAX)])
    assert res.exit_code == 0, res.output

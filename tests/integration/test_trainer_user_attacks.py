"""train / eval / balance / export as a demanding user drives them: a run that diverges, a second
run into the same folder, SIGTERM, a full disk, odd numbers and odd checkpoints. Each test failed
before its fix: one clear line and a non-zero exit, never a traceback, nothing the user had lost."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tests.support.trainkit import (TINY, digest, folder_dataset, interrupt_the_second_epoch, one_line,
                                    tiny_checkpoint)

from moodstream.cli import cli
from moodstream.shared.errors import ModelError
from moodstream.shared.models import ModelConfig, build_model, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]


# -- a run that diverges ------------------------------------------------------------------------

def test_a_run_that_diverges_stops_with_one_line_and_leaves_no_broken_model(tmp_path):
    """`--lr 1e6`: the loss overflowed in the first epoch, the run went on to its end and exited 0,
    'selecting' an epoch whose Valid loss was NaN; its emotion.pt held inf weights (fp16 of 1e6),
    which eval, analyze and the worker loaded and answered with."""
    data = folder_dataset(tmp_path / "data")
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset",
                                   "paper-initial", "--epochs", "3", "--widths", "8,16", "--device", "cpu",
                                   "--no-amp", "--lr", "1e6"])
    one_line(res, 1, "diverged in epoch 1", "--lr")
    assert not (tmp_path / "run" / "emotion.pt").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_checkpoint_with_weights_that_are_not_finite_is_refused(tmp_path):
    cfg = ModelConfig(widths=(8, 16), hidden=16)
    model = build_model(cfg)
    with torch.no_grad():
        model.classifier[-1].weight[0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", model, cfg, 0.5, 0.25)
    with pytest.raises(ModelError, match="nan.pt.*not finite"):
        load_checkpoint(tmp_path / "nan.pt")


def test_a_weight_past_fp16_is_kept_whole_in_the_checkpoint(tmp_path):
    """Checkpoints store fp16: a weight over 65504 (batch-norm scales grow without weight decay)
    became inf, and the model answered NaN once loaded."""
    cfg = ModelConfig(widths=(8, 16), hidden=16)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.features[1].weight[0] = 1e5
    save_checkpoint(tmp_path / "big.pt", model, cfg, 0.5, 0.25)
    loaded = load_checkpoint(tmp_path / "big.pt").model
    assert loaded.features[1].weight[0].item() == 1e5
    x = torch.rand(2, 1, 48, 48)
    assert torch.isfinite(loaded(x)).all()


# -- the output folder ----------------------------------------------------------------------------

def test_a_second_run_into_a_folder_with_a_trained_model_is_refused(tmp_path):
    """The same command run twice replaced the first run's model after the new run's first epoch,
    without a word (a worse run lost the better one)."""
    data = folder_dataset(tmp_path / "data")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = digest(tmp_path / "run" / "emotion.pt")
    one_line(CliRunner().invoke(cli, args + ["--seed", "1"]), 2, "emotion.pt", "--overwrite")
    assert digest(tmp_path / "run" / "emotion.pt") == before
    res = CliRunner().invoke(cli, args + ["--seed", "1", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "run" / "emotion.pt").meta["recipe"]["seed"] == 1


def test_a_fresh_run_into_an_interrupted_one_is_refused(tmp_path, monkeypatch):
    """Forgetting --resume after a Ctrl-C started over and wrote the new first epoch over the
    interrupted run's state and best epoch: hours of training lost, nothing said."""
    from moodstream.trainer import train as train_mod

    data = folder_dataset(tmp_path / "data")
    real = interrupt_the_second_epoch(monkeypatch)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY[:2], "--epochs", "3", *TINY[4:]]
    assert CliRunner().invoke(cli, args).exit_code == 130
    state = tmp_path / "run" / "train_state.pt"
    before = digest(state)
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    one_line(CliRunner().invoke(cli, args), 2, "interrupted run", "--resume", "--overwrite")
    assert digest(state) == before
    res = CliRunner().invoke(cli, args + ["--resume"])
    assert res.exit_code == 0, res.output
    assert not state.exists()


def _fsize_limit(nbytes: int):
    def limit() -> None:  # Python ignores SIGXFSZ: a write past the limit is an OSError (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _run(args: list[str], limit: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moodstream", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, preexec_fn=_fsize_limit(limit) if limit else None, **kwargs)


@pytest.mark.parametrize("command", ["train", "balance", "eval"])
def test_a_write_that_fails_is_one_line_and_keeps_the_previous_file(tmp_path, command):
    """A full disk (here a file-size limit) was a traceback: torch's `RuntimeError: [enforce fail
    at inline_container.cc:672] . unexpected pos 64 vs 0` (train, balance) or OSError (eval --out)."""
    data = folder_dataset(tmp_path / "data")
    ckpt = tiny_checkpoint(tmp_path / "mine.pt")
    if command == "train":
        args, kept = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY], None
    elif command == "balance":
        args, kept = ["balance", "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu"], ckpt
    else:
        kept = tmp_path / "report.json"
        kept.write_text("{}")
        args = ["eval", "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(kept)]
    before = None if kept is None else digest(kept)
    proc = _run(args, limit=1024)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write" in proc.stderr.splitlines()[-1], proc.stderr[-2000:]
    if kept is not None:
        assert digest(kept) == before
    assert not list(tmp_path.rglob("*.tmp")), list(tmp_path.rglob("*.tmp"))


def test_an_export_that_fails_midway_leaves_the_previous_files(tmp_path):
    """`export onnx` wrote each file in place: a full disk midway (a 3 MB tmpfs by hand; here a
    file-size limit) left openvino/mtcnn_onet.onnx truncated among the others, and a traceback.
    The files are written aside and moved in once all are whole."""
    out = tmp_path / "onnx"
    names = ["mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx", "emotion.onnx",
             "openvino/mtcnn_pnet.onnx", "openvino/mtcnn_rnet.onnx", "openvino/mtcnn_onet.onnx"]
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"previous {name}")
    proc = _run(["export", "onnx", "--out", str(out)], limit=200_000)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write" in proc.stderr.splitlines()[-1], proc.stderr[-2000:]
    assert {n: (out / n).read_text() for n in names} == {n: f"previous {n}" for n in names}
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(names)


def test_export_of_another_checkpoint_does_not_replace_the_shipped_onnx_files_unasked(tmp_path, monkeypatch):
    """`export onnx --checkpoint runs/x/emotion.pt` wrote into the package's worker/data/onnx: the
    torch-free backend then served another model than emotion.pt, beside an int8 file of the old one."""
    from moodstream.trainer import export as export_mod

    written = []
    monkeypatch.setattr(export_mod, "export_all", lambda out_dir, checkpoint=None: written.append(out_dir) or [])
    mine = tiny_checkpoint(tmp_path / "mine.pt")
    one_line(CliRunner().invoke(cli, ["export", "onnx", "--checkpoint", str(mine)]), 2, "--out", "shipped")
    assert written == []
    assert CliRunner().invoke(cli, ["export", "onnx", "--checkpoint", str(mine), "--out",
                                    str(export_mod.ONNX_DIR)]).exit_code == 0  # named: on purpose
    assert CliRunner().invoke(cli, ["export", "onnx"]).exit_code == 0  # the shipped model: its own files
    assert written == [export_mod.ONNX_DIR, export_mod.ONNX_DIR]


# -- signals ----------------------------------------------------------------------------------------

def test_sigterm_mid_run_says_what_was_kept_like_ctrl_c(tmp_path):
    """`kill`, `docker stop`, a batch scheduler's preemption: SIGTERM ended train at once, exit 143
    and not a word, where Ctrl-C says the best epoch is kept and how to resume."""
    data = folder_dataset(tmp_path / "data", per_class=150)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "train", "--data", str(data), "--out", str(out),
                             *TINY[:2], "--epochs", "500", *TINY[4:]], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "train_state.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "SIGTERM" in err and "--resume" in err.splitlines()[-1], err[-2000:]
    assert load_checkpoint(out / "emotion.pt").meta["partial"] is True
    assert not list(out.glob("*.tmp"))


# -- numbers and checkpoints --------------------------------------------------------------------------

@pytest.mark.parametrize("flag", [["--input-size", str(ModelConfig.LIMITS["input_size"][1] + 1)],
                                  ["--seed", "-5", "--max-train", "10"],
                                  ["--seed", str(2 ** 64)]], ids=["input-size", "negative-seed", "huge-seed"])
def test_numbers_no_run_can_use_are_usage_errors(tmp_path, flag):
    """--input-size 513 trained a checkpoint that every loader refuses (at most 512; 100000 read
    each face at 100000x100000 until memory ran out); a negative seed with --max-train, or one past
    2**64, was a ValueError traceback from numpy or torch."""
    data = folder_dataset(tmp_path / "data")
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, *flag])
    one_line(res, 2, flag[0])
    assert not (tmp_path / "run").exists()
    from moodstream.trainer.cli import INPUT_SIZE_MAX
    assert INPUT_SIZE_MAX == ModelConfig.LIMITS["input_size"][1]  # the flag's bound is the loader's


@pytest.mark.parametrize("command", ["eval", "balance", "export"])
def test_a_checkpoint_whose_meta_is_not_a_dict_is_one_line(tmp_path, command):
    """A checkpoint of the right format whose `meta` was a string: AttributeError / TypeError tracebacks."""
    path = tiny_checkpoint(tmp_path / "odd.pt")
    raw = torch.load(path, weights_only=True)
    raw["meta"] = "not a dict"
    torch.save(raw, path)
    data = folder_dataset(tmp_path / "data")
    args = {"eval": ["eval", "--data", str(data), "--device", "cpu"],
            "balance": ["balance", "--data", str(data), "--device", "cpu", "--out", str(tmp_path / "b.pt")],
            "export": ["export", "onnx", "--out", str(tmp_path / "onnx")]}[command]
    one_line(CliRunner().invoke(cli, args + ["--checkpoint", str(path)]), 1, "odd.pt", "meta")


def test_each_epoch_line_says_how_long_the_run_has_left(tmp_path, caplog):
    """Away from a terminal (nohup, a CI log) the progress bar is off: the epoch lines gave no
    idea when a 60-epoch run would end."""
    data = folder_dataset(tmp_path / "data")
    caplog.set_level("INFO", logger="moodstream.trainer")
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY[:2],
                                   "--epochs", "3", *TINY[4:]])
    assert res.exit_code == 0, res.output
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage() and "train loss" in r.getMessage()]
    assert len(lines) == 3
    assert all("left" in line for line in lines[:2]) and "left" not in lines[2], lines
    assert re.search(r"\d+:\d\d:\d\d left", lines[0]), lines[0]  # h:mm:ss, as tqdm writes it


def test_sigterm_mid_export_leaves_the_folder_as_it_was(tmp_path):
    """SIGTERM ended `export onnx` at once: its hidden staging folder stayed in --out (the package's
    own by default), one more each time. Now it unwinds as Ctrl-C does: exit 143, one line."""
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "emotion.onnx").write_text("previous")
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "export", "onnx", "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # once PNet is staged: RNet, ONet and the emotion net are still to come (about a second)
        while not list(out.glob(".export-*/mtcnn_pnet.onnx")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert "export onnx: stopped (SIGTERM)" in err.splitlines()[-1], err[-2000:]
    assert [p.name for p in out.iterdir()] == ["emotion.onnx"] and (out / "emotion.onnx").read_text() == "previous"


def test_eval_out_is_refused_where_it_names_the_shipped_model_it_evaluates(tmp_path, monkeypatch):
    """`eval --data D --out .../shared/weights/emotion.pt` (no --checkpoint: the shipped model is the one
    evaluated) wrote the JSON report over the shipped model and exited 0; the next eval, analyze or
    worker found 'a text file, beginning { "n": 24'. --out naming --checkpoint was refused already."""
    import moodstream.shared.models as models

    shipped = tiny_checkpoint(tmp_path / "weights" / "emotion.pt")
    monkeypatch.setattr(models, "SHIPPED_CHECKPOINT", shipped)
    before = digest(shipped)
    data = folder_dataset(tmp_path / "data")
    res = CliRunner().invoke(cli, ["eval", "--data", str(data), "--device", "cpu", "--out", str(shipped)])
    one_line(res, 2, "is the checkpoint itself", "the report would replace it")
    assert digest(shipped) == before


def test_an_interrupted_overwrite_leaves_no_metrics_of_the_model_it_replaced(tmp_path, monkeypatch):
    """`train --overwrite` over a finished run, stopped after its first epoch: emotion.pt was the new
    run's best epoch, but metrics.json and curves.png beside it were still the old run's (its recipe,
    its selected epoch, its Test accuracy): a folder whose numbers describe another model. They go
    when the new run's first epoch replaces the model; until then the old run is whole."""
    import json

    data = folder_dataset(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), *TINY]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (run / "metrics.json").is_file() and (run / "curves.png").is_file()
    interrupt_the_second_epoch(monkeypatch)
    res = CliRunner().invoke(cli, args + ["--seed", "1", "--overwrite", "--epochs", "3"])  # the last --epochs
    assert res.exit_code == 130, res.output
    assert load_checkpoint(run / "emotion.pt").meta["recipe"]["seed"] == 1  # the new run's first epoch
    assert not (run / "metrics.json").exists() and not (run / "curves.png").exists()
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]


def test_the_last_line_names_the_valid_accuracy_that_chose_the_epoch(tmp_path):
    """'selected epoch 2 by Valid accuracy 0.1750' where history.json gave epoch 2 0.1625: the number
    printed was Valid's after flip TTA and the class-prior adjustment, not the one that chose."""
    import json

    data = folder_dataset(tmp_path / "data")
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(run), *TINY, "--epochs", "2"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    chose = {h["epoch"]: h["valid_accuracy"] for h in json.loads((run / "history.json").read_text())}
    epoch = metrics["selected_epoch"]
    assert f"selected epoch {epoch} by Valid accuracy {chose[epoch]:.4f}" in res.output, res.output
    assert f"{metrics['valid']['accuracy']:.4f} with " in res.output, res.output

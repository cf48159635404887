"""``moodstream train``, ``moodstream eval`` and the ``moodstream bench`` group."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from moodstream.options import DEVICE, FiniteRange, OutputFile, OutputFolder, log_to_stderr, to_stderr
from moodstream.lazy import LazyGroup
from moodstream.shared.table import printable

log = logging.getLogger(__name__)

INPUT_SIZE_MAX = 512  # shared.models.ModelConfig.LIMITS: the largest input a checkpoint may hold (and load with)
SEED_MAX = 2 ** 64 - 1  # torch's manual_seed takes no more; numpy takes no negative seed
# A batch is a slice of the images on the device: 10**9 was one batch of all of FER+ Train, about 150 GB
# (5.3 MB a 48 px face for the best preset's VGG in training, measured on the CPU). 1024, 8x the presets'
# 128, is about 6 GB there (3.5 GB for the cpu preset): it fits a 2-core machine's memory and a GPU's,
# and FER+ Train still gives 28 steps an epoch (a larger batch leaves the one-cycle schedule few steps).
BATCH_SIZE_MAX = 1024


class OldSpellings(click.Option):
    """An option whose first spelling is the one shown; the others are old names that
    scripts may still use, accepted but left out of --help (one name per concept
    across commands: ``--every`` keeps every Nth frame, ``--detect-every`` detects)."""

    def get_help_record(self, ctx: click.Context):
        opts, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


STOPPED_NOTE = "moodstream.stopped_note"  # ctx.meta key: what a stop leaves, where a command changes it as it goes


class StopSignals:
    """SIGTERM and SIGHUP are taken as Ctrl-C is while the command runs (`kill`, a CI job's timeout,
    `docker stop`): it unwinds (its ``finally`` blocks run), and it ends with one line and the shell's
    code (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), not click's "Aborted!" and 1. ``stopped_note`` says
    what that leaves; a command whose outputs change as it runs says so with :func:`stopped_note`."""

    stopped_note = "nothing written"

    def invoke(self, ctx: click.Context):
        from moodstream.shared.stop_signals import (exit_code, hold_stop_signals, restore_stop_signals,
                                                    stopped_by, take_stop_signals)

        previous = take_stop_signals()
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            hold_stop_signals(previous)  # the message and exit are not cut short by a second signal
            code = exit_code(exc)
            name = " ".join(n for n in (ctx.info_name, ctx.invoked_subcommand) if n)
            to_stderr(f"moodstream {name}: stopped ({stopped_by(code)}); "  # its note may name a path
                      f"{ctx.meta.get(STOPPED_NOTE, self.stopped_note)}")
            ctx.exit(code)
        finally:
            restore_stop_signals(previous)


class StopSignalsGroup(StopSignals, click.Group):
    """A group whose subcommands stop so (`bench`, `export`)."""


class StopSignalsCommand(StopSignals, click.Command):
    """A command that stops so (`eval`, `balance`: they said "Aborted!", and SIGTERM ended them
    without a word)."""


def stopped_note(note: str) -> None:
    """What a stop of the running command leaves from now on (``StopSignals``)."""
    click.get_current_context().meta[STOPPED_NOTE] = note


@click.command()
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="FER+ root (FER2013Train/ ...) or a folder-per-class dataset.")
@click.option("--out", "out_dir", default=Path("runs/train"), show_default=True, type=OutputFolder(),
              help="Where emotion.pt, metrics.json, history.json and curves.png go (not inside --data).")
@click.option("--preset", default="best", show_default=True,
              type=click.Choice(["paper-initial", "paper-vgg", "paper-resnet", "best", "cpu"]),
              help="Named recipe: the paper's tables (paper-*), ours (best), or ours sized for a CPU.")
@click.option("--arch", type=click.Choice(["vgg", "resnet"]), help="Override the preset's architecture.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=2, max=BATCH_SIZE_MAX),
              help="Override the preset's batch size.")
@click.option("--lr", type=FiniteRange(min=0, min_open=True), help="Override the learning rate.")
@click.option("--input-size", type=click.IntRange(min=16, max=INPUT_SIZE_MAX),
              help="Side of the square grayscale input (48, 64, 128...).")
@click.option("--widths", help="Comma-separated block widths, e.g. 64,128,256,512.")
@click.option("--labels", "label_mode", type=click.Choice(["hard", "soft"]),
              help="hard: majority label; soft: cross-entropy on the FER+ vote distribution.")
@click.option("--augment", type=click.Choice(["paper", "full", "none"]),
              help="paper: flip, blur, contrast; full: plus small affine and random erasing.")
@click.option("--balance/--no-balance", default=None,
              help="Fit the class-prior adjustment on Valid after training [default: on, off for paper-* presets].")
@click.option("--seed", type=click.IntRange(min=0, max=SEED_MAX),
              help="Random seed (data order, augmentation, init; a folder dataset's split is the same for every seed).")
@click.option("--max-train", type=click.IntRange(min=2), help="Use at most this many training images.")
@click.option("--init", "init", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Start from this checkpoint's weights (its architecture wins), e.g. to continue a run.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp/--no-amp", default=None,
              help="bf16 mixed precision in training [default: on for CUDA and for CPUs with native bf16 "
                   "(AVX512-BF16, AMX), where it is about 2x faster; off elsewhere].")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last finished epoch (give the same options).")
@click.option("--overwrite", is_flag=True,
              help="Start over in an --out that holds a trained model or an interrupted run (refused without it).")
@click.option("--install", is_flag=True, help="Also copy the result over the shipped model (shared/weights/emotion.pt).")
def train(data_dir, out_dir, preset, arch, epochs, batch_size, lr, input_size, widths, label_mode, augment,
          balance, seed, max_train, init, device, amp, resume, overwrite, install):
    """Train an emotion classifier, select the epoch by Valid accuracy, report Test.

    Writes the checkpoint (weights + config + labels + normalisation, loadable
    on CPU), metrics.json (accuracy, macro precision/recall/F1, per-class table,
    confusion matrix for Valid and Test) and the learning curves to --out.
    Mixed precision (bf16) on CUDA and on CPUs with native bf16; a progress
    bar shows images/s and the epoch's ETA, and each epoch's log line the
    time the run has left. A run that diverges (loss not finite) stops with
    one line. Ctrl-C, SIGTERM and SIGHUP keep the best epoch so far and say
    how to --resume.
    """
    import shutil

    from moodstream.shared.files import replacing, writing
    from moodstream.shared.models import SHIPPED_CHECKPOINT
    from moodstream.shared.stop_signals import (exit_code, hold_stop_signals, restore_stop_signals, stopped_by,
                                                take_stop_signals)
    from moodstream.trainer.metrics import format_report
    from moodstream.trainer.presets import preset as make_preset
    from moodstream.trainer.train import STATE_FILE
    from moodstream.trainer.train import main as train_main
    from moodstream.shared.models import ModelConfig

    width_tuple = None
    if widths is not None:
        lo, hi = ModelConfig.LIMITS["widths"]  # what a checkpoint may hold, so that it loads again
        try:
            width_tuple = tuple(int(w) for w in widths.split(","))
        except ValueError:
            width_tuple = ()
        if not width_tuple or not all(lo <= w <= hi for w in width_tuple):
            raise click.BadParameter(f"expected comma-separated integers in [{lo}, {hi}], got {widths!r}",
                                     param_hint="--widths")
    if out_dir.resolve().is_relative_to(data_dir.resolve()):
        # Refused, not skipped by the reader: the next run read the run's curves.png as a face of its class
        # folder (--out ds/happy/run) or refused runs/ as an unknown class (ds/runs/a), and a reader that skipped
        # "folders that look like runs" would still have to guess which ones they are (a run named fear/).
        raise click.BadParameter(f"is inside --data ({data_dir}): the run's files would become part of the "
                                 "dataset the next run reads; give an --out outside it", param_hint="'--out'")
    dst = (out_dir / "emotion.pt").resolve()
    if dst == SHIPPED_CHECKPOINT.resolve():  # each better epoch is saved there as it goes
        raise click.BadParameter("is the shipped model's folder: training would write over the shipped "
                                 "weights; train into another folder and add --install", param_hint="'--out'")
    if init is not None and init.resolve() == dst:
        raise click.BadParameter(f"is {init}, which this run would replace after its first epoch; "
                                 "give another --out (or continue an interrupted run with --resume)",
                                 param_hint="'--init'")
    if resume and overwrite:
        raise click.UsageError("--resume continues the run in --out and --overwrite starts it over: give one")
    if not resume and not overwrite:  # the new run's first epoch replaced them without a word
        if (out_dir / STATE_FILE).is_file():
            raise click.BadParameter(f"holds an interrupted run ({out_dir / STATE_FILE}): continue it with "
                                     "--resume, or start over with --overwrite", param_hint="'--out'")
        if (out_dir / "emotion.pt").is_file():
            raise click.BadParameter(f"holds a trained model ({out_dir / 'emotion.pt'}) that this run would "
                                     "replace: give another --out, or --overwrite", param_hint="'--out'")
    cfg = make_preset(preset, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, input_size=input_size,
                      widths=width_tuple, label_mode=label_mode, augment=augment, balance=balance, seed=seed,
                      max_train=max_train)
    if not logging.getLogger().handlers:
        log_to_stderr(logging.INFO, "%(asctime)s %(message)s")
    logging.getLogger("moodstream.trainer").setLevel(logging.INFO)
    previous = take_stop_signals()  # SIGTERM and SIGHUP (kill, docker stop, a scheduler) as Ctrl-C: they ended
    try:                            # the run at once, without a word
        metrics = train_main(cfg, data_dir, out_dir, device=device, init=init, amp=amp, resume=resume)
    except KeyboardInterrupt as exc:  # Ctrl-C: say what was kept and how to go on (click said only "Aborted!")
        hold_stop_signals(previous)
        code = exit_code(exc)
        if (out_dir / STATE_FILE).is_file():  # written after each finished epoch, with emotion.pt's best
            to_stderr(f"interrupted ({stopped_by(code)}): the best epoch so far is in {out_dir / 'emotion.pt'}; "
                      "run the same command with --resume to continue")
        else:
            click.echo(f"interrupted ({stopped_by(code)}) before the first epoch ended: nothing to resume", err=True)
        sys.exit(code)
    finally:
        restore_stop_signals(previous)
    served = "flip TTA and the class-prior adjustment" if "balance" in metrics else "flip TTA"
    click.echo(f"selected epoch {metrics['selected_epoch']} by Valid accuracy "  # the number that chose it
               f"{metrics['selected_valid_accuracy']:.4f} ({metrics['valid']['accuracy']:.4f} with {served}, "
               "as served); Test:")
    click.echo(format_report(metrics["test"]))
    click.echo(f"wrote {printable(str(out_dir / 'emotion.pt'))}, metrics.json, history.json, curves.png")
    if install:
        with writing(SHIPPED_CHECKPOINT), replacing(SHIPPED_CHECKPOINT) as tmp:  # never a half-copied shipped model
            shutil.copyfile(out_dir / "emotion.pt", tmp)
        click.echo(f"installed as {SHIPPED_CHECKPOINT}")


@click.command("eval", cls=StopSignalsCommand)
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="FER+ root or a folder-per-class dataset.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "valid", "test"]),
              help="Which split to evaluate (select models on valid, report test).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Checkpoint to evaluate [default: the shipped model].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table.")
@click.option("--out", type=OutputFile(), help="Also write the JSON report here.")
@click.option("--tta/--no-tta", default=True, show_default=True, help="Average with the mirrored face.")
@click.option("--adjust/--no-adjust", default=True, show_default=True,
              help="Apply the checkpoint's class-prior adjustment (as the worker does); --no-adjust: plain softmax.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
def eval_cmd(data_dir, split, checkpoint, as_json, out, tta, adjust, device):
    """Evaluate an emotion checkpoint on one split: accuracy, macro precision /
    recall / F1, per-class table and confusion matrix.

    A bar counts the images as they are read (on a terminal). Ctrl-C, SIGTERM
    and SIGHUP stop it with one line (exit 130, 143, 129).
    """
    import torch

    from moodstream.shared.devices import resolve_device
    from moodstream.shared import models
    from moodstream.shared.models import load_checkpoint
    from moodstream.trainer.data import data_size, load_split
    from moodstream.trainer.metrics import format_report
    from moodstream.trainer.train import DeviceData, evaluate

    # the checkpoint evaluated, the shipped one without --checkpoint (its report replaced it, exit 0)
    if out is not None and Path(out).resolve() == Path(checkpoint or models.SHIPPED_CHECKPOINT).resolve():
        raise click.BadParameter("is the checkpoint itself: the report would replace it", param_hint="'--out'")
    ckpt = load_checkpoint(checkpoint)
    dev = torch.device(resolve_device(device))
    ckpt.model.to(dev)
    data = DeviceData.from_split(load_split(data_dir, split, size=data_size(ckpt.config.input_size)), dev)
    report = evaluate(ckpt, data, flip_tta=tta, adjust=adjust)
    report.update(split=split, checkpoint=str(checkpoint or "shipped"), model_version=ckpt.version, tta=tta,
                  class_bias=ckpt.class_bias if adjust else None)
    text = json.dumps(report)
    if out:
        from moodstream.shared.files import write_text_atomic, writing
        from moodstream.shared.stop_signals import deferred_stop

        with writing(out), deferred_stop():  # a stop while the report is written: once it is whole
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, json.dumps(report, indent=1))
            stopped_note(f"wrote {out}")
    click.echo(text if as_json else format_report(report))


@click.command("balance", cls=StopSignalsCommand)
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The dataset the checkpoint was trained on (Train gives the prior, Valid picks tau).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Checkpoint to adjust [default: the shipped model].")
@click.option("--out", type=OutputFile(),
              help="Write the adjusted checkpoint here [default: overwrite --checkpoint; refused for the "
                   "shipped model unless --out names it].")
@click.option("--json", "as_json", is_flag=True, help="Print the fit (tau, prior, per-tau table) as JSON.")
@click.option("--device", default="auto", show_default=True, type=DEVICE, help="auto, cpu, cuda or cuda:N.")
def balance_cmd(data_dir, checkpoint, out, as_json, device):
    """Fit the class-prior adjustment of a checkpoint on Valid.

    Rare emotions (contempt, disgust, fear) are drowned by the frequent ones in
    FER+. This divides the model's probabilities by the Train class prior to
    the power tau, with tau chosen by macro F1 on Valid, and stores the result
    in the checkpoint, so every user of it (worker, analyze, eval) applies it.
    `train` does this by itself; this command is for existing checkpoints.
    Ctrl-C, SIGTERM and SIGHUP stop it with one line (exit 130, 143, 129):
    the checkpoint is left as it was, or, once its write has begun, written
    whole.
    """
    import torch

    from moodstream.shared.devices import resolve_device
    from moodstream.shared.models import SHIPPED_CHECKPOINT, load_checkpoint, write_checkpoint
    from moodstream.shared.stop_signals import deferred_stop
    from moodstream.trainer.data import data_size, load_labels, load_split
    from moodstream.trainer.train import DeviceData, fit_balance

    src = checkpoint or SHIPPED_CHECKPOINT
    dst = out or src
    if out is None and src.resolve() == SHIPPED_CHECKPOINT.resolve():  # a fit on any data replaced it silently
        raise click.UsageError(f"this would write over the shipped model ({SHIPPED_CHECKPOINT}); give --out "
                               "(that path itself to replace it on purpose)")
    stopped_note(f"{dst} left as it was" if dst.exists() else "nothing written")
    ckpt = load_checkpoint(src)
    dev = torch.device(resolve_device(device))
    ckpt.model.to(dev)
    train_labels = load_labels(data_dir, "train")
    fit = fit_balance(ckpt, DeviceData.from_split(load_split(data_dir, "valid", size=data_size(ckpt.config.input_size)),
                                                  dev), train_labels)
    ckpt.model.cpu()
    ckpt.meta = {**ckpt.meta, "balance": fit.summary()}
    with deferred_stop():  # a stop while it is written: once it is whole (the write is atomic either way)
        write_checkpoint(dst, ckpt)
        stopped_note(f"wrote {dst}")
    if as_json:
        click.echo(json.dumps(fit.to_dict()))
    else:
        for row in fit.table:
            mark = " <" if row["tau"] == fit.tau else ""
            click.echo(f"tau {row['tau']:.2f}  valid accuracy {row['accuracy']:.4f}  "
                       f"macro recall {row['macro_recall']:.4f}  macro F1 {row['macro_f1']:.4f}{mark}")
        click.echo(f"chose tau {fit.tau:.2f} by Valid macro F1; wrote {printable(str(dst))}")


BENCHES = {
    "iou": ("moodstream.trainer.bench.iou:iou_cmd", "Face-detection IoU on WIDER FACE (the paper's Table 1)."),
    "e2e": ("moodstream.trainer.bench.e2e:e2e_cmd", "Detection + classification against emotion labels."),
    "throughput": ("moodstream.trainer.bench.throughput:throughput_cmd", "Frames/s of our pipeline vs the naive baseline."),
    "profile": ("moodstream.trainer.bench.profile:profile_cmd", "Where the CPU pipeline's time goes: per stage and per net."),
    "bf16": ("moodstream.trainer.bench.bf16:bf16_cmd", "Which nets keep their answers in real bf16 (native-bf16 CPUs)."),
    "int8": ("moodstream.trainer.bench.int8:int8_cmd", "Does the int8 emotion net keep its answers, and its speed here."),
    "stream": ("moodstream.trainer.bench.stream:stream_cmd", "Frames/s and latency of real workers through Redis (stream to stream)."),
    "framing": ("moodstream.trainer.bench.framing:framing_cmd", "Where FER+ crops lie relative to a detector's boxes (crop framing)."),
    "tracking": ("moodstream.trainer.bench.tracking:tracking_cmd", "Face tracking on synthetic clips: ID switches, MOTA."),
    "video": ("moodstream.trainer.bench.tracking:video_cmd", "Detect-every-N on videos: frames/s, faces kept, flicker."),
    "crowd": ("moodstream.trainer.bench.crowd:crowd_cmd", "Tracker time a frame with 10 to 10,000 faces, against the former matching."),
    "scaling": ("moodstream.trainer.bench.scaling:scaling_cmd", "Frames/s and consumer-group lag with 1, 2, 3 worker processes."),
    "encoding": ("moodstream.trainer.bench.encoding:encoding_cmd", "Bytes, time and answers kept for each frame encoding of produce."),
    "shots": ("moodstream.trainer.bench.shots:shots_cmd", "Shot cuts on edited videos: cuts found, tracks across them, cost a frame."),
}


class BenchGroup(StopSignalsGroup, LazyGroup):
    """A benchmark stopped so unwinds: the workers and the embedded redis-server that `stream` and
    `scaling` start are stopped (they were left running). A report is only written when a benchmark
    completes, whole (:func:`trainer.bench.write_output`)."""

    stopped_note = "no report written"


@click.group(cls=BenchGroup, lazy_commands=BENCHES)
def bench():
    """Benchmarks: each writes JSON (and a readable table); the test suite runs them only on small inputs."""

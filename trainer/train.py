"""The training loop: ``load_data`` -> ``train_one_epoch`` / ``evaluate`` -> ``main``.

The whole dataset lives as one uint8 tensor on the training device; batches are
indexed, augmented and normalised there, so a GPU never waits on a loader.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from moodstream.shared.devices import resolve_device
from moodstream.shared.errors import ConfigError
from moodstream.shared.labels import LABELS
from moodstream.shared.files import write_text_atomic, writing
from moodstream.shared.stop_signals import deferred_stop
from moodstream.shared.models import (Checkpoint, adjust_proba, build_model, load_checkpoint, predict_proba, preprocess,
                                      save_checkpoint, torch_save_atomic, why_not_loaded)
from moodstream.trainer.augment import AugmentConfig, augment
from moodstream.trainer.balance import BalanceFit, class_prior, fit_tau
from moodstream.trainer.data import Split, data_size, load_split
from moodstream.trainer.metrics import classification_report
from moodstream.trainer.presets import TrainConfig

log = logging.getLogger(__name__)


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX, read
    from /proc/cpuinfo): there bf16 autocast trains about 2x faster on the CPU
    (measured on a 2-core AMD EPYC: VGG 225 -> 405 img/s, ResNet 70 -> 176).
    Elsewhere oneDNN emulates bf16, which is slower than fp32, so it stays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: bool | None, dev: torch.device) -> bool:
    """Mixed precision (bf16 autocast) for training: ``None`` picks it where it
    pays, on CUDA always and on a CPU with native bf16."""
    if amp is not None:
        return amp
    return dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16())


AUGMENTS = {"paper": AugmentConfig.paper, "full": AugmentConfig, "none": AugmentConfig.none}


class Diverged(ConfigError):
    """The training loss, or the model's answers on Valid, stopped being finite numbers."""


@dataclass
class DeviceData:
    images: torch.Tensor  # (N, 1, S, S) uint8 on the device (S: trainer.data.data_size)
    votes: torch.Tensor  # (N, 8) float32
    labels: torch.Tensor  # (N,) int64

    @classmethod
    def from_split(cls, split: Split, device: torch.device, limit: int | None = None) -> DeviceData:
        n = len(split) if limit is None else min(limit, len(split))
        return cls(torch.from_numpy(split.images[:n]).unsqueeze(1).to(device),
                   torch.from_numpy(split.votes[:n]).to(device),
                   torch.from_numpy(split.labels[:n]).to(device))


def load_data(data_dir: str | Path, cfg: TrainConfig) -> dict[str, Split]:
    splits = {}
    for name in ("train", "valid", "test"):
        splits[name] = load_split(data_dir, name, size=data_size(cfg.model.input_size))
        if cfg.max_train and name == "train" and len(splits[name]) > cfg.max_train:
            splits[name] = _subset(splits[name], cfg.max_train, cfg.seed)
        if cfg.max_eval and name != "train" and len(splits[name]) > cfg.max_eval:
            splits[name] = _subset(splits[name], cfg.max_eval, cfg.seed)
        log.info("trainer: %s split %d images %s", name, len(splits[name]), splits[name].class_counts())
    return splits


def _subset(split: Split, n: int, seed: int) -> Split:
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return Split(split.images[idx], split.votes[idx], split.labels[idx], [split.paths[i] for i in idx])


def train_one_epoch(ckpt: Checkpoint, data: DeviceData, cfg: TrainConfig, opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler | None, gen: torch.Generator,
                    aug: AugmentConfig, amp: bool, desc: str) -> dict:
    model = ckpt.model
    model.train()
    dev = data.images.device
    n = len(data.labels)
    perm = torch.randperm(n, device=dev, generator=gen)
    total_loss, correct, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    with tqdm(total=n, desc=desc, unit="img", unit_scale=True, leave=False, dynamic_ncols=True,
              disable=None) as bar:  # None: off when stderr is not a terminal (logs get one line per epoch)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            x = data.images[idx].float() / 255  # (B, 1, S, S)
            x = preprocess(augment(x, aug, gen), ckpt)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            logits = logits.float()
            if cfg.label_mode == "soft":
                loss = torch.sum(-data.votes[idx] * F.log_softmax(logits, 1), 1).mean()
            else:
                loss = F.cross_entropy(logits, data.labels[idx], label_smoothing=cfg.label_smoothing)
            value = loss.item()
            if not math.isfinite(value):  # every step after it is NaN: stop here, not at the end of the run
                raise Diverged(f"the training loss is {value} at image {start} of {n}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += value * len(idx)
            correct += int((logits.argmax(1) == data.labels[idx]).sum())
            seen += len(idx)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images_per_s": seen / (time.perf_counter() - t0)}


@torch.inference_mode()
def predict_split(ckpt: Checkpoint, data: DeviceData, flip_tta: bool = False, adjust: bool = True,
                  batch: int = 1024) -> torch.Tensor:
    """Probabilities ``(N, 8)`` for every image of ``data``, in batches."""
    ckpt.model.eval()
    probs = []
    for start in range(0, len(data.labels), batch):
        x = data.images[start:start + batch].float() / 255
        probs.append(predict_proba(ckpt, x, flip_tta=flip_tta, adjust=adjust))
    return torch.cat(probs)


def evaluate(ckpt: Checkpoint, data: DeviceData, flip_tta: bool = False, adjust: bool = True) -> dict:
    """Loss (against the vote distribution) and the full classification report."""
    return score(predict_split(ckpt, data, flip_tta=flip_tta, adjust=adjust), data)


def score(p: torch.Tensor, data: DeviceData) -> dict:
    """:func:`evaluate` for probabilities ``p`` already predicted for ``data``."""
    loss = float(torch.sum(-data.votes * torch.log(p.clamp_min(1e-7)), 1).mean())
    report = classification_report(data.labels.cpu().numpy(), p.argmax(1).cpu().numpy())
    report["loss"] = loss
    return report


def fit_balance(ckpt: Checkpoint, valid: DeviceData, train_labels: np.ndarray,
                raw: torch.Tensor | None = None) -> BalanceFit:
    """Fit the class-prior adjustment on Valid (flip TTA on, as served) and set it on ``ckpt``.

    ``raw``: the Valid probabilities with flip TTA and no adjustment, if already predicted.
    """
    if raw is None:
        raw = predict_split(ckpt, valid, flip_tta=True, adjust=False)
    fit = fit_tau(raw.cpu().numpy(), valid.labels.cpu().numpy(), class_prior(train_labels))
    ckpt.class_bias = fit.class_bias
    return fit


STATE_FILE = "train_state.pt"  # in --out: what --resume needs; written after each epoch, removed at the end


def _save_state(path: Path, state: dict) -> None:
    """Write atomically, so a run killed mid-write still has the previous epoch's state."""
    torch_save_atomic(state, path)


def data_fingerprint(splits: dict[str, Split]) -> str:
    """What the run trains and selects on, by content: each split's pixels and votes (a dataset
    moved elsewhere is the same data; one with other images or labels is not)."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(splits[name].images).tobytes())
        digest.update(np.ascontiguousarray(splits[name].votes).tobytes())
    return digest.hexdigest()


def _load_state(path: Path, cfg: TrainConfig, dev: torch.device, data: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"nothing to resume: {path} not found (it is written after each finished epoch "
                          "and removed when the run completes)")
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise ConfigError(f"cannot resume from {path}: not a state torch can load ({why_not_loaded(path, exc)})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"cannot resume from {path}: not a state this trainer wrote")
    old, new = state.get("recipe", {}), cfg.to_dict()
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError(f"cannot resume {path}: the run used other options ({', '.join(diff)} differ); "
                          "give the same preset and options as the interrupted run")
    if state.get("data", data) != data:  # (a state from before the check has none: taken as is)
        raise ConfigError(f"cannot resume {path}: the interrupted run trained on other data (other images or "
                          "labels in its splits); give the same --data")
    return state


def main(cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, device: str = "auto",
         version: str | None = None, init: str | Path | None = None, amp: bool | None = None,
         resume: bool = False) -> dict:
    """Train, select the epoch with the best Valid accuracy, report Test, write
    ``emotion.pt``, ``metrics.json``, ``history.json`` and ``curves.png`` to ``out_dir``.

    ``init``: start from this checkpoint's weights and normalisation (its
    architecture replaces ``cfg.model``), e.g. to continue a run with a new schedule.
    ``amp``: bf16 autocast in training (``None``: see ``resolve_amp``); Valid and
    Test are always scored in fp32.
    ``resume``: continue the interrupted run in ``out_dir`` from its last finished
    epoch (``train_state.pt``: weights, optimiser, schedule, random states,
    history), with the same ``cfg``; the result matches an uninterrupted run.
    """
    dev = torch.device(resolve_device(device))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    amp = resolve_amp(amp, dev)
    log.info("trainer: device %s, mixed precision (bf16) %s", dev, "on" if amp else "off")

    start = None if init is None else load_checkpoint(init)  # a bad one fails before the data is read
    splits = load_data(data_dir, cfg)  # fails on bad data before anything is written
    classes = np.unique(splits["train"].labels)
    if len(classes) < 2:  # it trained without a word, a "classifier" of one answer
        raise ConfigError(f"{data_dir}: the training images are of one class only ({LABELS[int(classes[0])]}): "
                          "a classifier needs at least two (a folder per emotion)")
    fingerprint = data_fingerprint(splits)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # what --out's check cannot see (/proc, a full or read-only file system)
        raise ConfigError(f"cannot make the output folder {out}: {exc.strerror or exc}") from None
    if not resume:  # a fresh run (the command's --overwrite): an earlier run's state is no longer to resume
        (out / STATE_FILE).unlink(missing_ok=True)
    train = DeviceData.from_split(splits["train"], dev)
    valid = DeviceData.from_split(splits["valid"], dev)
    test = DeviceData.from_split(splits["test"], dev)
    if start is not None:
        cfg = replace(cfg, model=start.config)
        model, mean, std = start.model, start.mean, start.std
    else:
        pixels = train.images.float() / 255
        mean, std = float(pixels.mean()), float(pixels.std())
        del pixels
        model = build_model(cfg.model)
    model = model.to(dev).to(memory_format=torch.channels_last)  # faster on CUDA and on CPU (oneDNN)
    ckpt = Checkpoint(model=model, config=cfg.model, mean=mean, std=std)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, -(-len(train.labels) // cfg.batch_size))
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
             if cfg.schedule == "onecycle" else None)
    aug = AUGMENTS[cfg.augment]()

    history: list[dict] = []
    best = {"accuracy": -1.0, "epoch": 0, "state": None}
    first_epoch, done_s = 1, 0.0
    state_path = out / STATE_FILE
    if resume:
        state = _load_state(state_path, cfg, dev, fingerprint)
        try:  # a state of another shape (a foreign file named so): one line, not a traceback
            model.load_state_dict(state["model"])
            ckpt.mean, ckpt.std = mean, std = float(state["mean"]), float(state["std"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"].cpu())
            torch.set_rng_state(state["torch_rng"].cpu())
            if dev.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), dev)
            history, best = list(state["history"]), dict(state["best"])
            first_epoch, done_s = int(state["epoch"]) + 1, float(state["train_seconds"])
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise ConfigError(f"cannot resume from {state_path}: not a state this trainer wrote "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
        log.info("trainer: resuming %s after epoch %d of %d", out, state["epoch"], cfg.epochs)
    t_start = time.perf_counter() - done_s
    earlier_outputs = [] if resume else [out / "metrics.json", out / "curves.png"]  # gone with its model
    for epoch in range(first_epoch, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        try:
            tr = train_one_epoch(ckpt, train, cfg, opt, sched, gen, aug, amp, f"epoch {epoch}/{cfg.epochs}")
            va = evaluate(ckpt, valid)
            if not math.isfinite(va["loss"]):  # the last step made the weights overflow
                raise Diverged(f"the Valid loss is {va['loss']} after it")
        except Diverged as exc:  # it went on to its end, exit 0, and kept a model of inf weights
            kept = (f"the best epoch so far ({best['epoch']}) is in {out / 'emotion.pt'}" if best["epoch"]
                    else "no epoch was kept")
            again = " (with --overwrite, or into another --out)" if best["epoch"] else ""
            raise Diverged(f"training diverged in epoch {epoch} ({exc}); {kept}. Train again with a lower --lr "
                           f"than {cfg.lr:g}{again}") from None
        epoch_s = time.perf_counter() - t_epoch
        history.append({"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                        "valid_loss": va["loss"], "valid_accuracy": va["accuracy"],
                        "valid_macro_recall": va["macro_recall"], "images_per_s": tr["images_per_s"]})
        log.info("trainer: epoch %d/%d train loss %.4f acc %.4f | valid loss %.4f acc %.4f "
                 "macro-recall %.4f | %.0f img/s%s", epoch, cfg.epochs, tr["loss"], tr["accuracy"],
                 va["loss"], va["accuracy"], va["macro_recall"], tr["images_per_s"],
                 time_left(epoch_s, cfg.epochs - epoch))
        with deferred_stop():  # a stop signal waits for the epoch's files: emotion.pt and its state agree
            if va["accuracy"] > best["accuracy"]:
                best = {"accuracy": va["accuracy"], "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
                # An interrupted run still leaves its best epoch behind; the final save replaces it.
                for stale in earlier_outputs:  # an earlier run's numbers, not this model's (an interrupted
                    stale.unlink(missing_ok=True)  # --overwrite left them beside its first epoch)
                earlier_outputs = []
                save_checkpoint(out / "emotion.pt", model, cfg.model, mean, std,
                                meta={"version": f"{version or 'run'}-partial-epoch{epoch}", "recipe": cfg.to_dict(),
                                      "selected_epoch": epoch, "valid_accuracy": va["accuracy"], "partial": True})
            with writing(out / "history.json"):
                write_text_atomic(out / "history.json", json.dumps(history, indent=1))
            _save_state(state_path, {
                "epoch": epoch, "recipe": cfg.to_dict(), "data": fingerprint, "model": model.state_dict(), "mean": mean,
                "std": std,
                "optimizer": opt.state_dict(), "scheduler": None if sched is None else sched.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "history": history, "best": best, "train_seconds": time.perf_counter() - t_start})
    train_s = time.perf_counter() - t_start

    model.load_state_dict(best["state"])
    model = model.to(memory_format=torch.contiguous_format)
    # each split predicted once (flip TTA, as served); the adjusted figures are derived from these
    raw = {"valid": predict_split(ckpt, valid, flip_tta=True, adjust=False),
           "test": predict_split(ckpt, test, flip_tta=True, adjust=False)}
    balance = fit_balance(ckpt, valid, splits["train"].labels, raw["valid"]) if cfg.balance else None
    metrics = {
        "selected_epoch": best["epoch"],
        "selected_valid_accuracy": best["accuracy"],  # what chose the epoch: one pass, no TTA, no adjustment
        "valid": score(adjust_proba(ckpt, raw["valid"]), valid),
        "test": score(adjust_proba(ckpt, raw["test"]), test),
        "train_seconds": round(train_s, 1),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "amp_bf16": amp,
        "recipe": cfg.to_dict(),
        "init": None if init is None else str(init),
        "n_train": len(train.labels),
    }
    if balance is not None:  # the plain model's figures too, so the adjustment's effect is on record
        metrics["valid_unadjusted"] = score(raw["valid"], valid)
        metrics["test_unadjusted"] = score(raw["test"], test)
        metrics["balance"] = balance.to_dict()
    meta = {"version": version or time.strftime("%Y%m%d-%H%M%S"), "recipe": cfg.to_dict(),
            "init": None if init is None else {"path": str(init), "version": start.version,
                                                "recipe": start.meta.get("recipe")},
            "selected_epoch": best["epoch"], "test_accuracy": metrics["test"]["accuracy"],
            "test_macro_recall": metrics["test"]["macro_recall"], "flip_tta": True,
            "device": metrics["device"], "amp_bf16": amp,
            "balance": None if balance is None else balance.summary()}
    save_checkpoint(out / "emotion.pt", model.cpu(), cfg.model, mean, std, meta=meta, class_bias=ckpt.class_bias)
    with writing(out / "metrics.json"):
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1))
    state_path.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    from moodstream.trainer.curves import plot_curves  # matplotlib only when writing the figure
    with writing(out / "curves.png"):
        plot_curves(history, out / "curves.png")
    return metrics


def time_left(epoch_s: float, epochs_left: int) -> str:
    """`` | 0:04:10 left`` at the last epoch's pace (what a log away from a terminal has for an ETA; the
    progress bar's is the epoch's), or nothing after the last epoch."""
    if epochs_left <= 0:
        return ""
    s = round(epoch_s * epochs_left)
    return f" | {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d} left"

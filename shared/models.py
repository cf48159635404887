"""Emotion classifier definitions and the checkpoint format.

Both the worker (inference) and the trainer import this module; it is the only
place that knows how a checkpoint maps to a network. Inputs are grayscale face
crops, ``(B, 1, S, S)`` float, already normalised with the checkpoint's
``mean``/``std``; outputs are logits ``(B, 8)`` in :data:`shared.labels.LABELS`
order.
"""

from __future__ import annotations

import math
import os
import re
import zipfile

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from moodstream.shared.errors import ModelError
from moodstream.shared.files import replacing, writing
from moodstream.shared.labels import LABELS, NUM_CLASSES

CHECKPOINT_FORMAT = "moodstream-emotion/1"
SHIPPED_CHECKPOINT = Path(__file__).parent / "weights" / "emotion.pt"


@dataclass
class ModelConfig:
    arch: str = "vgg"  # "vgg" or "resnet"
    widths: tuple[int, ...] = (64, 128, 256, 512)
    convs_per_block: int = 2  # VGG: 3x3 convs per block; ResNet: residual blocks per stage
    hidden: int = 1024  # VGG: width of the hidden linear layer(s)
    fc_layers: int = 2  # VGG: hidden linear layers before the classifier
    dropout: float = 0.5
    input_size: int = 48  # square side of the grayscale crop
    num_classes: int = NUM_CLASSES

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    # what a checkpoint's config may hold, each bound well past any model of ours (the shipped VGG:
    # widths 32-256, hidden 1024): a foreign file once asked for 360 GB of weights
    LIMITS = {"widths": (1, 4096), "convs_per_block": (1, 16), "hidden": (1, 65536), "fc_layers": (0, 8),
              "input_size": (8, 512), "num_classes": (NUM_CLASSES, NUM_CLASSES)}

    def check(self, path: object = "config") -> None:
        """ModelError where a field is out of :data:`LIMITS` (or not an int), or dropout not in [0, 1)."""
        for name, (lo, hi) in self.LIMITS.items():
            values = self.widths if name == "widths" else (getattr(self, name),)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values):
                raise ModelError(f"{path}: config {name} {getattr(self, name)!r} is not in [{lo}, {hi}]")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ModelError(f"{path}: config dropout {self.dropout!r} is not in [0, 1)")

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "widths" in known:
            known["widths"] = tuple(known["widths"])
        return cls(**known)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGG(nn.Module):
    """Blocks of 3x3 convolutions (widths grow 64 -> 512), max-pool between
    blocks, flatten, a few linear layers: the paper's VGG, with batch norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for width in cfg.widths:
            for _ in range(cfg.convs_per_block):
                layers += _conv_bn(cin, width)
                cin = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = cfg.input_size // 2 ** len(cfg.widths)
        if side < 1:
            raise ModelError(f"input_size {cfg.input_size} too small for {len(cfg.widths)} blocks")
        head: list[nn.Module] = [nn.Flatten()]
        fin = cin * side * side
        for _ in range(cfg.fc_layers):
            head += [nn.Dropout(cfg.dropout), nn.Linear(fin, cfg.hidden), nn.ReLU(inplace=True)]
            fin = cfg.hidden
        head += [nn.Dropout(cfg.dropout), nn.Linear(fin, cfg.num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) -> (B, C)
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity shortcut, or a 1x1 one when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """Compact ResNet: a 3x3 stem, one stage per width (stride 2 after the
    first), global average pooling, one linear layer."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, cfg.widths[0]))
        blocks: list[nn.Module] = []
        cin = cfg.widths[0]
        for i, width in enumerate(cfg.widths):
            for j in range(cfg.convs_per_block):
                blocks.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cin, cfg.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, S, S) -> (B, C)
        return self.head(self.stages(self.stem(x)))


ARCHS = {"vgg": VGG, "resnet": ResNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch not in ARCHS:
        raise ModelError(f"unknown architecture {cfg.arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[cfg.arch](cfg)


@dataclass
class Checkpoint:
    """Everything inference needs, loadable on CPU without the trainer."""

    model: nn.Module
    config: ModelConfig
    mean: float
    std: float
    labels: tuple[str, ...] = LABELS
    meta: dict = field(default_factory=dict)  # training recipe, metrics, version
    # Log-space bias added to the predicted log-probabilities (a class-prior
    # adjustment fitted on Valid, see trainer.balance); None: plain softmax.
    class_bias: tuple[float, ...] | None = None
    _class_weights: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    def class_weights(self, device: torch.device) -> torch.Tensor:
        """``exp(class_bias)`` on ``device``, made once per bias and device (not per batch)."""
        key = (self.class_bias, str(device))
        if key not in self._class_weights:
            self._class_weights[key] = torch.tensor(self.class_bias, device=device).exp()
        return self._class_weights[key]


def save_checkpoint(path: str | Path, model: nn.Module, cfg: ModelConfig, mean: float, std: float,
                    meta: dict | None = None, half: bool = True,
                    class_bias: tuple[float, ...] | None = None) -> None:
    """Write a plain dict; weights in fp16 by default (half the size, same accuracy), except a
    tensor that fp16 cannot hold (a value past 65504, e.g. a batch-norm scale grown without weight
    decay, became inf and the loaded model answered NaN): that one stays fp32."""
    state = {k: _stored(v.detach().cpu(), half).contiguous().clone() for k, v in model.state_dict().items()}
    raw = {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "labels": list(LABELS),
        "normalization": {"mean": float(mean), "std": float(std)},
        "state_dict": state,
        "meta": meta or {},
    }
    if class_bias is not None:
        if len(class_bias) != len(LABELS):
            raise ModelError(f"class_bias needs {len(LABELS)} values, got {len(class_bias)}")
        raw["class_bias"] = [float(b) for b in class_bias]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # its folder may not exist yet (--out checked it can be made)
    torch_save_atomic(raw, path)


def _stored(v: torch.Tensor, half: bool) -> torch.Tensor:
    if not (half and v.is_floating_point()):
        return v
    h = v.half()
    return h if torch.isfinite(h).all() or not torch.isfinite(v).all() else v


def torch_save_atomic(obj, path: str | Path) -> None:
    """``torch.save`` beside ``path``, then renamed over it: a run killed (or a disk filled) mid-write
    keeps the previous file (train's best epoch so far and its resume state; the checkpoint
    `balance` adjusts in place) whole. The temporary file is removed on failure; a write that fails
    (a full disk) is one :class:`OutputError` line (torch's own message for it, writing to a path,
    was "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")."""
    with writing(path), replacing(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: a failed write is an OSError with its errno
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())


def write_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Save a loaded :class:`Checkpoint` again (e.g. after fitting its class bias)."""
    save_checkpoint(path, ckpt.model, ckpt.config, ckpt.mean, ckpt.std, meta=ckpt.meta,
                    class_bias=ckpt.class_bias)


def load_checkpoint(path: str | Path | None = None) -> Checkpoint:
    """Load a checkpoint (the shipped one when ``path`` is None) onto the CPU, in eval mode."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not path.is_file():
        hint = ("the shipped model is missing from this install; reinstall moodstream"
                if path == SHIPPED_CHECKPOINT else "pass an existing file to --checkpoint")
        raise ModelError(f"checkpoint {path} not found: {hint}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{path} is not a moodstream emotion checkpoint ({why_not_loaded(path, exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a moodstream emotion checkpoint (format {CHECKPOINT_FORMAT})")
    if not isinstance(raw.get("meta", {}), dict):  # every reader of it calls .get (a traceback)
        raise ModelError(f"{path} is not a moodstream emotion checkpoint: its meta is a "
                         f"{type(raw['meta']).__name__}, not a dict")
    try:  # its fields, each of the type written by save_checkpoint
        labels = tuple(raw["labels"])
        cfg = ModelConfig.from_dict(raw["config"])
        norm = raw["normalization"]
        mean, std = float(norm["mean"]), float(norm["std"])
        bias = raw.get("class_bias")
        bias = None if bias is None else tuple(float(b) for b in bias)
        state = {k: v.float() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{path} is not a moodstream emotion checkpoint: {type(exc).__name__} {exc}"[:300]) from None
    if labels != LABELS:
        raise ModelError(f"{path} was trained with labels {list(labels)}, this code uses {list(LABELS)}")
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ModelError(f"{path}: normalization mean {mean}, std {std}: finite numbers, std above 0, are needed")
    if bias is not None and (len(bias) != len(LABELS) or not all(math.isfinite(b) for b in bias)):
        raise ModelError(f"{path} has {len(bias)} class_bias values ({list(bias)[:10]}): {len(LABELS)} finite values are needed")
    cfg.check(path)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a diverged run's weights: NaN for every face, wherever the model is served
        raise ModelError(f"{path} holds weights that are not finite (NaN or inf) in {', '.join(broken[:3])}"
                         f"{', ...' if len(broken) > 3 else ''}: a training run that diverged?")
    try:
        model = build_model(cfg)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ModelError(f"{path} does not match its architecture config: {str(exc).splitlines()[0][:200]}") from None
    model.eval()
    return Checkpoint(model=model, config=cfg, mean=mean, std=std, meta=raw.get("meta", {}), class_bias=bias)


def why_not_loaded(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` refused ``path`` (a checkpoint, train's resume state), in a few words. Its own words were no answer: "KeyError:
    101" for a text file, and for a truncated one a paragraph on miniz, cut at 120 characters
    mid-word."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as err:  # unreadable, not a wrong file (permissions)
        raise ModelError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    if not head:
        return "the file is empty"
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither torch's zip archive nor its older pickle
        text = head.decode("utf-8", errors="replace")
        whole = text[:-4] if len(head) == 64 else text  # the 64th byte may cut a character in two
        if "\ufffd" not in whole and all(c.isprintable() or c in "\t\r\n" for c in whole):
            return f"a text file, beginning {' '.join(text.split())[:40]!r}"
        return f"not a file torch writes: it begins with bytes {head[:8].hex(' ')}"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return (f"a torch file cut short or damaged: its zip index is missing, {path.stat().st_size:,} bytes; "
                "a copy or download that did not finish?")
    if isinstance(exc, EOFError):  # the older format, a pickle, cut short
        return f"a torch file cut short: it ends early, {path.stat().st_size:,} bytes"
    said = _first_sentence(str(exc))
    if "weights_only" in said or "weights only" in said.lower():  # torch's advice (with terminal escapes)
        return "a pickled Python object, not a plain checkpoint"
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def _first_sentence(text: str, limit: int = 120) -> str:
    """The first sentence of the first line of ``text``, cut at a word (with "...") past ``limit``."""
    lines = text.strip().splitlines()
    first = re.split(r"(?<=\.)\s", lines[0], maxsplit=1)[0] if lines else ""
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + "..."


def preprocess(x: torch.Tensor, ckpt: Checkpoint) -> torch.Tensor:
    """(B, 1, h, w) grayscale in [0, 1] -> (B, 1, S, S) normalised model input."""
    size = ckpt.config.input_size
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False, antialias=True)
    return (x - ckpt.mean) / ckpt.std


@torch.inference_mode()
def predict_proba(ckpt: Checkpoint, x: torch.Tensor, flip_tta: bool = True, adjust: bool = True) -> torch.Tensor:
    """Emotion probabilities ``(B, 8)`` for grayscale faces ``(B, 1, h, w)`` in [0, 1].

    With ``flip_tta`` the mirrored face is classified too and the two softmaxes
    are averaged (one batched call; faces are left-right symmetric in meaning).
    With ``adjust`` the checkpoint's class bias, if it has one, reweights the
    result: ``p * exp(bias)``, renormalised.
    """
    x = preprocess(x, ckpt)
    if flip_tta:
        logits = ckpt.model(torch.cat([x, x.flip(-1)]))
        b = x.shape[0]
        p = (logits[:b].float().softmax(1) + logits[b:].float().softmax(1)) / 2
    else:
        p = ckpt.model(x).float().softmax(1)
    return adjust_proba(ckpt, p) if adjust else p


def adjust_proba(ckpt: Checkpoint, p: torch.Tensor) -> torch.Tensor:
    """Probabilities ``(B, 8)`` reweighted by the checkpoint's class bias,
    ``p * exp(bias)`` renormalised; ``p`` itself when it has none."""
    if ckpt.class_bias is None:
        return p
    p = p * ckpt.class_weights(p.device)
    return p / p.sum(1, keepdim=True)

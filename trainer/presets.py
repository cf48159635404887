"""Named training recipes: the paper's hyper-parameter tables and our own."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moodstream.shared.errors import ConfigError
from moodstream.shared.models import ModelConfig


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # "adam" (the paper) or "adamw"
    schedule: str = "constant"  # "constant" (the paper) or "onecycle"
    label_mode: str = "hard"  # "hard": majority label; "soft": cross-entropy on the vote distribution
    label_smoothing: float = 0.0
    augment: str = "paper"  # "paper" (flip, blur, contrast), "full" (+ affine, erasing), "none"
    balance: bool = True  # fit the class-prior adjustment on Valid after training (trainer.balance)
    seed: int = 0
    max_train: int | None = None  # use at most this many training images (quick runs, tests)
    max_eval: int | None = None  # and this many valid / test images

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "model"}
        d["model"] = self.model.to_dict()
        return d


PAPER_WIDTHS = (64, 128, 256, 512)
CPU_WIDTHS = (32, 64, 128, 256)

PRESETS: dict[str, TrainConfig] = {
    # The paper's initial table: batch 128, lr 1e-3, 10 epochs (VGG).
    # The paper presets leave out our class-prior adjustment (balance=False).
    "paper-initial": TrainConfig(balance=False),
    # The paper's tuned VGG: batch 64, lr 1e-4, 40 epochs.
    "paper-vgg": TrainConfig(batch_size=64, lr=1e-4, epochs=40, balance=False),
    # The paper's tuned ResNet: batch 128, lr 1e-3, 40 epochs.
    "paper-resnet": TrainConfig(model=ModelConfig(arch="resnet"), batch_size=128, lr=1e-3, epochs=40,
                                balance=False),
    # Ours: soft labels from the votes, full augmentation, AdamW + one-cycle.
    "best": TrainConfig(epochs=60, batch_size=128, lr=2e-3, weight_decay=5e-4, optimizer="adamw",
                        schedule="onecycle", label_mode="soft", augment="full"),
    # Ours, sized for a 2-core CPU (half the widths, fewer epochs): what ships
    # until a GPU-trained model replaces it.
    "cpu": TrainConfig(model=ModelConfig(widths=CPU_WIDTHS, hidden=512), epochs=12, batch_size=128,
                       lr=3e-3, weight_decay=5e-4, optimizer="adamw", schedule="onecycle",
                       label_mode="soft", augment="full"),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A copy of preset ``name`` with non-None ``overrides`` applied (model fields too)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    model_fields = set(ModelConfig.__dataclass_fields__)
    model_over = {k: v for k, v in overrides.items() if k in model_fields and v is not None}
    train_over = {k: v for k, v in overrides.items() if k not in model_fields and v is not None}
    unknown = set(train_over) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return replace(cfg, model=replace(cfg.model, **model_over), **train_over)

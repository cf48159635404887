"""Learning curves (loss and accuracy per epoch, train and valid), like the paper's Figure 7."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: str | Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["valid_loss"] for h in history], label="valid")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    ax_acc.plot(epochs, [h["valid_accuracy"] for h in history], label="valid")
    ax_acc.set(title="accuracy", xlabel="epoch", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Training curves."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlcourse.training import ClassifierHistory


def plot_history(history: "ClassifierHistory", title: str = "", save_to: str | None = None):
    """Plot training loss (left) and train/test accuracy (right) per epoch; returns the figure."""
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.train_loss) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, history.train_loss, marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_acc.plot(epochs, history.train_acc, marker="o", label="train")
    ax_acc.plot(epochs, history.test_acc, marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if save_to:
        fig.savefig(save_to, dpi=100)
    return fig

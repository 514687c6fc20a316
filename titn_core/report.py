"""Figures shared by the notebooks and the book (matplotlib/seaborn), each returning its Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch


def curves(history: pd.DataFrame, title: str = ""):
    """Accuracy (train/val/test top-1) and training loss per epoch."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
    long = history.melt("epoch", ["train_top1", "val_top1", "test_top1"], var_name="split", value_name="top-1 (%)")
    sns.lineplot(long, x="epoch", y="top-1 (%)", hue="split", marker="o", ax=ax_acc)
    sns.lineplot(history, x="epoch", y="train_loss", marker="o", ax=ax_loss)
    ax_loss.set_ylabel("training loss")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion(cm: pd.DataFrame, title: str = ""):
    fig, ax = plt.subplots(figsize=(6, 5))
    sns.heatmap(cm, annot=len(cm) <= 10, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _show(ax, image: torch.Tensor) -> None:
    img = image.permute(1, 2, 0).numpy()
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    ax.axis("off")


def predictions(images: torch.Tensor, labels, preds, names: list[str], n: int = 12):
    """A grid of test images with predicted (top-1 class) / true class (red when wrong)."""
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n, 1.8))
    for i, ax in enumerate(axes):
        _show(ax, images[i])
        ok = preds[i] == labels[i]
        ax.set_title(f"{names[preds[i]]}\n({names[labels[i]]})", fontsize=8, color="black" if ok else "red")
    fig.tight_layout()
    return fig


def bars(df: pd.DataFrame, x: str, y: str = "test_top1", hue: str | None = None, title: str = ""):
    """Bar plot with error bars (standard deviation) when several seeds share a label."""
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * df[x].nunique()), 3.5))
    sns.barplot(df, x=x, y=y, hue=hue, errorbar="sd", ax=ax)
    low = max(0.0, df[y].min() - 5)
    ax.set_ylim(low, min(100, df[y].max() + 2))
    ax.set_ylabel("test top-1 (%)" if y == "test_top1" else y)
    ax.tick_params(axis="x", rotation=30)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def attention_overlays(images: torch.Tensor, maps, n: int = 6):
    """Per image: the input, the class-token rollout, and the inner (pixel-level) attention of the last block."""
    from .attention import upsample

    size = images.shape[-1]
    rows = 3 if maps.inner is not None else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.6 * rows))
    roll = upsample(maps.rollout, size)
    inner = upsample(maps.inner[:, -1], size) if maps.inner is not None else None
    for i in range(n):
        _show(axes[0, i], images[i])
        _show(axes[1, i], images[i])
        axes[1, i].imshow(roll[i].numpy(), cmap="inferno", alpha=0.6)
        if inner is not None:
            _show(axes[2, i], images[i])
            axes[2, i].imshow(inner[i].numpy(), cmap="viridis", alpha=0.6)
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    axes[1, 0].set_title("outer rollout (class token)", fontsize=8, loc="left")
    if inner is not None:
        axes[2, 0].set_title("inner attention, last block", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def compare_curves(histories: dict[str, pd.DataFrame], title: str = ""):
    """Test top-1 and training loss per epoch, one line per run (teacher, TITN with/without KD, ViT)."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, hist in histories.items():
        ax_acc.plot(hist["epoch"], hist["test_top1"], marker="o", markersize=3, label=label)
        ax_loss.plot(hist["epoch"], hist["train_loss"], marker="o", markersize=3, label=label)
    ax_acc.set(xlabel="epoch", ylabel="test top-1 (%)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (incl. KD terms)")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_per_hour(histories: dict[str, pd.DataFrame], start_hours: dict[str, float] | None = None, title=""):
    """Test top-1 against wall-clock hours, one line per run, in the same colours as `compare_curves`.

    `start_hours` shifts a run right (a distilled student starts after its teacher's training, shaded), so the
    curves compare what each approach reaches for the same total time on the machine.
    """
    start_hours = start_hours or {}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, hist in histories.items():
        start = start_hours.get(label, 0.0)
        line = ax.plot(start + hist["wall_seconds"] / 3600, hist["test_top1"], marker="o", markersize=3, label=label)
        if start:
            ax.axvspan(0, start, color=line[0].get_color(), alpha=0.08)
    ax.set(xlabel="wall-clock hours (shaded: the teacher's training, before its student can start)",
           ylabel="test top-1 (%)")  # fmt: skip
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def architecture_diagram():
    """TITN block structure and where each distillation term attaches, drawn as boxes and arrows."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 4.2))
    ax.set(xlim=(0, 11.8), ylim=(0, 4.2))
    ax.axis("off")
    boxes = {
        "image": (0.0, 2.0, "image\n32x32 (28x28)", "#eeeeee"),
        "words": (2.4, 2.9, "words: w x w pixels\nper patch (c dims)", "#dbe9f6"),
        "patches": (2.4, 1.1, "patch tokens (d dims)\n+ class (+ dist.) token", "#fde6cf"),
        "inner": (4.8, 2.9, "inner transformer\nMSA + MLP over the\nm words of each patch", "#9ecae1"),
        "proj": (4.8, 1.1, "LayerNorm(flatten words)\n-> Linear -> add to\nits patch token", "#fdd0a2"),
        "outer": (7.2, 1.1, "outer transformer\nMSA + MLP over\nall patch tokens", "#fdae6b"),
        "heads": (9.6, 1.1, "class head: CE(y)\ndist. head: CE(argmax t)", "#c7e9c0"),
        "teacher": (9.6, 2.9, "CNN teacher (frozen)\nlogits + stage map\npooled to patch grid", "#d9d9d9"),
    }
    for x, y, text, colour in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), 2.0, 1.0, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + 1.0, y + 0.5, text, ha="center", va="center", fontsize=8)
    arrows = [("image", "words"), ("image", "patches"), ("words", "inner"), ("inner", "proj"),
              ("patches", "proj"), ("proj", "outer"), ("outer", "heads"), ("teacher", "heads")]  # fmt: skip
    for a, b in arrows:
        xa, ya = boxes[a][0] + 2.05, boxes[a][1] + 0.5
        xb, yb = boxes[b][0] - 0.05, boxes[b][1] + 0.5
        if a == "inner":
            xa, ya, xb, yb = boxes[a][0] + 1.0, boxes[a][1] - 0.05, boxes[b][0] + 1.0, boxes[b][1] + 1.05
        if a == "teacher":
            xa, ya, xb, yb = boxes[a][0] + 1.0, boxes[a][1] - 0.05, boxes[b][0] + 1.0, boxes[b][1] + 1.05
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=12, color="#333333"))
    ax.annotate("", xy=(4.8, 0.95), xytext=(9.2, 0.95), arrowprops=dict(arrowstyle="<->", ls="--", color="#777777"))
    ax.text(7.0, 0.55, "x depth (blocks); feature KD: projected patch tokens of block L  vs  teacher stage map",
            ha="center", fontsize=8, color="#444444")  # fmt: skip
    fig.tight_layout()
    return fig


def show(fig) -> None:
    """Display a figure where it is called (not at the end of the cell) and free it."""
    from IPython.display import display

    display(fig)
    plt.close(fig)

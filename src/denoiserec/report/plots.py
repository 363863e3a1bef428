"""PNG plots (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from denoiserec.atomic import atomic_write_bytes  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    """Write the figure atomically and free it."""
    fig.tight_layout()
    atomic_write_bytes(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


def training_curve(path: Path, epochs: list[dict], metric: str, title: str) -> None:
    """Training loss and validation ``metric`` per epoch, side by side."""
    x = [e["epoch"] for e in epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(x, [e["train_loss"] for e in epochs], marker=".")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(x, [e["valid"][metric] for e in epochs], marker=".", color="tab:green")
    right.set(xlabel="epoch", ylabel=f"valid {metric}", title=f"valid {metric}")
    fig.suptitle(title)
    _save(fig, path)


def robustness_plot(path: Path, summary: list[dict], models: list[str], metric: str,
                    title: str) -> None:
    """``metric`` (mean ± std over seeds) against the noise ratio, one line per model."""
    fig, axis = plt.subplots(figsize=(5.5, 3.8))
    for model in models:
        points = sorted((s["noise"], s[metric], s[f"{metric}_std"]) for s in summary
                        if s["model"] == model)
        if not points:  # a partial summary without this model
            continue
        x, y, err = zip(*points, strict=True)
        axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=model)
    axis.set(xlabel="noise ratio", ylabel=f"test {metric}", title=title)
    axis.legend()
    _save(fig, path)

"""PNG plots (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
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
        err = [math.nan if e is None else e for e in err]  # one seed: no error bar
        axis.errorbar(x, y, yerr=err, marker="o", capsize=3, label=model)
    axis.set(xlabel="noise ratio", ylabel=f"test {metric}", title=title)
    axis.legend()
    _save(fig, path)


def tuning_history(path: Path, trials: list[dict], title: str) -> None:
    """Each completed trial's value (pruned ones at their last reported value, hollow) and
    the best value so far, against the trial number."""
    fig, axis = plt.subplots(figsize=(6, 3.8))
    done = [t for t in trials if t["state"] == "COMPLETE"]
    axis.plot([t["number"] for t in done], [t["value"] for t in done], "o", label="complete")
    best, steps = float("-inf"), []
    for trial in done:
        best = max(best, trial["value"])
        steps.append((trial["number"], best))
    if steps:
        x, y = zip(*steps, strict=True)
        axis.step(x, y, where="post", color="tab:red", label="best so far")
    pruned = [t["number"] for t in trials if t["state"] == "PRUNED"]
    if pruned:
        axis.vlines(pruned, *axis.get_ylim(), colors="0.8", linewidth=0.8, label="pruned")
    axis.set(xlabel="trial", ylabel="valid selection value", title=title)
    axis.legend()
    _save(fig, path)


def png_bytes(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (for pages that embed their images), and free it."""
    import io

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def lines_figure(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str,
                 title: str, faint: dict[str, list[tuple[float, float]]] | None = None
                 ) -> plt.Figure:
    """One line per named series of (x, y) points; ``faint`` series drawn thin and grey
    (e.g. single seeds under their mean, pruned trials)."""
    fig, axis = plt.subplots(figsize=(6.4, 3.8))
    for points in (faint or {}).values():
        if points:
            x, y = zip(*points, strict=True)
            axis.plot(x, y, color="0.75", linewidth=0.8)
    for name, points in series.items():
        if points:
            x, y = zip(*points, strict=True)
            axis.plot(x, y, marker="." if len(points) < 40 else None, label=name)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if series:
        axis.legend(fontsize="small")
    return fig

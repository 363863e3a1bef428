"""Valid-metric curves of every run under a folder, from each run's recorded history.

    .venv/bin/python benchmarks/curves.py benchmarks/out/converged-ml-100k-fast \
        --output curves.png [--metric ndcg@10] [--parts kept,weight_entropy] [--colour-by variant]

One line per run directory (``metrics.json``), coloured by model (or, with ``--colour-by
variant``, by the run folder's name before ``-seed``: ``atjt_gain.py``'s variants); the selected
epoch is marked.
``--parts`` adds one panel per loss part (e.g. a denoiser's keep rate and weight entropy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from denoiserec.runfolder import RunFolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--parts", default="", help="comma-separated loss parts to plot too")
    parser.add_argument("--colour-by", choices=("model", "variant"), default="model")
    args = parser.parse_args()
    runs = sorted(p.parent for p in args.folder.rglob(RunFolder(Path()).metrics.name))
    parts = [p for p in args.parts.split(",") if p]
    figure, axes = plt.subplots(1, 1 + len(parts), figsize=(6 * (1 + len(parts)), 4),
                                squeeze=False)
    reports = {run: RunFolder(run).read_metrics() for run in runs}

    def group(run: Path) -> str:
        return reports[run]["model"] if args.colour_by == "model" else run.name.split("-seed")[0]

    colours = {g: f"C{i}" for i, g in enumerate(sorted({group(run) for run in runs}))}
    for run, report in reports.items():
        epochs = [e["epoch"] for e in report["epochs"]]
        colour = colours[group(run)]
        values = [e["valid"][args.metric] for e in report["epochs"]]
        axes[0][0].plot(epochs, values, color=colour, alpha=0.7, label=run.name)
        if report["epochs"]:
            best = report["best_epoch"]
            axes[0][0].plot([best], [values[epochs.index(best)]], "o", color=colour)
        for panel, part in enumerate(parts, start=1):
            axes[0][panel].plot(epochs, [e["loss_parts"].get(part, float("nan"))
                                         for e in report["epochs"]], color=colour, alpha=0.7)
            axes[0][panel].set_title(part)
            axes[0][panel].set_ylim(-0.02, 1.02)  # liveness figures are shares
    axes[0][0].set_xlabel("epoch (from 0)")
    axes[0][0].set_ylabel(f"valid {args.metric}")
    axes[0][0].legend(fontsize=6)
    axes[0][0].set_title(f"{args.folder.name}: valid {args.metric} (dot: selected epoch)")
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output} ({len(runs)} runs)")


if __name__ == "__main__":
    main()

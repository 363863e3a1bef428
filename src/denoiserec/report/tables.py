"""Plain-text / Markdown tables of metrics."""

from __future__ import annotations

from collections.abc import Sequence

METRIC_ORDER = ("hit", "ndcg", "mrr")


def ordered_metrics(names: Sequence[str]) -> list[str]:
    """Metric names sorted as hit@k, ndcg@k, mrr@k by increasing k; others at the end."""
    def key(name: str) -> tuple[int, int, str]:
        base, _, k = name.partition("@")
        rank = METRIC_ORDER.index(base) if base in METRIC_ORDER else len(METRIC_ORDER)
        return (rank, int(k) if k.isdigit() else 0, name)
    return sorted(names, key=key)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table with columns padded for reading in a terminal."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_table(results: dict[str, dict[str, float]]) -> str:
    """One row per named result (e.g. valid, test), one column per metric."""
    names = ordered_metrics({m for r in results.values() for m in r})
    return markdown_table(["split", *names],
                          [[split, *(r.get(m, float("nan")) for m in names)]
                           for split, r in results.items()])

"""PNG plot of a verification report: relative error per layer (log scale), each layer's limit, first failure."""
from __future__ import annotations

import os
from typing import Any

from netdef.atomic import atomic_path


def plot_relative_errors(report: Any, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    layers = report.layers
    floor = 1e-17  # exact matches still get a visible point on a log axis
    values = [max(c.rel, floor) if c.rel == c.rel else 1e3 for c in layers]
    values = [min(v, 1e3) for v in values]
    colors = ["tab:red" if not c.ok else "tab:blue" for c in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(layers) + 2), 4.5))
    ax.bar(range(len(layers)), values, color=colors)
    limits = [c.tolerance if c.tolerance is not None else report.tolerance for c in layers]
    ax.step(range(len(layers)), limits, where="mid", color="tab:orange", linestyle="--",
            label=report.rule if hasattr(report, "rule") else f"tolerance {report.tolerance:g}")
    first = report.first_failure
    if first is not None:
        i = layers.index(first)
        ax.annotate(f"first: {first.name}", (i, values[i]), xytext=(0, 12), textcoords="offset points",
                    ha="center", color="tab:red", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("relative error ||a-b|| / ||b||")
    ax.set_title(f"netdef verify ({report.precision}, vs {report.reference})")
    step = max(1, len(layers) // 40)
    ax.set_xticks(range(0, len(layers), step))
    ax.set_xticklabels([layers[i].name for i in range(0, len(layers), step)], rotation=90, fontsize=6)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

"""PNG plots of a report: one bar chart per metric, and a 2-D map of the document embeddings."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def _colors(names: list[str]) -> dict[str, tuple]:
    return {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)}


def bars(results: dict, metrics: dict, path: Path) -> None:
    names = list(results)
    colors = _colors(names)
    shown = [k for k in metrics if any(results[n].get(k) is not None for n in names)]
    cols = 3
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, shown):
        label, higher = metrics[key]
        values = [results[n].get(key) for n in names]
        x = np.arange(len(names))
        heights = [np.nan if v is None else v for v in values]
        bar = ax.bar(x, heights, color=[colors[n] for n in names])
        for patch, n in zip(bar, names):
            if results[n]["reference"]:
                patch.set_hatch("//")
                patch.set_edgecolor("white")
        if key == "task2vec":
            cis = [results[n].get("task2vec_ci95") or (np.nan, np.nan) for n in names]
            lows, highs = [c[0] for c in cis], [c[1] for c in cis]
            err = np.array([np.subtract(heights, lows), np.subtract(highs, heights)])
            ax.errorbar(x, heights, yerr=err, fmt="none", ecolor="black", capsize=3)
        if all(v == 0 for v in values if v is not None):  # say so, rather than draw empty axes
            ax.text(
                0.5,
                0.5,
                "0 for every corpus",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
            )
            ax.set_ylim(0, 1)
        ax.set_title(f"{label} {'↑' if higher else '↓'}", fontsize=9)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.suptitle(
        "Diversity per corpus (hatched: real text; ↑ higher / ↓ lower is more diverse)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def projection(vectors: dict[str, np.ndarray], reference: dict[str, bool], path: Path) -> None:
    """PCA of all corpora's embeddings together (one shared plane), coloured by corpus."""
    from sklearn.decomposition import PCA

    names = list(vectors)
    colors = _colors(names)
    stacked = np.concatenate([vectors[n] for n in names])
    xy = (
        PCA(n_components=2, random_state=0).fit_transform(stacked)
        if len(stacked) > 2
        else np.zeros((len(stacked), 2))
    )
    fig, ax = plt.subplots(figsize=(7, 6))
    start = 0
    for n in names:
        part = xy[start : start + len(vectors[n])]
        start += len(vectors[n])
        ax.scatter(
            part[:, 0],
            part[:, 1],
            s=10,
            alpha=0.6,
            color=colors[n],
            marker="x" if reference[n] else "o",
            label=f"{n} (real)" if reference[n] else n,
        )
    ax.set_title("Document embeddings (all-MiniLM-L6-v2), PCA to 2-D", fontsize=10)
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Figures for the book, drawn with matplotlib from data the pages compute (infrastructure).

``pipeline_map`` draws the course's fifteen steps; ``bytes_per_token`` the curve of
chapter 2. Each returns the figure so a page can show it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

STEPS = [
    "Data\ncuration", "Tokenizer\ntraining", "Pre-\ntraining", "Post-\ntraining", "Evaluation",
    "Deployment\nprep", "API\ngateway", "Prompt\nassembly", "Tokeni-\nzation", "Prefill",
    "Sampling", "Decode\nloop", "Tool\nuse", "Extended\nthinking", "Response\ncomplete",
]


def pipeline_map(built: set[int] = frozenset()):
    """The fifteen steps as two rows of boxes (building, serving); ``built`` are filled."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    rows = [(0, "I. Building the model", range(0, 6)), (1, "II. Serving a prompt", range(6, 15))]
    for row, label, steps in rows:
        y = 1.6 - 1.5 * row
        ax.text(-0.1, y + 0.95, label, fontsize=11, fontweight="bold")
        for k, step in enumerate(steps):
            x = k * 1.25
            done = step + 1 in built
            ax.add_patch(FancyBboxPatch((x, y), 1.05, 0.8, boxstyle="round,pad=0.03",
                                        facecolor="#2b6cb0" if done else "#edf2f7",
                                        edgecolor="#2b6cb0", linewidth=1.2))
            ax.text(x + 0.525, y + 0.4, f"{step + 1}\n{STEPS[step]}", ha="center", va="center",
                    fontsize=8, color="white" if done else "#1a202c")
            if k < len(steps) - 1:
                ax.annotate("", (x + 1.23, y + 0.4), (x + 1.07, y + 0.4),
                            arrowprops={"arrowstyle": "->", "color": "#4a5568"})
    ax.annotate("", (0.5, 0.95), (6.75, 1.58), arrowprops={
        "arrowstyle": "->", "color": "#4a5568", "connectionstyle": "arc3,rad=-0.2"})
    ax.text(6.9, 1.15, "checkpoint → server", fontsize=8, color="#4a5568")
    ax.set_xlim(-0.2, 11.3)
    ax.set_ylim(-0.05, 2.75)
    ax.axis("off")
    fig.tight_layout()
    return fig


def bytes_per_token(sizes: list[int], ours: list[float], references: dict[str, tuple[int, float]]):
    """Bytes per token against vocabulary size, with real tokenizers as labelled points."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sizes, ours, "o-", color="#2b6cb0", label="course tokenizer (trained here)")
    for name, (size, value) in references.items():
        ax.plot([size], [value], "s", markersize=8, label=f"{name} ({size:,} tokens)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (tokens)")
    ax.set_ylabel("bytes per token (held-out text)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def funnel(report: list[dict], start: int):
    """The filter funnel of chapter 1: documents left after each pipeline step."""
    names = ["crawl"] + [row["step"] for row in report]
    kept = [start] + [row["kept"] for row in report]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.barh(names[::-1], kept[::-1], color="#2b6cb0")
    for bar, value in zip(bars, kept[::-1]):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,}",
                va="center", fontsize=8)
    ax.set_xlabel("documents left")
    ax.set_xlim(0, start * 1.15)
    fig.tight_layout()
    return fig


def s_curve(bands: int, rows: int, measured: list[tuple[float, float, int]]):
    """LSH's candidate probability 1-(1-s^r)^b, with measured rates (similarity, rate, pairs)."""
    s = [i / 200 for i in range(201)]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(s, [1 - (1 - x ** rows) ** bands for x in s], color="#2b6cb0",
            label=f"1-(1-s^{rows})^{bands}")
    if measured:
        xs, ys, ns = zip(*measured)
        ax.scatter(xs, ys, s=[12 + 2 * n ** 0.5 for n in ns], color="#dd6b20", zorder=3,
                   label="measured on crawl pairs (size: pairs per bin)")
    ax.axvline((1 / bands) ** (1 / rows), color="#a0aec0", linestyle="--", linewidth=1)
    ax.set_xlabel("Jaccard similarity of 5-gram shingle sets")
    ax.set_ylabel("P(candidate pair)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

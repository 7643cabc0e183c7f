"""Figures for notebook 03 (AdaLoRA): the rank-budget heatmap beside the budget curve, kept rank
by matrix type and layer over seeds, and the orthogonality gap over training.

Pure functions: measured numbers in, a matplotlib ``Figure`` out. The grid of kept ranks
comes from ``minilora.adalora.rank_grid``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

TYPE_LABELS = {
    "query": "Wq",
    "key": "Wk",
    "value": "Wv",
    "attn_out": "Wo",
    "ffn_in": "FFN in",
    "ffn_out": "FFN out",
}


def rank_budget_figure(grid, budget, step: int, init_r: int, title: str | None = None) -> Figure:
    """Left: kept rank per layer × matrix (``grid``: a ``minilora.adalora.RankGrid``), coloured
    from 0 to ``init_r`` and written in each cell. Right: the total budget b(t) for t = 1..T
    (``budget``) with ``step`` marked."""
    ranks = np.asarray(grid.ranks, dtype=float)
    budget = np.asarray(budget, dtype=float)
    if ranks.ndim != 2 or budget.ndim != 1 or len(budget) == 0:
        raise ValueError("grid.ranks must be 2-D and budget a non-empty 1-D sequence")
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    heat, curve = fig.subplots(1, 2, width_ratios=[1.1, 1])
    im = heat.imshow(ranks, cmap="viridis", vmin=0, vmax=init_r, aspect="auto")
    for (i, j), r in np.ndenumerate(ranks):
        if np.isfinite(r):
            heat.text(
                j, i, f"{int(r)}", ha="center", va="center", color="white" if r < init_r / 2 else "black"
            )
    heat.set_xticks(range(len(grid.types)), [TYPE_LABELS.get(t, t) for t in grid.types])
    heat.set_yticks(range(len(grid.layers)), [f"layer {layer}" for layer in grid.layers])
    heat.set_title(f"kept rank at step {step} (of {init_r})")
    fig.colorbar(im, ax=heat, label="kept rank")
    steps = np.arange(1, len(budget) + 1)
    curve.plot(steps, budget, color="tab:blue", lw=1.5, label="budget b(t)")
    at = int(np.clip(step, 1, len(budget)))
    curve.plot(
        [at], [budget[at - 1]], "o", color="tab:red", ms=8, label=f"step {step}: {int(budget[at - 1])}"
    )
    curve.set_xlabel("training step t")
    curve.set_ylabel("total kept rank")
    curve.set_title("the rank budget")
    curve.legend(loc="upper right")
    curve.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def rank_share_figure(by_type: dict, by_layer: dict, init_r: int, title: str | None = None) -> Figure:
    """Mean kept rank per matrix type and per layer: ``{key: [value per seed]}``; bars at the
    mean with ±1 SE over seeds and the individual seeds as dots."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, data, label in ((axes[0], by_type, "matrix type"), (axes[1], by_layer, "layer")):
        keys = list(data)
        values = [np.asarray(data[k], dtype=float) for k in keys]
        means = [v.mean() for v in values]
        ses = [v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in values]
        x = np.arange(len(keys))
        ax.bar(x, means, yerr=ses, color="tab:blue", alpha=0.6, capsize=4)
        for i, v in enumerate(values):
            ax.plot(np.full(len(v), i), v, "k.", ms=5)
        ax.set_xticks(x, [TYPE_LABELS.get(k, f"{k}") for k in keys])
        ax.set_xlabel(label)
        ax.axhline(init_r, color="gray", ls=":", lw=1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean kept rank")
    if title:
        fig.suptitle(title)
    return fig


def orthogonality_figure(curves: dict, title: str = "‖PᵀP − I‖_F + ‖QQᵀ − I‖_F over training") -> Figure:
    """``{label: (steps, gaps)}``: the mean orthogonality gap of P and Q against the step."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    for label, (steps, gaps) in curves.items():
        ax.plot(steps, gaps, lw=1.5, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("mean gap per matrix")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig

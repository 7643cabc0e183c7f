"""Figures for the course tour (notebook 00): the data, the parameter budget, accuracies.

Pure functions: measured numbers in, a matplotlib ``Figure`` out (no pyplot state).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def dataset_figure(snippets_by_domain: dict) -> Figure:
    """Two panels: rows per domain split into positive / negative / neutral (valence = 0),
    and the histogram of mean human valence per domain (the label cut at 0 drawn in)."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    domains = list(snippets_by_domain)
    kinds = (("positive", 1, "tab:green"), ("negative", 0, "tab:red"), ("neutral", None, "tab:gray"))
    bottom = np.zeros(len(domains))
    for title, label, color in kinds:
        counts = np.array([sum(s.label == label for s in snippets_by_domain[d]) for d in domains])
        ax1.bar(domains, counts, bottom=bottom, color=color, label=title)
        bottom += counts
    ax1.set_ylabel("snippets")
    ax1.set_title("rows per domain and label")
    ax1.legend()
    bins = np.linspace(-4, 4, 33)
    for d in domains:
        ax2.hist([s.valence for s in snippets_by_domain[d]], bins=bins, histtype="step", lw=1.6,
                 label=d, density=True)
    ax2.axvline(0, color="k", lw=0.8, ls="--")
    ax2.set_xlabel("mean human valence (label: > 0 positive, < 0 negative)")
    ax2.set_ylabel("density")
    ax2.set_title("valence per domain")
    ax2.legend()
    return fig


def parameter_budget_figure(groups: dict[str, int]) -> Figure:
    """Horizontal bars: parameters per module type, with each group's share of the total, on a
    linear axis (a bar's length is its share: on a log axis the embedding table's half would
    look like any other group)."""
    items = [(k, v) for k, v in groups.items() if v]
    total = sum(v for _, v in items)
    fig = Figure(figsize=(8, 0.45 * len(items) + 1), layout="constrained")
    ax = fig.subplots()
    names = [k for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    ax.barh(names, values, color="tab:blue")
    for y, v in enumerate(values):
        ax.text(v, y, f"  {v:,} ({100 * v / total:.1f} %)", va="center", fontsize=9)
    ax.set_xlim(right=max(values) * 1.45)
    ax.set_xlabel("parameters")
    ax.set_title(f"where the {total:,} parameters are")
    return fig


def accuracy_bars_figure(names, accuracies, errors, chance=None, title="test accuracy") -> Figure:
    """Bars of accuracy with ±2 standard-error whiskers (and a dashed chance/majority line)."""
    fig = Figure(figsize=(1.6 * len(names) + 2.5, 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x, accuracies, yerr=2 * np.asarray(errors), capsize=6, color="tab:blue", alpha=0.8)
    for xi, a in zip(x, accuracies):
        ax.text(xi, a + 0.01, f"{100 * a:.1f} %", ha="center", va="bottom")
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=0.8, label=f"majority class {100 * chance:.1f} %")
        ax.legend(loc="lower right")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (whiskers: ±2 SE)")
    ax.set_title(title)
    return fig


def probe_figure(texts, probs_by_model: dict) -> Figure:
    """P(positive) for a few sentences under each model (the tour's sentiment probe)."""
    fig = Figure(figsize=(9, 0.5 * len(texts) + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(texts))
    h = 0.8 / max(len(probs_by_model), 1)
    for i, (name, probs) in enumerate(probs_by_model.items()):
        ax.barh(y + i * h, probs, height=h, label=name)
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    labels = [t if len(t) < 60 else t[:57] + "..." for t in texts]
    ax.set_yticks(y + h * (len(probs_by_model) - 1) / 2, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(positive)")
    ax.legend(loc="lower right")
    return fig


def training_curves_figure(runs: dict, window: int = 10, title="Training") -> Figure:
    """Two panels per set of runs: the training loss (mean of ``window`` steps) and the
    validation accuracy, against the step.

    ``runs`` maps a label to ``(loss_per_step, eval_steps, eval_accuracy)``; empty eval lists
    draw no validation line for that run. A flat end of both curves is what "trained to
    convergence" looks like.
    """
    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict: label -> (loss per step, eval steps, eval accuracy)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for k, (label, (loss, steps, accs)) in enumerate(runs.items()):
        loss = np.asarray(loss, dtype=float)
        w = min(window, len(loss))
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        left.plot(np.arange(w, len(loss) + 1), smooth, color=f"C{k}", label=label)
        if len(steps):
            right.plot(steps, 100 * np.asarray(accs, dtype=float), "o-", ms=3, color=f"C{k}", label=label)
    left.set_xscale("log")
    left.set_xlabel("step (log scale)")
    left.set_ylabel(f"training loss ({window}-step mean)")
    left.axhline(np.log(2), color="k", ls=":", lw=0.8, label="ln 2 (a coin flip)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("step (log scale)")
    right.set_ylabel("validation accuracy (%)")
    right.grid(alpha=0.3)
    if right.lines:
        right.legend(fontsize=8)
    fig.suptitle(title)
    return fig

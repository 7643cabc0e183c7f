"""Figures for notebook 02 (LoRA): the LoRA bypass diagram, learning curves against full
fine-tuning, the rank sweep,
accuracy against trainable parameters, subspace-similarity heatmaps (LoRA Fig. 3) and the
cross-domain adapter table.

Pure functions: measured numbers in, a matplotlib ``Figure`` out. Error bars are binomial
standard errors sqrt(p(1-p)/n) of the accuracies passed in.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..stats import binomial_se as _se


def _ses(accs, n) -> np.ndarray:
    """Binomial standard errors of an array of accuracies, all measured on ``n`` rows."""
    return np.array([_se(float(a), n) for a in accs])


def _finish(ax, xlabel: str, title: str) -> None:
    """The axis dressing every accuracy plot here shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)


def _reference_band(ax, reference) -> None:
    """``reference = (label, accuracy, n)``: a dashed line with a ±2 SE band (None: nothing)."""
    if reference is not None:
        label, acc, n = reference
        ax.axhline(100 * acc, color="k", ls="--", lw=1, label=label)
        ax.axhspan(100 * (acc - 2 * _se(acc, n)), 100 * (acc + 2 * _se(acc, n)), color="k", alpha=0.08)


def learning_curve_figure(curves: dict, reference=None, title="Validation accuracy while training") -> Figure:
    """Accuracy against training step, one line per run.

    ``curves`` maps a label to ``(steps, accuracies, n)`` (n = rows evaluated, for the ±1 SE
    band); ``reference`` is ``(label, accuracy, n)`` drawn as a horizontal line with a ±2 SE
    band (e.g. full fine-tuning on the same rows).
    """
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for label, (steps, accs, n) in curves.items():
        steps, accs = np.asarray(steps), np.asarray(accs, dtype=float)
        se = _ses(accs, n)
        ax.plot(steps, 100 * accs, marker="o", ms=3, label=label)
        ax.fill_between(steps, 100 * (accs - se), 100 * (accs + se), alpha=0.2)
    _reference_band(ax, reference)
    _finish(ax, "training step", title)
    return fig


def rank_sweep_figure(ranks, accuracies, n: int, reference=None,
                      title="Test accuracy against LoRA rank r") -> Figure:
    """Accuracy ± 1 SE against r (log₂ axis); ``reference`` = ``(label, accuracy, n)`` as a band (±2 SE)."""
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    accs = np.asarray(accuracies, dtype=float)
    ax.errorbar(ranks, 100 * accs, yerr=100 * _ses(accs, n), marker="o", capsize=3,
                label=f"LoRA on W_q, W_v (n = {n})")
    _reference_band(ax, reference)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ranks), [str(r) for r in ranks])
    _finish(ax, "rank r", title)
    return fig


def _stack_labels(xs, ys, gap: float, near: float = 0.15) -> list[float]:
    """Heights for the labels of points (``xs`` on a log axis) so that no two labels of
    points within ``near`` decades of each other sit closer than ``gap`` (data units):
    such a cluster's labels are stacked upward in the order of their points' heights."""
    order = sorted(range(len(xs)), key=lambda i: (ys[i], xs[i]))
    placed: list[int] = []
    out = list(ys)
    for i in order:
        for j in placed:
            if abs(np.log10(xs[i]) - np.log10(xs[j])) < near and out[i] < out[j] + gap:
                out[i] = out[j] + gap
        placed.append(i)
    return out


def budget_figure(points, highlight=None, reference=None,
                  title="Accuracy against trainable parameters") -> Figure:
    """Accuracy ± 1 SE against trainable parameters (log axis), one point per run.

    ``points``: iterable of ``(label, trainable_parameters, accuracy, n)``; labels of the form
    ``"<targets>, r=<r>"`` are coloured by targets and labelled with r beside the point
    (points of different targets at the same budget are spread slightly sideways, and
    labels that would overlap are stacked apart, with a thin leader line to their point).
    The point whose label is ``highlight`` is drawn larger with a magenta edge.
    ``reference``: ``(label, accuracy)`` drawn as a dotted horizontal line, not as a point:
    for a run on another budget or other test rows (say, full fine-tuning scored on the whole
    split), which is context for the points, not one of them.
    """
    points = list(points)
    fig = Figure(figsize=(6.8, 4.0), layout="constrained")
    ax = fig.subplots()
    groups = list(dict.fromkeys(label.rsplit(", r=", 1)[0] for label, *_ in points if ", r=" in label))
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    seen, labelled = set(), []
    for label, params, acc, n in points:
        group, _, r = label.rpartition(", r=") if ", r=" in label else (label, "", "")
        x = params * 1.07 ** groups.index(group) if r else params  # sideways spread for equal budgets
        colours.setdefault(group, "k")
        big = label == highlight
        ax.errorbar([x], [100 * acc], yerr=[100 * _se(acc, n)], marker="o", capsize=3, ms=10 if big else 5,
                    color=colours[group], mec="magenta" if big else colours[group], mew=2 if big else 1,
                    label=None if group in seen else group)
        seen.add(group)
        if r:
            labelled.append((x, 100 * acc, f"r={r}", colours[group]))
    if reference is not None:
        ref_label, ref_acc = reference
        ax.axhline(100 * ref_acc, color="0.3", ls=":", lw=1.2, label=ref_label)
    if labelled:
        low, high = ax.get_ylim()
        heights = _stack_labels([p[0] for p in labelled], [p[1] for p in labelled], gap=0.055 * (high - low))
        for (x, y, text, colour), y_text in zip(labelled, heights):
            ax.annotate(text, (x, y), xytext=(x * 1.12, y_text), fontsize=7, color=colour, va="center",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color=colour) if y_text != y else None)
        ax.set_ylim(low, max(high, max(heights) + 0.03 * (high - low)))
    ax.set_xscale("log")
    low_x, high_x = ax.get_xlim()
    ax.set_xlim(low_x, high_x * 1.25)  # room for the labels right of the last points
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=10)
    return fig


def subspace_similarity_figure(grids: dict, title="Subspace similarity φ(A_{r=8}, A_{r=64}, i, j)") -> Figure:
    """One heatmap per entry of ``grids`` (name → i_max × j_max array of φ in [0, 1]), LoRA Fig. 3.

    Row i = top-i right-singular directions of the small-rank A, column j = top-j of the
    large-rank A; 1 means the smaller subspace lies inside the larger one, 0 orthogonal.
    """
    cols = min(2, len(grids))
    rows = -(-len(grids) // cols)
    fig = Figure(figsize=(5.0 * cols, 2.4 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    image = None
    for ax, (name, grid) in zip(axes, grids.items()):
        g = np.asarray(grid, dtype=float)
        image = ax.imshow(g, vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest",
                          extent=(0.5, g.shape[1] + 0.5, g.shape[0] + 0.5, 0.5))
        ax.set_xlabel("j")
        ax.set_ylabel("i")
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.9, label="φ")
    fig.suptitle(title)
    return fig


def cross_domain_figure(accuracy, adapters, test_domains, n, title="One base, four adapters") -> Figure:
    """Heatmap of test accuracy: row = adapter (trained on that domain), column = test domain.

    ``accuracy`` is (adapters × test domains); ``n`` the rows per test domain (list or int),
    used for the ± SE printed in each cell.
    """
    acc = np.asarray(accuracy, dtype=float)
    ns = [n] * acc.shape[1] if isinstance(n, int) else list(n)
    fig = Figure(figsize=(1.5 * acc.shape[1] + 2, 1.0 * acc.shape[0] + 1.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(100 * acc, cmap="viridis", vmin=50, vmax=100)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(j, i, f"{100 * acc[i, j]:.1f}\n±{100 * _se(acc[i, j], ns[j]):.1f}", ha="center",
                    va="center", fontsize=8, color="w" if acc[i, j] < 0.8 else "k",
                    fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(len(test_domains)), [f"test: {d}" for d in test_domains])
    ax.set_yticks(range(len(adapters)), [f"adapter: {a}" for a in adapters])
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    ax.set_title(title)
    return fig


def lora_bypass_figure(d_in: int = 384, d_out: int = 384, r: int = 8, alpha: float = 16.0) -> Figure:
    """The LoRA layer as a diagram (LoRA Fig. 1): x feeds the frozen W0 (d_out × d_in) and, in
    parallel, A (r × d_in, random at the start) then B (d_out × r, zero at the start), scaled
    by α/r; the two paths add: h = W0 x + (α/r) B A x. Box widths follow the dimensions
    (A and B are drawn as thin trapezoids: d_in → r → d_out)."""
    from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle

    for name, v in (("d_in", d_in), ("d_out", d_out), ("r", r)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if r > min(d_in, d_out):
        raise ValueError(f"r must be at most min(d_in, d_out) = {min(d_in, d_out)}, got {r}")
    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    width = 2.6  # drawn width of a d-dimensional vector
    r_w = max(0.25, width * r / max(d_in, d_out))

    def arrow(a, b, **kw):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.4, color="0.25", **kw))

    # input x and output h
    ax.add_patch(Rectangle((3.7 - width / 2, 0.4), width, 0.6, fc="#dbe9f6", ec="k"))
    ax.text(3.7, 0.7, f"x  ({d_in})", ha="center", va="center")
    ax.add_patch(Rectangle((3.7 - width / 2, 9.0), width, 0.6, fc="#dbe9f6", ec="k"))
    ax.text(3.7, 9.3, f"h  ({d_out})", ha="center", va="center")
    # frozen path
    ax.add_patch(Rectangle((0.6, 3.2), 2.6, 3.0, fc="0.85", ec="k", hatch="//"))
    ax.text(1.9, 4.7, f"W0\n{d_out} × {d_in}\nfrozen", ha="center", va="center", fontsize=10,
            bbox=dict(fc="white", ec="none", alpha=0.85))
    # the low-rank bypass: A narrows d_in -> r, B widens r -> d_out
    cx = 6.8
    ax.add_patch(Polygon([(cx - 1.3, 2.2), (cx + 1.3, 2.2), (cx + r_w / 2, 4.2), (cx - r_w / 2, 4.2)],
                         fc="#f4a582", ec="k"))
    ax.text(cx, 3.0, f"A   {r} × {d_in}\nrandom init", ha="center", va="center", fontsize=9)
    ax.add_patch(Polygon([(cx - r_w / 2, 5.2), (cx + r_w / 2, 5.2), (cx + 1.3, 7.2), (cx - 1.3, 7.2)],
                         fc="#92c5de", ec="k"))
    ax.text(cx, 6.4, f"B   {d_out} × {r}\nzero init", ha="center", va="center", fontsize=9)
    ax.text(cx + 0.35 + r_w / 2, 4.7, f"r = {r}", ha="left", va="center", fontsize=9, color="C3")
    arrow((cx, 4.2), (cx, 5.2))
    # the sum
    ax.add_patch(plt_circle((3.7, 8.1), 0.32))
    ax.text(3.7, 8.1, "+", ha="center", va="center", fontsize=14)
    arrow((3.0, 1.0), (1.9, 3.2))
    arrow((4.4, 1.0), (cx, 2.2))
    arrow((1.9, 6.2), (3.45, 7.9))
    arrow((cx, 7.2), (3.98, 8.05))
    ax.text(5.6, 7.85, f"× α/r = {alpha:g}/{r}", ha="center", va="bottom", fontsize=9)
    arrow((3.7, 8.42), (3.7, 9.0))
    ax.set_title("LoRA: h = W0 x + (α/r) · B A x  (W0 frozen; only A and B train)", fontsize=11)
    ax.text(9.9, 0.3, f"trained: r·(d_in + d_out) = {r * (d_in + d_out):,}\n"
            f"frozen: d_in·d_out = {d_in * d_out:,}", ha="right", va="bottom", fontsize=9)
    return fig


def plt_circle(centre, radius):
    """A white circle patch with a black edge (the ⊕ of the diagram)."""
    from matplotlib.patches import Circle

    return Circle(centre, radius, fc="white", ec="k")

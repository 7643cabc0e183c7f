"""Figures for notebook 01 (intrinsic rank): spectra of ΔW against noise, rank heatmaps,
accuracy against the truncation rank, and one matrix's spectrum with the rank-r cut.

Pure functions: measured numbers in, a matplotlib ``Figure`` out (the Eckart–Young error
curve of a spectrum comes from ``minilora.rank.truncation_error_curve``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..rank import truncation_error_curve


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)


def spectra_figure(spectra: dict, random_spectra: dict, title="Singular values of ΔW") -> Figure:
    """One panel per matrix type: normalised spectra σ_i/‖ΔW‖_F of every layer, and of noise.

    ``spectra`` maps ``(layer, type)`` to singular values; ``random_spectra`` maps ``type``
    to the singular values of a Gaussian matrix of the same shape and norm (dashed black).
    Normalising by ‖·‖_F = sqrt(Σσ²) puts every matrix on the same scale.
    """
    types = list(dict.fromkeys(t for _, t in spectra))
    layers = sorted({layer for layer, _ in spectra})
    cols = min(3, len(types))
    rows = -(-len(types) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    colours = {layer: c for layer, c in zip(layers, _viridis(len(layers)))}
    for ax, kind in zip(axes.flat, types):
        for layer in layers:
            if (layer, kind) in spectra:
                s = _np(spectra[layer, kind])
                ax.loglog(np.arange(1, len(s) + 1), s / np.sqrt((s ** 2).sum()), color=colours[layer],
                          lw=1.2, label=f"layer {layer}")
        if kind in random_spectra:
            s = _np(random_spectra[kind])
            ax.loglog(np.arange(1, len(s) + 1), s / np.sqrt((s ** 2).sum()), "k--", lw=1.2,
                      label="random, same shape & norm")
        ax.set_title(kind)
        ax.set_xlabel("index i")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[:, 0]:
        ax.set_ylabel("σ_i / ‖ΔW‖_F")
    for ax in axes.flat[len(types):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def _viridis(n: int):
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0, 0.9, max(n, 1))]


def rank_heatmaps_figure(tables: dict, layers, types, title="Rank of ΔW per matrix") -> Figure:
    """Side-by-side heatmaps (layers × types), one per entry of ``tables`` (name → 2-D array), annotated."""
    fig = Figure(figsize=(4.6 * len(tables), 0.45 * len(layers) + 2.2), layout="constrained")
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, (name, values) in zip(axes, tables.items()):
        v = _np(values)
        im = ax.imshow(v, cmap="magma", aspect="auto")
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                ax.text(j, i, f"{v[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if v[i, j] < v.max() * 0.6 else "black")
        ax.set_xticks(range(len(types)), list(types), rotation=30)
        ax.set_yticks(range(len(layers)), [f"layer {layer}" for layer in layers])
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title)
    return fig


def accuracy_vs_rank_figure(ranks, accuracies, errors, references=None, verdicts=None,
                            title="Test accuracy with every ΔW truncated to rank r",
                            error_label="accuracy ± 1.96 paired SE of the difference to r = full") -> Figure:
    """Accuracy against the truncation rank, each point with its error bar (``errors``, e.g.
    1.96 × the paired SE of its difference to the last point, so a bar that misses the
    last point's line is what a paired test calls a difference).

    ``ranks`` are labels in order (ints, or "full" for the untruncated ΔW, placed last);
    points sit at equal spacing so r = 0 and "full" fit on one axis. ``verdicts`` (one str
    per point, e.g. McNemar's "lower" / "not detectable at this size") colour the points:
    red where the verdict is "lower" or "higher". ``references`` maps a label to an accuracy
    drawn as a dotted horizontal line (e.g. the head-only model).
    """
    acc, err = _np(accuracies), _np(errors)
    x = np.arange(len(ranks))
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.axhline(acc[-1], color="C0", lw=1, ls="--", label=f"r = {ranks[-1]}")
    ax.errorbar(x, acc, yerr=err, marker="", capsize=3, color="C0", ls="-", label=error_label)
    if verdicts is not None:
        differs = np.array([v in ("lower", "higher") for v in verdicts])
        ax.plot(x[differs], acc[differs], "o", color="C3", label="paired test: differs (p < 0.05)")
        ax.plot(x[~differs], acc[~differs], "o", color="C0", mfc="white",
                label="paired test: not detectable at this size")
    else:
        ax.plot(x, acc, "o", color="C0")
    for k, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls=":", color=f"C{k + 1}", label=label)
    ax.set_xticks(x, [str(r) for r in ranks])
    ax.set_xlabel("rank r of each truncated ΔW")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return fig


def truncation_figure(sigma, r: int, random_sigma=None, accuracy=None, title="") -> Figure:
    """One matrix: its spectrum with the rank-r cut (left), relative error ‖W − W_r‖_F/‖W‖_F vs r (right).

    The error curve is Eckart–Young, ``sqrt(Σ_{i>r} σ_i² / Σ σ_i²)``, from the spectrum;
    ``random_sigma`` (noise of the same shape and norm) is drawn for comparison and
    ``accuracy`` (text) is printed in the title when given.
    """
    s = _np(sigma)
    error = _np(truncation_error_curve(sigma))
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    i = np.arange(1, len(s) + 1)
    left.semilogy(i[:r], s[:r], ".", color="C0", ms=4, label=f"kept (top {r})")
    left.semilogy(i[r:], s[r:], ".", color="0.6", ms=3, label="cut")
    if random_sigma is not None:
        left.semilogy(np.arange(1, len(random_sigma) + 1), _np(random_sigma), "k--", lw=1, label="random")
    left.axvline(r + 0.5, color="C3", lw=1)
    left.set_xlabel("index i")
    left.set_ylabel("σ_i")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.plot(np.arange(len(error)), error, color="C0", label="ΔW")
    if random_sigma is not None:
        re = _np(truncation_error_curve(random_sigma))
        right.plot(np.arange(len(re)), re, "k--", lw=1, label="random")
    right.plot([r], [error[r]], "o", color="C3", label=f"r = {r}: {error[r]:.3f}")
    right.set_xscale("symlog", linthresh=1)
    right.set_xlabel("rank r")
    right.set_ylabel("‖ΔW − ΔW_r‖_F / ‖ΔW‖_F")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(title + (f" — {accuracy}" if accuracy else ""))
    return fig

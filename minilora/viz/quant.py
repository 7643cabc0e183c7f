"""Figures for notebooks 04 (NF4) and 05 (double quantisation).

Pure functions: tensors / measured numbers in, a matplotlib ``Figure`` out. The only
computation here is presentation (histograms, quantiles of a sample for a QQ plot); block
normalisation and per-block errors come from ``minilora.quant``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm

from ..quant.analysis import block_errors, block_normalised


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if hasattr(x, "detach") else x, dtype=float)


def normality_figure(weights: dict, gaussian_normalised, blocksize: int = 64, max_points: int = 20000,
                     seed: int = 0) -> Figure:
    """Left: histogram of block-normalised values ``x / max|x_block|`` per matrix group
    against the same normalisation of Gaussian blocks (what NF4 assumes). Right: QQ plot
    of standardised weights ``(x − μ)/σ`` against N(0, 1) quantiles (a subsample each)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_h, ax_q = fig.subplots(1, 2)
    bins = np.linspace(-1, 1, 81)
    ax_h.hist(_np(gaussian_normalised), bins=bins, density=True, histtype="stepfilled", color="0.85",
              label="Gaussian blocks")
    rng = np.random.default_rng(seed)
    probs = None
    for label, w in weights.items():
        ax_h.hist(_np(block_normalised(w, blocksize)), bins=bins, density=True, histtype="step", lw=1.3,
                  label=label)
        x = _np(w).reshape(-1)
        x = rng.choice(x, size=min(max_points, x.size), replace=False)
        z = np.sort((x - x.mean()) / x.std())
        probs = (np.arange(1, z.size + 1) - 0.5) / z.size
        ax_q.plot(norm.ppf(probs), z, ".", ms=2, label=label)
    lim = 5.0
    ax_q.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="N(0, 1)")
    ax_h.set_xlabel(f"x / max|x| in its block of {blocksize}")
    ax_h.set_ylabel("density")
    ax_h.set_title("Per-block normalised weights")
    ax_h.legend(fontsize=7)
    ax_q.set_xlabel("N(0, 1) quantile")
    ax_q.set_ylabel("standardised weight quantile")
    ax_q.set_title("QQ plot (heavier tails bend away from the diagonal)")
    ax_q.legend(fontsize=7, markerscale=4)
    ax_q.grid(alpha=0.3)
    return fig


def construction_figure(levels, offset: float, bits: int = 4) -> Figure:
    """N(0, 1) density with the quantile grid Φ⁻¹(linspace(δ, ½, ·)) of the positive side and
    the resulting NormalFloat levels (before normalisation, scaled by Φ⁻¹(δ))."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax = fig.subplots()
    z = np.linspace(-3, 3, 400)
    ax.plot(z, norm.pdf(z), "k", lw=1.2, label="N(0, 1) density")
    scale = norm.ppf(offset)
    lv = _np(levels) * scale
    for i, v in enumerate(lv):
        ax.axvline(v, color="tab:blue" if v >= 0 else "tab:orange", lw=1, alpha=0.8,
                   label="positive levels" if i == len(lv) - 1 else ("negative levels" if i == 0 else None))
    ax.axvline(scale, color="tab:red", ls=":", lw=1.5, label=f"Φ⁻¹(δ) = {scale:.3f}, δ = {offset}")
    ax.axvline(-scale, color="tab:red", ls=":", lw=1.5)
    ax.set_xlabel("z (standard deviations)")
    ax.set_title(f"NF{bits}: levels are quantiles of N(0, 1) (then divided by Φ⁻¹(δ))")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def levels_figure(tables: dict) -> Figure:
    """One row per data type: its levels on [−1, 1] (dense where values are common)."""
    fig = Figure(figsize=(10, 0.55 * len(tables) + 1.0), layout="constrained")
    ax = fig.subplots()
    for row, levels in enumerate(tables.values()):
        lv = _np(levels)
        ax.plot(lv, np.full(lv.shape, row), "|", ms=16, mew=2)
        ax.text(1.04, row, f"{len(np.unique(lv))} levels", va="center", fontsize=8)
    ax.set_yticks(range(len(tables)), list(tables))
    ax.set_xlim(-1.05, 1.2)
    ax.set_ylim(-0.7, len(tables) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("level value (× block absmax)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def error_bars_figure(errors: dict, groups: dict, metric: str = "rel") -> Figure:
    """Grouped bars: mean relative error ‖Ŵ − W‖_F/‖W‖_F per matrix group and data type.

    ``errors`` is ``{matrix: {dtype: {metric: value}}}`` (analysis.error_table); ``groups``
    maps a group label to the list of matrix names it averages over.
    """
    dtypes = list(next(iter(errors.values())))
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(dtypes)
    x = np.arange(len(groups))
    for i, d in enumerate(dtypes):
        means = [np.mean([errors[m][d][metric] for m in names]) for names in groups.values()]
        ax.bar(x + (i - (len(dtypes) - 1) / 2) * width, means, width, label=d)
    ax.set_xticks(x, list(groups), rotation=15, fontsize=8)
    ax.set_ylabel("‖Ŵ − W‖_F / ‖W‖_F" if metric == "rel" else metric)
    ax.set_title("Weight quantisation error on MiniLM (blocksize 64), mean over the 6 layers")
    ax.legend(fontsize=8, ncols=len(dtypes))
    ax.grid(axis="y", alpha=0.3)
    return fig


def quant_histogram_figure(w, dequantised, levels, blocksize: int, title: str = "") -> Figure:
    """Left: histogram of ``x / max|x_block|`` with the data type's levels as lines. Right:
    relative error ‖Ŵ_b − W_b‖/‖W_b‖ of every block, in order."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax_h, ax_e = fig.subplots(1, 2)
    ax_h.hist(_np(block_normalised(w, blocksize)), bins=np.linspace(-1, 1, 121), density=True, color="0.6")
    for v in _np(levels):
        ax_h.axvline(v, color="tab:red", lw=0.8, alpha=0.7)
    ax_h.set_xlabel(f"x / max|x| (blocks of {blocksize}); red: levels")
    ax_h.set_yscale("log")
    per_block = _np(block_errors(w, dequantised, blocksize))
    ax_e.plot(per_block, ".", ms=1.5)
    ax_e.axhline(per_block.mean(), color="k", lw=1, label=f"mean {per_block.mean():.4f}")
    ax_e.set_xlabel("block index")
    ax_e.set_ylabel("relative error per block")
    ax_e.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def bits_error_figure(points: list[dict], highlight: dict | None = None) -> Figure:
    """Storage bits per parameter against weight error for a set of configurations.

    ``points``: dicts with ``bits``, ``rel`` and ``label`` (and ``series`` to join lines);
    ``highlight``: one such dict drawn as a large marker.
    """
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    series = dict.fromkeys(p.get("series", "") for p in points)
    for k, s in enumerate(series):
        pts = sorted((p for p in points if p.get("series", "") == s), key=lambda p: p["bits"])
        line, = ax.plot([p["bits"] for p in pts], [p["rel"] for p in pts], "o-", ms=4, label=s or None)
        above = k % 2 == 0      # alternate series label above / below their points: two series'
        for p in pts:           # points at the same blocksize sit almost on top of each other
            ax.annotate(p["label"], (p["bits"], p["rel"]), fontsize=6, color=line.get_color(),
                        xytext=(3, 4 if above else -4), textcoords="offset points",
                        va="bottom" if above else "top")
    if highlight is not None:
        ax.plot([highlight["bits"]], [highlight["rel"]], "r*", ms=16, label="current")
    ax.set_xlabel("stored bits per parameter")
    ax.set_ylabel("‖Ŵ − W‖_F / ‖W‖_F (all matrices)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def storage_parts(q) -> dict:
    """Stored bytes of a ``QuantizedTensor`` by part (they sum to ``q.nbytes``)."""
    if q.double_quant:
        return {"4-bit codes": q.packed.numel(), "absmax, 8-bit codes": q.absmax.codes.numel(),
                "2nd-level scales (fp32)": 4 * q.absmax.scale.numel(), "offset (fp32)": 4}
    return {"4-bit codes": q.packed.numel(), "absmax (fp32)": 4 * q.absmax.numel()}


PART_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")


def blockwise_layout_diagram(q, shown_blocks: int = 6, title: str = "") -> Figure:
    """How a blockwise-quantised tensor is stored. Left: the first ``shown_blocks`` blocks of
    the flattened weights, each → its 4-bit codes and one absmax constant; with double
    quantisation, the constants in groups of the second-level blocksize → one fp32 scale per
    group, and one offset per tensor. Right: stored bytes per part (``q``'s own sizes) and
    what each part costs in bits per parameter."""
    if not 1 <= shown_blocks <= 12:
        raise ValueError(f"shown_blocks must be in [1, 12], got {shown_blocks!r}")
    parts = storage_parts(q)
    n, b1, blocks = q.numel(), q.blocksize, -(-q.numel() // q.blocksize)
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    ax, ax_b = fig.subplots(1, 2, width_ratios=(2.3, 1))
    k = min(shown_blocks, blocks)
    for i in range(k):
        x = 1.2 * i
        ax.add_patch(_box(x, 3.0, 1.0, 0.6, "0.85"))
        ax.text(x + 0.5, 3.3, f"block {i}\n{b1} weights", ha="center", va="center", fontsize=7)
        ax.annotate("", xy=(x + 0.35, 2.25), xytext=(x + 0.35, 2.95),
                    arrowprops=dict(arrowstyle="->", lw=0.8))
        ax.add_patch(_box(x, 1.6, 0.7, 0.6, PART_COLOURS[0]))
        ax.text(x + 0.35, 1.9, f"{b1 // 2} B", ha="center", va="center", fontsize=7, color="white")
        ax.add_patch(_box(x + 0.75, 1.6, 0.12 if q.double_quant else 0.25, 0.6, PART_COLOURS[1]))
    ax.text(1.2 * k + 0.2, 3.3, f"… {blocks:,} blocks, n = {n:,}", va="center", fontsize=8)
    const = "1 B each: 8-bit code" if q.double_quant else "4 B each: fp32"
    ax.text(1.2 * k + 0.2, 1.9, f"codes: {b1} × 4 bit = {b1 // 2} B per block\nabsmax c₂ (orange): {const}",
            va="center", fontsize=8)
    if q.double_quant:
        b2 = q.absmax.blocksize
        ax.add_patch(_box(0, 0.2, 1.2 * k - 0.2, 0.6, PART_COLOURS[2]))
        ax.text(0.6 * k - 0.1, 0.5, f"one fp32 scale c₁ per {b2} constants c₂ (4 B)", ha="center",
                va="center", fontsize=7.5, color="white")
        ax.text(1.2 * k + 0.2, 0.5, f"+ one fp32 offset (mean of c₂) per tensor\n"
                f"{-(-blocks // b2):,} scales for {blocks:,} constants", va="center", fontsize=8)
    ax.set_xlim(-0.2, 1.2 * k + 4.2)
    ax.set_ylim(0, 3.8)
    ax.axis("off")
    second = f", constants double-quantised in blocks of {q.absmax.blocksize}" if q.double_quant else ""
    ax.set_title(title or f"Blockwise layout: blocksize {b1}{second}",
                 fontsize=9, loc="left")
    left = 0.0
    for (name, nbytes), colour in zip(parts.items(), PART_COLOURS):
        bits = 8 * nbytes / n
        ax_b.barh(0, bits, left=left, height=0.6, color=colour,
                  label=f"{name}: {nbytes:,} B = {bits:.4f} bit/param")
        left += bits
    ax_b.set_yticks([])
    ax_b.set_ylim(-0.5, 2.6)
    ax_b.set_xlim(0, 5)
    ax_b.set_xlabel("bits per parameter (stored bytes × 8 / n)")
    ax_b.set_title(f"stored: {sum(parts.values()):,} B = {left:.4f} bits/param", fontsize=9)
    ax_b.legend(fontsize=7, loc="upper left")
    return fig


def _box(x, y, w, h, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=colour, edgecolor="white")

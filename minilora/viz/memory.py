"""Figures for notebook 06 (paged optimizer): the memory timeline of one training step as a
stacked area chart, and paper-scale memory stacks as stacked bars.

Pure functions: measured (or estimated) bytes in, a matplotlib ``Figure`` out.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

COLOURS = {"weights": "#4c72b0", "optimizer states": "#dd8452", "gradients": "#55a868",
           "activations": "#c44e52", "update temporaries": "#8172b3", "torch tensors": "#4c72b0",
           "managed states on GPU": "#dd8452", "host (paged states)": "#cccccc"}
PHASE_SHADE = {"forward": "#f2f2f2", "backward": "#e4e4e4", "step": "#d2d2d2"}


def _scale(nbytes) -> tuple[float, str]:
    top = max(nbytes) if len(nbytes) else 0
    return (2**30, "GiB") if top >= 2**30 else (2**20, "MiB")


def timeline_figure(timelines: dict, title="Memory during one training step") -> Figure:
    """One stacked-area panel per timeline (name → ``minilora.memory.Timeline``), same y scale.

    Phases (forward, backward, step) are shaded; the dashed line and label mark each
    panel's peak, so two panels (e.g. AdamW vs PagedAdamW + page_out) compare directly.
    """
    if not timelines:
        raise ValueError("timelines is empty")
    unit, label = _scale([t.peak for t in timelines.values()])
    top = max(t.peak for t in timelines.values()) / unit
    fig = Figure(figsize=(12, 3.4 * len(timelines)), layout="constrained")
    axes = fig.subplots(len(timelines), 1, squeeze=False)[:, 0]
    for ax, (name, tl) in zip(axes, timelines.items()):
        x = np.arange(len(tl.events))
        start = 0
        for i in range(1, len(x) + 1):  # shade runs of one phase
            if i == len(x) or tl.phases[i] != tl.phases[start]:
                ax.axvspan(start - 0.5, i - 0.5, color=PHASE_SHADE.get(tl.phases[start], "#eeeeee"), lw=0)
                ax.text((start + i - 1) / 2, top * 1.1, tl.phases[start], ha="center", fontsize=8)
                start = i
        ys = [np.asarray(v, dtype=float) / unit for v in tl.parts.values()]
        ax.stackplot(x, *ys, labels=list(tl.parts), step="mid", alpha=0.9,
                     colors=[COLOURS.get(k, None) for k in tl.parts])
        peak = tl.peak / unit
        ax.axhline(peak, color="k", ls="--", lw=1)
        ax.text(len(x) - 0.5, peak, f"peak {peak:.2f} {label} ({tl.peak_event})", ha="right", va="bottom",
                fontsize=8)
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_ylim(0, top * 1.18)
        ax.set_ylabel(label)
        ax.set_title(name, loc="left")
        ax.set_xticks(x, tl.events, rotation=90, fontsize=7)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.suptitle(title)
    return fig


STACK_PARTS = ("weights", "gradients", "optimizer states", "activations", "host (paged states)")
GPU_LINES = (("48 GB GPU", 48e9), ("80 GB GPU", 80e9))


def memory_stack_figure(stacks: dict, parts=STACK_PARTS, limits=GPU_LINES,
                        title="GPU memory to fine-tune") -> Figure:
    """Horizontal stacked bars in GB (10⁹ bytes), one per entry of ``stacks`` (label → parts
    dict, e.g. ``minilora.memory.finetune_memory``), with GPU sizes as lines.
    Host memory (paged states) is drawn hatched to the right of the device total."""
    if not stacks:
        raise ValueError("stacks is empty")
    fig = Figure(figsize=(9, 0.55 * len(stacks) + 1.8), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(stacks))[::-1]
    for part in parts:
        below = parts[:parts.index(part)]
        left = np.array([sum(s.get(p, 0.0) for p in below) for s in stacks.values()]) / 1e9
        width = np.array([s.get(part, 0.0) for s in stacks.values()]) / 1e9
        if width.any():
            ax.barh(y, width, left=left, color=COLOURS.get(part), label=part,
                    hatch="//" if part.startswith("host") else None, edgecolor="white")
    for i, s in zip(y, stacks.values()):
        device = sum(s.get(p, 0.0) for p in parts if not p.startswith("host")) / 1e9
        end = sum(s.get(p, 0.0) for p in parts) / 1e9
        ax.text(end, i, f" {device:,.1f} GB on the GPU", va="center", fontsize=8)
    for (name, value), style in zip(limits, (":", "--", "-.", "-")):
        ax.axvline(value / 1e9, color="k", ls=style, lw=1, label=name)
    longest = max(sum(s.get(p, 0.0) for p in parts) for s in stacks.values()) / 1e9
    ax.set_xlim(0, max(longest, *(v / 1e9 for _, v in limits)) * 1.3)
    ax.set_yticks(y, list(stacks))
    ax.set_xlabel("GB on the GPU (hatched: host RAM)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    return fig

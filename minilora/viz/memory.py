"""Figures for notebook 06 (paged optimizer): the memory timeline of one training step as a
stacked area chart, and paper-scale memory stacks as stacked bars.

Pure functions: measured (or estimated) bytes in, a matplotlib ``Figure`` out.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

COLOURS = {"weights": "#4c72b0", "optimizer states": "#dd8452", "gradients": "#55a868",
           "activations": "#c44e52", "update temporaries": "#8172b3", "torch tensors": "#4c72b0",
           "managed states on GPU": "#dd8452", "host (paged states)": "#cccccc", "adapters": "#937860"}
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


PAGING_PHASES = (
    ("1 · page_out() before the forward pass", "states", "device → host\n(cudaMemPrefetchAsync to the CPU)"),
    ("2 · forward + backward: the spike", None,
     "states stay on the host;\nunder pressure the driver evicts more"),
    ("3 · the update: states prefetched back", "states",
     "host → device\n(prefetch; a fault would migrate on demand)"),
)


def paging_diagram(weight_bytes: float, state_bytes: float, activation_bytes: float, max_squares: int = 40,
                   title: str = "Paged optimizer states in CUDA unified memory") -> Figure:
    """A diagram of unified-memory paging over one training step: three panels (page out,
    forward/backward, update), each a device box and a host box filled with pages — one
    square = the same number of bytes everywhere — and an arrow for the pages that move.

    ``weight_bytes``, ``state_bytes``, ``activation_bytes``: the sizes to draw (measured or
    estimated by the caller; weights + gradients count as "weights" here). ``max_squares``
    bounds the squares of the fullest box, so one square is ``max(W + A, S) / max_squares``.
    """
    for name, value in (("weight_bytes", weight_bytes), ("state_bytes", state_bytes),
                        ("activation_bytes", activation_bytes)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    sizes = {"weights": weight_bytes, "optimizer states": state_bytes, "activations": activation_bytes}
    if not isinstance(max_squares, int) or not 4 <= max_squares <= 400:
        raise ValueError(f"max_squares must be an int in [4, 400], got {max_squares!r}")
    unit = max(weight_bytes + activation_bytes, weight_bytes + state_bytes) / max_squares
    squares = {k: max(1, round(v / unit)) for k, v in sizes.items()}
    scale, label = _scale([unit])
    cols = 8
    fullest = squares["weights"] + max(squares["activations"], squares["optimizer states"])
    rows = -(-fullest // cols)
    fig = Figure(figsize=(12, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (name, moving, arrow) in zip(axes, PAGING_PHASES):
        device = ["weights"] * squares["weights"]
        host = []
        if name.startswith("2"):
            device += ["activations"] * squares["activations"]
            host += ["optimizer states"] * squares["optimizer states"]
        elif name.startswith("1"):
            host += ["optimizer states"] * squares["optimizer states"]
        else:
            device += ["optimizer states"] * squares["optimizer states"]
        for x0, (box, pages) in zip((0.0, cols + 4.0), (("GPU (device)", device), ("host RAM", host))):
            ax.add_patch(_rect(x0 - 0.3, -0.3, cols + 0.6, rows + 0.6, face="none", edge="k"))
            ax.text(x0 + cols / 2, rows + 0.6, box, ha="center", va="bottom", fontsize=9)
            for i, part in enumerate(pages):
                ax.add_patch(_rect(x0 + i % cols, i // cols, 0.85, 0.85, face=COLOURS[part], edge="white"))
        forward = name.startswith(("1", "2"))
        if moving or forward:
            start, end = (cols + 0.5, cols + 3.5) if forward else (cols + 3.5, cols + 0.5)
            ax.annotate("", xy=(end, rows / 2), xytext=(start, rows / 2),
                        arrowprops=dict(arrowstyle="->", lw=2, color="k" if moving else "0.6",
                                        ls="-" if moving else "--"))
        ax.text(cols + 2, -0.8, arrow, ha="center", va="top", fontsize=7.5)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlim(-0.6, 2 * cols + 4.6)
        ax.set_ylim(-2.6, rows + 1.6)
        ax.set_aspect("equal")
        ax.axis("off")
    handles = [_rect(0, 0, 1, 1, face=COLOURS[k], edge="white") for k in sizes]
    fig.legend(handles, [f"{k} ({v / scale:,.1f} {label})" for k, v in sizes.items()],
               loc="outside lower center", ncols=3, fontsize=8,
               title=f"one square ≈ {unit / scale:,.2f} {label}", title_fontsize=8)
    fig.suptitle(title)
    return fig


def _rect(x, y, w, h, face, edge):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=face, edgecolor=edge)


CALCULATOR_PARTS = ("weights", "adapters", "gradients", "optimizer states", "activations",
                    "host (paged states)")
CARD_LINES = (("24 GB GPU", 24e9), ("48 GB GPU", 48e9), ("80 GB GPU", 80e9))


def calculator_figure(stacks: dict, title="GPU memory to fine-tune (computed)") -> Figure:
    """Notebook 07's memory calculator: ``memory_stack_figure`` with the adapters as their own
    part and 24 / 48 / 80 GB cards (``stacks``: label → ``minilora.qlora.calculator_memory``)."""
    return memory_stack_figure(stacks, parts=CALCULATOR_PARTS, limits=CARD_LINES, title=title)

"""minilora.viz.lora: the LoRA figures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from minilora.viz.lora import (
    budget_figure,
    cross_domain_figure,
    learning_curve_figure,
    lora_bypass_figure,
    rank_sweep_figure,
    subspace_similarity_figure,
)

matplotlib.use("Agg")

FIGURES = {
    "lora_bypass_figure": lambda: lora_bypass_figure(384, 1536, 8, 16),
    "learning_curve_figure": lambda: learning_curve_figure({"LoRA": ([10, 20], [0.6, 0.8], 300)},
                                                           reference=("full FT", 0.85, 300)),
    "rank_sweep_figure": lambda: rank_sweep_figure([1, 2, 8], [0.7, 0.75, 0.8], 400,
                                                   reference=("full FT", 0.85, 1056)),
    "budget_figure": lambda: budget_figure([("a", 100, 0.7, 400), ("b", 10_000, 0.8, 400)], highlight="a"),
    "subspace_similarity_figure": lambda: subspace_similarity_figure({"W_q": np.random.rand(8, 64),
                                                                      "W_v": np.random.rand(8, 64)}),
    "cross_domain_figure": lambda: cross_domain_figure(np.full((4, 4), 0.8), list("mant"), list("mant"),
                                                       [10, 20, 30, 40]),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_lora_figure_returns_a_figure_with_axes(name):
    f = FIGURES[name]()
    assert isinstance(f, Figure) and f.axes


def test_lora_bypass_figure_labels_a_and_b_with_their_shapes():
    texts = [t.get_text() for t in lora_bypass_figure(384, 1536, 4).axes[0].texts]
    assert any("A   4 × 384" in t for t in texts) and any("B   1536 × 4" in t for t in texts)
    assert any("r·(d_in + d_out) = 7,680" in t for t in texts)


@pytest.mark.parametrize("kwargs", [dict(r=0), dict(r=400), dict(d_in=0)])
def test_lora_bypass_figure_rejects_impossible_shapes(kwargs):
    with pytest.raises(ValueError):
        lora_bypass_figure(**kwargs)


# the ablation's layout: four target sets at one budget, a rank sweep on W_q, W_v (02b)
ABLATION_POINTS = [("W_q, r=16", 74_498, 0.62, 300), ("W_v, r=16", 74_498, 0.803, 300),
                   ("W_q, W_v, r=8", 74_498, 0.813, 300), ("W_q, W_k, W_v, W_o, r=4", 74_498, 0.753, 300)] + [
    (f"W_q, W_v, r={r}", 770 + 9_216 * r, a, 300) for r, a in ((1, 0.807), (2, 0.80), (4, 0.793), (16, 0.82),
                                                              (64, 0.817))]


def _text_boxes(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.axes[0].texts]


def test_budget_figure_labels_do_not_overlap():
    boxes = _text_boxes(budget_figure(ABLATION_POINTS, highlight="W_q, W_v, r=8"))
    assert len(boxes) == len(ABLATION_POINTS)
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), f"labels {a!r} and {b!r} overlap"


def test_budget_figure_draws_the_reference_as_a_line_not_a_point():
    fig = budget_figure(ABLATION_POINTS, reference=("full fine-tuning (other budget, other rows)", 0.856))
    ax = fig.axes[0]
    assert len(ax.containers) == len(ABLATION_POINTS)  # one errorbar per run, none for the reference
    lines = [line for line in ax.get_lines() if line.get_label().startswith("full fine-tuning")]
    assert len(lines) == 1 and list(lines[0].get_ydata()) == [85.6, 85.6]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "full fine-tuning (other budget, other rows)" in legend

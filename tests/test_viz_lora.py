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

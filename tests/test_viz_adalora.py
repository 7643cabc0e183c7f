"""minilora.viz.adalora: the rank-budget heatmap and its companions draw from made-up numbers."""

import matplotlib
import numpy as np
import pytest

from minilora.adalora import RankGrid
from minilora.viz import orthogonality_figure, rank_budget_figure, rank_share_figure

matplotlib.use("Agg")


def grid():
    return RankGrid((0, 1), ("query", "ffn_in"), np.array([[3.0, 8.0], [0.0, 5.0]]))


def test_rank_budget_figure_has_the_heatmap_and_the_marked_budget_curve():
    fig = rank_budget_figure(grid(), [16, 16, 12, 9, 8, 8], step=3, init_r=8)
    heat, curve = fig.axes[:2]  # heatmap, budget curve (then the colorbar)
    assert [t.get_text() for t in heat.texts] == ["3", "8", "0", "5"]
    marker = curve.lines[1]
    assert list(marker.get_xdata()) == [3] and list(marker.get_ydata()) == [12]


def test_rank_budget_figure_refuses_an_empty_budget():
    with pytest.raises(ValueError, match="budget"):
        rank_budget_figure(grid(), [], step=1, init_r=8)


def test_rank_share_figure_draws_one_bar_per_type_and_per_layer():
    fig = rank_share_figure({"query": [2, 3, 4], "ffn_in": [5, 5, 6]}, {0: [3, 4, 4], 1: [4, 5, 5]}, init_r=8)
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]


def test_orthogonality_figure_draws_one_line_per_run():
    fig = orthogonality_figure({"a": ([1, 2], [1.0, 0.5]), "b": ([1, 2], [1.0, 1.2])})
    assert len(fig.axes[0].lines) == 2

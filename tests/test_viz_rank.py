"""minilora.viz.rank: the spectra, rank heatmap, accuracy-vs-rank and truncation figures."""

import matplotlib
import pytest
import torch

from minilora.rank import random_like, spectrum
from minilora.viz.rank import accuracy_vs_rank_figure, rank_heatmaps_figure, spectra_figure, truncation_figure

matplotlib.use("Agg")


@pytest.fixture
def spectra():
    """(spectra of four random 12 × 8 matrices by (layer, type), spectra of noise by type)."""
    g = torch.Generator().manual_seed(0)
    mats = {(layer, t): torch.randn(12, 8, generator=g) for layer in range(2) for t in ("query", "ffn_in")}
    rand = {t: spectrum(random_like(mats[0, t])) for t in ("query", "ffn_in")}
    return {k: spectrum(v) for k, v in mats.items()}, rand


def test_spectra_figure_draws_one_panel_per_matrix_type(spectra):
    assert len(spectra_figure(*spectra).axes) == 2


def test_rank_heatmaps_figure_draws_one_titled_panel_per_table():
    fig = rank_heatmaps_figure({"effective": [[1, 2], [3, 4]], "energy": [[1, 2], [3, 4]]}, [0, 1],
                               ["query", "ffn_in"])
    assert len([a for a in fig.axes if a.get_title()]) == 2


def test_accuracy_vs_rank_figure_labels_full_rank():
    fig = accuracy_vs_rank_figure([0, 1, 2, "full"], [0.7, 0.8, 0.82, 0.85], [0.01] * 4, {"head only": 0.67})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2", "full"]


def test_truncation_figure_draws_two_panels(spectra):
    sigma, rand = spectra
    assert len(truncation_figure(sigma[0, "query"], 3, rand["query"], accuracy="80 %").axes) == 2


def test_accuracy_vs_rank_figure_marks_the_points_a_paired_test_calls_different():
    fig = accuracy_vs_rank_figure([0, 1, 2, "full"], [0.6, 0.7, 0.84, 0.85], [0.03, 0.03, 0.01, 0.0],
                                  verdicts=["lower", "lower", "not detectable at this size", ""])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["paired test: differs (p < 0.05)"].get_xdata()) == [0, 1]
    assert list(lines["paired test: not detectable at this size"].get_xdata()) == [2, 3]

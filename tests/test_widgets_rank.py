"""The rank explorer widget (driven by setting .value) and the rank figures, on a tiny BERT."""

import math

import matplotlib
import pytest
import torch

from minilora.rank.delta import decompose, truncation_accuracy, weight_deltas

matplotlib.use("Agg")
pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from test_rank_delta import perturbed, tiny_bert, tiny_data  # noqa: E402  (tests/ is on sys.path under pytest)

from minilora.rank import random_like, spectrum  # noqa: E402
from minilora.viz.rank import (  # noqa: E402
    accuracy_vs_rank_figure,
    rank_heatmaps_figure,
    spectra_figure,
    truncation_figure,
)
from minilora.rank import truncation_summary
from minilora.widgets.rank import RankExplorer  # noqa: E402


@pytest.fixture
def setup():
    base = tiny_bert()
    tuned = perturbed(base, scale=0.8, seed=2)
    return tuned, decompose(weight_deltas(tuned, base)), tiny_data(64)


def test_truncation_summary_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0, 1.0], dtype=torch.float64)  # energies 9, 4, 1, 1 of 15
    out = truncation_summary(s, 2)
    assert out["kept_energy"] == pytest.approx(13 / 15)
    assert out["relative_error"] == pytest.approx(math.sqrt(2 / 15))
    assert out["sigma_r"] == 2.0 and out["max_rank"] == 4
    assert truncation_summary(s, 9)["r"] == 4  # clipped
    assert math.isnan(truncation_summary(s, 0)["sigma_r"])


def test_explorer_follows_its_controls(setup):
    tuned, factors, data = setup
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    assert ex.name == "bert.encoder.layer.1.attention.self.query"
    ex.layer.value = 0
    ex.matrix.value = "ffn_in"
    assert ex.state["name"] == "bert.encoder.layer.0.intermediate.dense"
    for r in (0, 1, 16):
        ex.rank.value = r
        expected = truncation_accuracy(tuned, factors, data, r, [ex.name])
        assert ex.state["accuracy"] == expected and ex.state["n"] == len(data)
        summary = truncation_summary(factors[ex.name][1], r)
        assert ex.state["relative_error"] == pytest.approx(summary["relative_error"])
    assert ex.state["relative_error"] == pytest.approx(0.0, abs=1e-7)  # r = 16 = full rank here
    ex.rank.value = 0
    ex.scope.value = "all"
    assert ex.state["scope"] == "all"
    assert ex.state["accuracy"] == truncation_accuracy(tuned, factors, data, 0)
    assert "all matrices truncated" in ex.summary.value and "n = 64" in ex.summary.value
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())  # weights restored


def test_explorer_uses_known_values_and_draws(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, known={("all", 4): (0.123, 1000)}, r=4,
                      random_spectra={"query": spectrum(random_like(torch.ones(16, 16)))})
    ex.scope.value = "all"
    assert ex.state["accuracy"] == 0.123 and ex.state["n"] == 1000
    assert "12.3 ±" in ex.summary.value
    assert len(ex.plot.outputs) <= 1  # the figure is redrawn in place, not appended


def test_figures_render():
    g = torch.Generator().manual_seed(0)
    mats = {(layer, t): torch.randn(12, 8, generator=g) for layer in range(2) for t in ("query", "ffn_in")}
    spectra = {k: spectrum(v) for k, v in mats.items()}
    rand = {t: spectrum(random_like(mats[0, t])) for t in ("query", "ffn_in")}
    assert len(spectra_figure(spectra, rand).axes) == 2
    fig = rank_heatmaps_figure({"effective": [[1, 2], [3, 4]], "energy": [[1, 2], [3, 4]]}, [0, 1],
                               ["query", "ffn_in"])
    assert len([a for a in fig.axes if a.get_title()]) == 2
    fig = accuracy_vs_rank_figure([0, 1, 2, "full"], [0.7, 0.8, 0.82, 0.85], [0.01] * 4, {"head only": 0.67})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2", "full"]
    assert len(truncation_figure(spectra[0, "query"], 3, rand["query"], accuracy="80 %").axes) == 2

"""minilora.widgets.rank: the rank explorer on a tiny BERT, driven by setting .value on its controls."""

import matplotlib
import pytest
import torch

from minilora.rank import random_like, spectrum, truncation_summary
from minilora.rank.delta import decompose, truncation_accuracy, weight_deltas

matplotlib.use("Agg")
pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.widgets.rank import RankExplorer, rank_options  # noqa: E402


@pytest.fixture
def setup(tiny_bert, perturbed, tiny_data):
    base = tiny_bert()
    tuned = perturbed(base, scale=0.8, seed=2)
    return tuned, decompose(weight_deltas(tuned, base)), tiny_data(64)


def test_explorer_starts_at_the_last_layers_query(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    assert ex.name == "bert.encoder.layer.1.attention.self.query"


def test_explorer_follows_its_layer_and_matrix_controls(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    ex.layer.value = 0
    ex.matrix.value = "ffn_in"
    assert ex.state["name"] == "bert.encoder.layer.0.intermediate.dense"


def test_explorer_follows_its_rank_slider(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    ex.layer.value = 0
    ex.matrix.value = "ffn_in"
    for r in (0, 1, 16):
        ex.rank.value = r
        expected = truncation_accuracy(tuned, factors, data, r, [ex.name])
        assert ex.state["accuracy"] == expected and ex.state["n"] == len(data)
        summary = truncation_summary(factors[ex.name][1], r)
        assert ex.state["relative_error"] == pytest.approx(summary["relative_error"])
    assert ex.state["relative_error"] == pytest.approx(0.0, abs=1e-7)  # r = 16 = full rank here


def test_explorer_truncates_every_matrix_in_scope_all(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    ex.rank.value = 0
    ex.scope.value = "all"
    assert ex.state["scope"] == "all"
    assert ex.state["accuracy"] == truncation_accuracy(tuned, factors, data, 0)
    assert "all matrices truncated" in ex.summary.value and "n = 64" in ex.summary.value


def test_explorer_restores_the_weights(setup):
    tuned, factors, data = setup
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    ex = RankExplorer(tuned, factors, data, r=2, draw=False)
    ex.layer.value = 0
    ex.matrix.value = "ffn_in"
    for r in (0, 1, 16):
        ex.rank.value = r
    ex.rank.value = 0
    ex.scope.value = "all"
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())  # weights restored


def test_explorer_uses_known_values_and_draws(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, known={("all", 4): (0.123, 1000)}, r=4,
                      random_spectra={"query": spectrum(random_like(torch.ones(16, 16)))})
    ex.scope.value = "all"
    assert ex.state["accuracy"] == 0.123 and ex.state["n"] == 1000
    assert "12.3 ±" in ex.summary.value
    assert len(ex.plot.outputs) <= 1  # the figure is redrawn in place, not appended


def test_rank_options_double_up_to_full_rank():
    doubling = [(str(v), v) for v in (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert rank_options(384) == doubling + [("full (384)", 384)]


def test_the_rank_slider_offers_only_the_doubling_ranks(setup):
    tuned, factors, data = setup
    ex = RankExplorer(tuned, factors, data, r=3, draw=False)
    assert [v for _, v in ex.rank.options] == [0, 1, 2, 4, 8, 16] and ex.rank.value == 2


def test_rank_options_rejects_a_rank_below_one():
    with pytest.raises(ValueError, match="full_rank"):
        rank_options(0)

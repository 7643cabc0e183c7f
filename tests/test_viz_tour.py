"""minilora.viz.tour: the tour's figures."""

import matplotlib
import pytest

matplotlib.use("Agg")

from minilora.data import DOMAINS, load_snippets  # noqa: E402
from minilora.viz.tour import (  # noqa: E402
    accuracy_bars_figure,
    dataset_figure,
    parameter_budget_figure,
    probe_figure,
    training_curves_figure,
)


def test_dataset_figure_draws_two_panels():
    every = {d: load_snippets(d, "all", include_neutral=True) for d in DOMAINS}
    assert len(dataset_figure(every).axes) == 2


def test_parameter_budget_figure_draws_a_bar_per_non_empty_group():
    assert len(parameter_budget_figure({"a": 10, "b": 0, "c": 1000}).axes[0].patches) == 2


def test_accuracy_bars_figure_draws_one_panel():
    assert len(accuracy_bars_figure(["x", "y"], [0.6, 0.8], [0.01, 0.02], chance=0.5).axes) == 1


def test_probe_figure_draws_a_bar_per_text():
    assert len(probe_figure(["good", "bad"], {"m": [0.9, 0.1]}).axes[0].patches) == 2


def test_parameter_budget_figure_uses_a_linear_axis_so_bar_length_is_share():
    fig = parameter_budget_figure({"embeddings": 600, "FFN": 300, "classifier": 100})
    assert fig.axes[0].get_xscale() == "linear"


def test_training_curves_figure_draws_loss_and_validation_panels():
    fig = training_curves_figure({"head": ([0.7, 0.6, 0.5] * 10, [10, 20, 30], [0.7, 0.75, 0.76]),
                                  "full": ([0.7, 0.4] * 10, [], [])}, window=5)
    left, right = fig.axes
    assert len(left.lines) == 3 and len(right.lines) == 1  # two losses and ln 2; one validation curve


@pytest.mark.parametrize("kwargs", [dict(runs={}), dict(runs={"a": ([1.0], [], [])}, window=0)])
def test_training_curves_figure_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        training_curves_figure(**kwargs)

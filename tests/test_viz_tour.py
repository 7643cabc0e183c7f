"""minilora.viz.tour: the tour's figures."""

import matplotlib

matplotlib.use("Agg")

from minilora.data import DOMAINS, load_snippets  # noqa: E402
from minilora.viz.tour import (  # noqa: E402
    accuracy_bars_figure,
    dataset_figure,
    parameter_budget_figure,
    probe_figure,
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

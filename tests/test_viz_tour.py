"""The tour's figures and sentiment-probe widget (driven by setting .value)."""

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from minilora.data import DOMAINS, load_snippets  # noqa: E402
from minilora.models import parameter_groups  # noqa: E402
from minilora.viz.tour import (  # noqa: E402
    accuracy_bars_figure,
    dataset_figure,
    parameter_budget_figure,
    probe_figure,
)
from minilora.train import positive_probability
from minilora.widgets.tour import probe_report, sentiment_probe  # noqa: E402


def test_parameter_groups_cover_every_parameter(minilm):
    model, _ = minilm
    groups = parameter_groups(model)
    assert sum(groups.values()) == 22_713_986
    assert groups["Wq"] == groups["Wk"] == groups["Wv"] == groups["Wo"] == 6 * (384 * 384 + 384)
    assert groups["FFN"] == 6 * (2 * 384 * 1536 + 1536 + 384)
    assert groups["classifier"] == 770 and groups["other"] == 0
    for p in model.parameters():
        p.requires_grad = False
    model.classifier.weight.requires_grad = True
    assert sum(parameter_groups(model, trainable_only=True).values()) == 768


def test_figures_draw():
    every = {d: load_snippets(d, "all", include_neutral=True) for d in DOMAINS}
    assert len(dataset_figure(every).axes) == 2
    assert len(parameter_budget_figure({"a": 10, "b": 0, "c": 1000}).axes[0].patches) == 2
    assert len(accuracy_bars_figure(["x", "y"], [0.6, 0.8], [0.01, 0.02], chance=0.5).axes) == 1
    assert len(probe_figure(["good", "bad"], {"m": [0.9, 0.1]}).axes[0].patches) == 2


def test_probe_widget_follows_its_text_box(minilm):
    model, tok = minilm
    panel = sentiment_probe({"base": model}, tok, text="great")
    box, out = panel.children
    box.value = "a terrible, boring film"
    p = positive_probability(model, tok, "a terrible, boring film")[0]
    assert f"P(positive) = {p:.2f}" in out.value
    box.value = "   "
    assert "non-empty" in out.value
    assert probe_report({"base": model}, tok, "fine").startswith("base: P(positive) = ")


def test_probe_bad_input(minilm):
    model, tok = minilm
    with pytest.raises(ValueError, match="texts"):
        positive_probability(model, tok, [])

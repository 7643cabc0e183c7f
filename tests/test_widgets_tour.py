"""minilora.widgets.tour: the sentiment probe, driven by setting .value on its text box."""

import pytest

pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.train import positive_probability  # noqa: E402
from minilora.widgets.tour import probe_report, sentiment_probe  # noqa: E402


def test_probe_widget_follows_its_text_box(minilm_read_only):
    model, tok = minilm_read_only
    box, out = sentiment_probe({"base": model}, tok, text="great").children
    box.value = "a terrible, boring film"
    p = positive_probability(model, tok, "a terrible, boring film")[0]
    assert f"P(positive) = {p:.2f}" in out.value


def test_probe_widget_asks_for_non_empty_text(minilm_read_only):
    model, tok = minilm_read_only
    box, out = sentiment_probe({"base": model}, tok, text="great").children
    box.value = "   "
    assert "non-empty" in out.value


def test_probe_report_names_each_model(minilm_read_only):
    model, tok = minilm_read_only
    assert probe_report({"base": model}, tok, "fine").startswith("base: P(positive) = ")

"""minilora.widgets.lora: the LoRA explorer, driven by setting .value on its controls."""

from __future__ import annotations

import matplotlib
import pytest

from minilora.lora import lora_costs

matplotlib.use("Agg")
pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.widgets.lora import TARGET_SETS, LoRAExplorer  # noqa: E402

RUNS = {("W_q, W_v", 8): (0.8, 400), ("W_q", 16): (0.7, 400)}


@pytest.fixture
def explorer(minilm_read_only):
    """A LoRAExplorer over MiniLM's shapes (the model is only read) with two measured runs."""
    model, _ = minilm_read_only
    return LoRAExplorer(model, RUNS, reference=("full FT", 22_713_986, 0.85, 1056), head_parameters=770,
                        draw=False)


def test_explorer_counts_the_costs_of_query_value_r8(explorer):
    s = explorer.state()
    assert s["lora_parameters"] == 73_728 and s["trainable"] == 74_498
    assert s["adamw_state_bytes"] == 8 * 74_498 and s["adapter_bytes"] == 4 * 74_498


def test_explorer_shows_the_measured_accuracy_with_its_se(explorer):
    s = explorer.state()
    assert s["accuracy"] == 0.8 and s["se"] == pytest.approx((0.8 * 0.2 / 400) ** 0.5)


def test_explorer_summary_states_trainable_and_accuracy(explorer):
    assert "74,498" in explorer.summary.value and "80.0 ± 2.0 %" in explorer.summary.value


def test_explorer_follows_its_targets_and_rank(explorer):
    explorer.targets.value = "W_q"
    explorer.rank.value = 16
    assert explorer.state()["accuracy"] == 0.7 and explorer.state()["lora_parameters"] == 73_728


def test_explorer_says_when_a_choice_was_not_trained(explorer):
    explorer.targets.value = "W_q"
    explorer.rank.value = 64
    assert explorer.state()["accuracy"] is None and "not trained" in explorer.summary.value
    assert explorer.state()["lora_parameters"] == 64 * 6 * 768


def test_explorer_state_is_lora_costs_plus_the_run(explorer, minilm_read_only):
    explorer.rank.value = 64
    explorer.targets.value = "W_q, W_k, W_v, W_o"
    costs = lora_costs(minilm_read_only[0], TARGET_SETS["W_q, W_k, W_v, W_o"], 64, 770)
    assert explorer.state() | {} == costs | {
        "label": "W_q, W_k, W_v, W_o, r=64", "accuracy": None, "se": None, "n": None}


def test_explorer_points_are_the_runs_and_the_reference_is_a_line(explorer):
    assert len(explorer.points()) == 2 and all(p[0] != "full FT" for p in explorer.points())
    label, acc = explorer.reference_line()
    assert acc == 0.85 and label.startswith("full FT: 85.0 %") and "n = 1056" in label


def test_explorer_without_reference_has_no_line(minilm_read_only):
    assert LoRAExplorer(minilm_read_only[0], RUNS, draw=False).reference_line() is None


def test_explorer_rejects_a_rank_it_does_not_offer(minilm_read_only):
    with pytest.raises(ValueError, match="r must be one of"):
        LoRAExplorer(minilm_read_only[0], RUNS, r=3, draw=False)


def test_explorer_draws_its_figure(minilm_read_only):
    drawn = LoRAExplorer(minilm_read_only[0], RUNS, draw=True)  # the figure path runs too
    assert drawn.plot is not None

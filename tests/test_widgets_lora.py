"""Notebook 02's helpers: the cached LoRA runs, the explorer widget (driven by .value), the figures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minilora.lora import lora_layers, lora_parameter_count
from minilora.adamw import state_bytes as optimizer_state_bytes
from minilora.course.runs import lora_fine_tune
from minilora.data import encode_sample, sample_snippets
from minilora.viz.lora import (
    budget_figure,
    cross_domain_figure,
    learning_curve_figure,
    rank_sweep_figure,
    subspace_similarity_figure,
)

matplotlib.use("Agg")


def test_lora_parameter_count_matches_the_formula(minilm):
    model, _ = minilm
    assert lora_parameter_count(model, ("query", "value"), 8) == 73_728
    assert lora_parameter_count(model, ("query",), 16) == 73_728
    assert lora_parameter_count(model, ("query", "key", "value", "attention.output.dense"), 4) == 73_728
    assert lora_parameter_count(model, ("intermediate.dense",), 1) == 6 * (384 + 1536)
    with pytest.raises(ValueError, match="matched no module"):
        lora_parameter_count(model, ("nothing",), 1)
    with pytest.raises(ValueError, match="r must be"):
        lora_parameter_count(model, ("query",), 0)


def test_sample_snippets_is_balanced_reproducible_and_a_subset():
    first = [s.label for s in sample_snippets("movie", "test", 200)]
    assert 0.35 < sum(first) / 200 < 0.65  # the file's first 200 rows are ~96 % positive
    ids = [s.id for s in sample_snippets("movie", "test", 200)]
    assert ids == [s.id for s in sample_snippets("movie", "test", 200)]
    assert ids != [s.id for s in sample_snippets("movie", "test", 200, seed=1)]
    assert set(ids) <= {s.id for s in sample_snippets("movie", "test")}
    assert len(sample_snippets("amazon", "test", 10_000)) == 365
    with pytest.raises(ValueError, match="n must be"):
        sample_snippets("movie", "test", 0)


def test_encode_sample_encodes_the_sample_in_source_order(minilm):
    _, tokenizer = minilm
    enc = encode_sample("nyt", "test", tokenizer, 50, max_length=32)
    rows = sample_snippets("nyt", "test", 50)
    assert len(enc) == 50 and enc.labels.tolist() == [s.label for s in rows]


def test_optimizer_state_bytes_counts_adamw_moments():
    p = torch.nn.Parameter(torch.zeros(10, 3))
    opt = torch.optim.AdamW([p])
    assert optimizer_state_bytes(opt) == 0
    p.grad = torch.ones_like(p)
    opt.step()
    assert optimizer_state_bytes(opt) == 2 * 30 * 4  # exp_avg, exp_avg_sq (fp32); the step scalar not


def test_lora_fine_tune_trains_only_the_adapter_and_replays_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", str(tmp_path))
    kw = dict(targets=("value",), r=2, alpha=4, steps=2, batch_size=8, test_n=16, val_n=16, eval_every=1)
    run = lora_fine_tune(**kw)
    assert not run.from_cache and run.test_n == 16 and run.history.eval_steps == [1, 2]
    assert run.lora_parameters == 6 * 2 * (384 + 384) and run.trainable == run.lora_parameters + 770
    assert run.optimizer_state_bytes == 2 * 4 * run.trainable  # two fp32 moments per trained number
    assert any(layer.lora_B.abs().sum() > 0 for layer in lora_layers(run.model).values())  # it trained
    again = lora_fine_tune(**kw)
    assert again.from_cache and again.test_accuracy == run.test_accuracy
    for (_, a), (_, b) in zip(lora_layers(run.model).items(), lora_layers(again.model).items()):
        assert torch.equal(a.lora_B, b.lora_B)
    assert torch.equal(run.model.classifier.weight, again.model.classifier.weight)
    with pytest.raises(ValueError, match="domain must be"):
        lora_fine_tune(domain="books")


def test_explorer_follows_its_controls(minilm):
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")
    from minilora.lora import lora_costs
    from minilora.widgets.lora import TARGET_SETS, LoRAExplorer

    model, _ = minilm
    runs = {("W_q, W_v", 8): (0.8, 400), ("W_q", 16): (0.7, 400)}
    ex = LoRAExplorer(model, runs, reference=("full FT", 22_713_986, 0.85, 1056), head_parameters=770,
                      draw=False)
    s = ex.state()
    assert s["lora_parameters"] == 73_728 and s["trainable"] == 74_498
    assert s["adamw_state_bytes"] == 8 * 74_498 and s["adapter_bytes"] == 4 * 74_498
    assert s["accuracy"] == 0.8 and s["se"] == pytest.approx((0.8 * 0.2 / 400) ** 0.5)
    assert "74,498" in ex.summary.value and "80.0 ± 2.0 %" in ex.summary.value
    ex.targets.value = "W_q"
    ex.rank.value = 16
    assert ex.state()["accuracy"] == 0.7 and ex.state()["lora_parameters"] == 73_728
    ex.rank.value = 64
    assert ex.state()["accuracy"] is None and "not trained" in ex.summary.value
    assert ex.state()["lora_parameters"] == 64 * 6 * 768
    ex.targets.value = "W_q, W_k, W_v, W_o"
    assert ex.state() | {} == lora_costs(model, TARGET_SETS["W_q, W_k, W_v, W_o"], 64, 770) | {
        "label": "W_q, W_k, W_v, W_o, r=64", "accuracy": None, "se": None, "n": None}
    assert len(ex.points()) == 3
    with pytest.raises(ValueError, match="r must be one of"):
        LoRAExplorer(model, runs, r=3, draw=False)
    drawn = LoRAExplorer(model, runs, draw=True)  # the figure path runs too
    assert drawn.plot is not None


def test_figures_return_figures():
    figs = [
        learning_curve_figure({"LoRA": ([10, 20], [0.6, 0.8], 300)}, reference=("full FT", 0.85, 300)),
        rank_sweep_figure([1, 2, 8], [0.7, 0.75, 0.8], 400, reference=("full FT", 0.85, 1056)),
        budget_figure([("a", 100, 0.7, 400), ("b", 10_000, 0.8, 400)], highlight="a"),
        subspace_similarity_figure({"W_q": np.random.rand(8, 64), "W_v": np.random.rand(8, 64)}),
        cross_domain_figure(np.full((4, 4), 0.8), list("mant"), list("mant"), [10, 20, 30, 40]),
    ]
    assert all(isinstance(f, Figure) and f.axes for f in figs)

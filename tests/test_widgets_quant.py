"""Quantisation figures and explorers (minilora.viz.quant, minilora.widgets.quant), driven by .value."""

from __future__ import annotations

import copy

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from minilora.quant import dequantize, fp4_levels, int4_levels, nf4_levels, quantize_blockwise
from minilora.quant.analysis import (
    block_normalised,
    error_table,
    excess_kurtosis,
    gaussian_block_normalised,
    kurtosis_se,
    linear_weights,
    logit_kl,
    mean_and_se,
    simulate_quantization,
    weight_error,
)
from minilora.viz.quant import (
    bits_error_figure,
    construction_figure,
    error_bars_figure,
    levels_figure,
    normality_figure,
    quant_histogram_figure,
)

matplotlib.use("Agg")
TABLES = {"NF4": nf4_levels(), "FP4": fp4_levels(), "INT4": int4_levels()}


@pytest.fixture
def weights():
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # StudentT draws from the global generator
        heavy = torch.distributions.StudentT(3.0).sample((96, 64)) * 0.05
    return {"a.query": torch.randn(64, 96, generator=g) * 0.05, "b.dense": heavy}


def test_weight_error_and_table(weights):
    e = weight_error(weights["a.query"], nf4_levels())
    assert 0 < e["rel"] < 0.15 and e["bits"] == 4.5 and e["bytes"] == 64 * 96 // 2 + 4 * 96
    table = error_table(weights, TABLES)
    assert set(table) == set(weights) and set(table["a.query"]) == set(TABLES)
    # Gaussian weights: NF4 has the lowest error of the three 4-bit types
    row = table["a.query"]
    assert row["NF4"]["mse"] < row["FP4"]["mse"] and row["NF4"]["mse"] < row["INT4"]["mse"]


def test_normality_statistics(weights):
    assert abs(excess_kurtosis(weights["a.query"])) < 5 * kurtosis_se(64 * 96)
    assert excess_kurtosis(weights["b.dense"]) > 5 * kurtosis_se(64 * 96)  # Student t(3): heavy tails
    v = block_normalised(weights["a.query"])
    assert v.numel() == 64 * 96 and float(v.abs().max()) == 1.0
    assert gaussian_block_normalised(10).numel() == 640


def test_simulated_quantization_changes_only_linear_weights():
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(64, 32))
    model.add_module("classifier", torch.nn.Linear(32, 2))
    before = copy.deepcopy(model)
    names = simulate_quantization(model, nf4_levels())
    assert names == ["body"] and list(linear_weights(model)) == ["body"]
    ref = dequantize(quantize_blockwise(before.body.weight.detach(), nf4_levels()))
    assert torch.equal(model.body.weight, ref) and torch.equal(model.body.bias, before.body.bias)
    assert torch.equal(model.classifier.weight, before.classifier.weight)


def test_logit_kl():
    a = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    assert torch.allclose(logit_kl(a, a), torch.zeros(2).double(), atol=1e-12)
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.softmax(a[0].double(), -1)
    assert torch.isclose(logit_kl(a, b)[0], (p * (p.log() - torch.tensor(0.5).double().log())).sum())
    m, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0]))
    assert m == 2.0 and abs(se - 1 / 3**0.5) < 1e-12


def test_figures(weights):
    w = weights["a.query"]
    q = dequantize(quantize_blockwise(w, nf4_levels()))
    table = error_table(weights, TABLES)
    figs = [normality_figure(weights, gaussian_block_normalised(50)),
            construction_figure(nf4_levels(), 0.9677083),
            levels_figure(TABLES), error_bars_figure(table, {"q": ["a.query"], "d": ["b.dense"]}),
            quant_histogram_figure(w, q, nf4_levels(), 64, "t"),
            bits_error_figure([{"bits": 4.5, "rel": 0.1, "label": "a"},
                               {"bits": 4.1, "rel": 0.11, "label": "b"}], {"bits": 4.2, "rel": 0.1})]
    assert all(isinstance(f, Figure) for f in figs)


def test_quant_explorer_driven_by_value(weights):
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")
    from minilora.quant import quant_summary
    from minilora.widgets.quant import QuantExplorer

    ex = QuantExplorer(weights, TABLES, draw=False)
    first = ex.summary
    assert first == quant_summary(weights["a.query"], TABLES["NF4"], 64) and first["blocks"] == 96
    ex.dtype.value = "INT4"
    assert ex.summary["rel"] > first["rel"] and "relative error" in ex.text.value
    ex.blocksize.value = 32
    assert ex.summary["bits"] == 4 + 32 / 32 and ex.summary["blocks"] == 192
    ex.matrix.value = "b.dense"
    assert ex.summary == quant_summary(weights["b.dense"], TABLES["INT4"], 32)
    assert isinstance(ex.figure(), Figure)


def test_double_quant_explorer_driven_by_value(weights):
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")
    from minilora.quant import double_quant_point
    from minilora.widgets.quant import DoubleQuantExplorer

    ex = DoubleQuantExplorer(weights, nf4_levels(), draw=False)
    with_dq = ex.summary
    assert with_dq == double_quant_point(weights, nf4_levels(), 64, 256)
    ex.double_blocksize.value = None
    # 8-bit constants move the error by well under 1 % (either way: a rounded absmax can help a block)
    assert ex.summary["bits"] == 4.5 and with_dq["bits"] < 4.5
    moved = abs(ex.summary["rel"] - with_dq["rel"])
    assert 0 < moved < 0.01 * with_dq["rel"]
    ex.double_blocksize.value = 256
    ex.double_levels.value = "fp8_e4m3"
    assert ex.summary["bits"] == with_dq["bits"] and ex.summary["rel"] != with_dq["rel"]
    ex.blocksize.value = 128
    assert ex.summary["bits"] < with_dq["bits"]

"""minilora.quant.analysis: weight errors and their table, normality statistics, simulated
quantisation of a model, KL between logits."""

from __future__ import annotations

import copy

import pytest
import torch

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

TABLES = {"NF4": nf4_levels(), "FP4": fp4_levels(), "INT4": int4_levels()}


# --- weight errors --------------------------------------------------------------------------------

def test_weight_error_reports_error_bits_and_bytes(quant_weights):
    e = weight_error(quant_weights["a.query"], nf4_levels())
    assert 0 < e["rel"] < 0.15 and e["bits"] == 4.5 and e["bytes"] == 64 * 96 // 2 + 4 * 96


def test_error_table_has_one_row_per_matrix_and_one_column_per_table(quant_weights):
    table = error_table(quant_weights, TABLES)
    assert set(table) == set(quant_weights) and set(table["a.query"]) == set(TABLES)


def test_nf4_has_the_lowest_error_on_gaussian_weights(quant_weights):
    # Gaussian weights: NF4 has the lowest error of the three 4-bit types
    row = error_table(quant_weights, TABLES)["a.query"]
    assert row["NF4"]["mse"] < row["FP4"]["mse"] and row["NF4"]["mse"] < row["INT4"]["mse"]


# --- normality ------------------------------------------------------------------------------------

def test_gaussian_weights_have_no_excess_kurtosis(quant_weights):
    assert abs(excess_kurtosis(quant_weights["a.query"])) < 5 * kurtosis_se(64 * 96)


def test_student_t_weights_have_heavy_tails(quant_weights):
    assert excess_kurtosis(quant_weights["b.dense"]) > 5 * kurtosis_se(64 * 96)  # Student t(3): heavy tails


def test_block_normalised_scales_each_block_to_absmax_one(quant_weights):
    v = block_normalised(quant_weights["a.query"])
    assert v.numel() == 64 * 96 and float(v.abs().max()) == 1.0


def test_gaussian_block_normalised_has_n_blocks_of_64():
    assert gaussian_block_normalised(10).numel() == 640


# --- simulated quantisation ----------------------------------------------------------------------------

@pytest.fixture
def simulated():
    """(model, its copy before, names) after simulate_quantization of a body + classifier model."""
    model = torch.nn.Sequential()
    model.add_module("body", torch.nn.Linear(64, 32))
    model.add_module("classifier", torch.nn.Linear(32, 2))
    before = copy.deepcopy(model)
    return model, before, simulate_quantization(model, nf4_levels())


def test_simulated_quantization_skips_the_classifier(simulated):
    model, _, names = simulated
    assert names == ["body"] and list(linear_weights(model)) == ["body"]


def test_simulated_quantization_writes_the_dequantised_weight(simulated):
    model, before, _ = simulated
    ref = dequantize(quantize_blockwise(before.body.weight.detach(), nf4_levels()))
    assert torch.equal(model.body.weight, ref) and torch.equal(model.body.bias, before.body.bias)


def test_simulated_quantization_leaves_the_classifier_unchanged(simulated):
    model, before, _ = simulated
    assert torch.equal(model.classifier.weight, before.classifier.weight)


# --- KL between logits, mean and SE ------------------------------------------------------------

def test_logit_kl_of_equal_logits_is_zero():
    a = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    assert torch.allclose(logit_kl(a, a), torch.zeros(2).double(), atol=1e-12)


def test_logit_kl_by_hand():
    a = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.softmax(a[0].double(), -1)
    assert torch.isclose(logit_kl(a, b)[0], (p * (p.log() - torch.tensor(0.5).double().log())).sum())


def test_mean_and_se_by_hand():
    m, se = mean_and_se(torch.tensor([1.0, 2.0, 3.0]))
    assert m == 2.0 and abs(se - 1 / 3**0.5) < 1e-12

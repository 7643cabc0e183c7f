"""minilora.widgets.quant: the quantisation explorers, driven by setting .value on their controls."""

from __future__ import annotations

import matplotlib
import pytest
from matplotlib.figure import Figure

from minilora.quant import fp4_levels, int4_levels, nf4_levels

matplotlib.use("Agg")
pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.quant import double_quant_point, quant_summary  # noqa: E402
from minilora.widgets.quant import DoubleQuantExplorer, QuantExplorer  # noqa: E402

TABLES = {"NF4": nf4_levels(), "FP4": fp4_levels(), "INT4": int4_levels()}


def quant_explorer_after(weights, n_steps):
    """A QuantExplorer and its first summary, after the first ``n_steps`` of: dtype INT4,
    blocksize 32, matrix b.dense."""
    ex = QuantExplorer(weights, TABLES, draw=False)
    first = ex.summary
    for control, value in [("dtype", "INT4"), ("blocksize", 32), ("matrix", "b.dense")][:n_steps]:
        getattr(ex, control).value = value
    return ex, first


def test_quant_explorer_starts_at_nf4_on_the_first_matrix(quant_weights):
    _, first = quant_explorer_after(quant_weights, 0)
    assert first == quant_summary(quant_weights["a.query"], TABLES["NF4"], 64) and first["blocks"] == 96


def test_quant_explorer_int4_has_a_larger_error_and_says_so(quant_weights):
    ex, first = quant_explorer_after(quant_weights, 1)
    assert ex.summary["rel"] > first["rel"] and "relative error" in ex.text.value


def test_quant_explorer_smaller_blocks_cost_more_bits(quant_weights):
    ex, _ = quant_explorer_after(quant_weights, 2)
    assert ex.summary["bits"] == 4 + 32 / 32 and ex.summary["blocks"] == 192


def test_quant_explorer_follows_its_matrix_control(quant_weights):
    ex, _ = quant_explorer_after(quant_weights, 3)
    assert ex.summary == quant_summary(quant_weights["b.dense"], TABLES["INT4"], 32)


def test_quant_explorer_draws_a_figure(quant_weights):
    ex, _ = quant_explorer_after(quant_weights, 3)
    assert isinstance(ex.figure(), Figure)


def double_quant_explorer_after(weights, n_steps):
    """A DoubleQuantExplorer and its first summary (with double quantisation), after the first
    ``n_steps`` of: no double quantisation, back to 256, fp8 levels, blocksize 128."""
    ex = DoubleQuantExplorer(weights, nf4_levels(), draw=False)
    with_dq = ex.summary
    steps = [("double_blocksize", "off"), ("double_blocksize", 256), ("double_levels", "fp8_e4m3"),
             ("blocksize", 128)]
    for control, value in steps[:n_steps]:
        getattr(ex, control).value = value
    return ex, with_dq


def test_double_quant_explorer_starts_at_double_quant_point(quant_weights):
    _, with_dq = double_quant_explorer_after(quant_weights, 0)
    assert with_dq == double_quant_point(quant_weights, nf4_levels(), 64, 256)


def test_without_double_quant_the_constants_cost_half_a_bit(quant_weights):
    ex, with_dq = double_quant_explorer_after(quant_weights, 1)
    assert ex.summary["bits"] == 4.5 and with_dq["bits"] < 4.5


def test_double_quant_moves_the_error_by_under_one_percent(quant_weights):
    ex, with_dq = double_quant_explorer_after(quant_weights, 1)
    # 8-bit constants move the error by well under 1 % (either way: a rounded absmax can help a block)
    moved = abs(ex.summary["rel"] - with_dq["rel"])
    assert 0 < moved < 0.01 * with_dq["rel"]


def test_fp8_constants_cost_the_same_bits_with_another_error(quant_weights):
    ex, with_dq = double_quant_explorer_after(quant_weights, 3)
    assert ex.summary["bits"] == with_dq["bits"] and ex.summary["rel"] != with_dq["rel"]


def test_larger_blocks_cost_fewer_bits(quant_weights):
    ex, with_dq = double_quant_explorer_after(quant_weights, 4)
    assert ex.summary["bits"] < with_dq["bits"]


def test_second_level_off_keeps_a_selection(quant_weights):
    # ipywidgets treats an option value of None as "nothing selected": the dropdown went blank
    ex, _ = double_quant_explorer_after(quant_weights, 1)
    assert ex.double_blocksize.index == 0 and ex.double_blocksize.label == "off (fp32)"
    assert ex.summary == double_quant_point(quant_weights, nf4_levels(), 64, None)


def test_double_quant_explorer_can_start_without_a_second_level(quant_weights):
    ex = DoubleQuantExplorer(quant_weights, nf4_levels(), double_blocksize=None, draw=False)
    assert ex.double_blocksize.label == "off (fp32)" and ex.summary["bits"] == 4.5


def test_matrix_labels_are_short_and_the_values_stay_the_module_names():
    names = [f"bert.encoder.layer.{i}.{part}" for i in (0, 5) for part in (
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense")]
    import torch

    ex = QuantExplorer({n: torch.randn(8, 64) for n in names}, TABLES, draw=False)
    labels = [label for label, _ in ex.matrix.options]
    assert labels[:6] == ["L0 query", "L0 key", "L0 value", "L0 attn out", "L0 FFN in", "L0 FFN out"]
    assert max(map(len, labels)) <= 12 and len(set(labels)) == len(labels)
    ex.matrix.value = "bert.encoder.layer.5.intermediate.dense"
    assert ex.matrix.label == "L5 FFN in" and ex.summary["blocks"] == 8


def test_matrix_names_that_do_not_shorten_apart_are_kept_whole(quant_weights):
    ex = QuantExplorer(quant_weights, TABLES, draw=False)
    assert [label for label, _ in ex.matrix.options] == ["a.query", "b.dense"]

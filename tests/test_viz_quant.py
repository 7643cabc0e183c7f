"""minilora.viz.quant: the quantisation figures."""

from __future__ import annotations

import matplotlib
import pytest
from matplotlib.figure import Figure

from minilora.quant import dequantize, fp4_levels, int4_levels, nf4_levels, quantize_blockwise
from minilora.quant.analysis import error_table, gaussian_block_normalised
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

FIGURES = {
    "normality_figure": lambda w: normality_figure(w, gaussian_block_normalised(50)),
    "construction_figure": lambda w: construction_figure(nf4_levels(), 0.9677083),
    "levels_figure": lambda w: levels_figure(TABLES),
    "error_bars_figure": lambda w: error_bars_figure(error_table(w, TABLES),
                                                     {"q": ["a.query"], "d": ["b.dense"]}),
    "quant_histogram_figure": lambda w: quant_histogram_figure(
        w["a.query"], dequantize(quantize_blockwise(w["a.query"], nf4_levels())), nf4_levels(), 64, "t"),
    "bits_error_figure": lambda w: bits_error_figure([{"bits": 4.5, "rel": 0.1, "label": "a"},
                                                      {"bits": 4.1, "rel": 0.11, "label": "b"}],
                                                     {"bits": 4.2, "rel": 0.1}),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_quant_figure_returns_a_figure(quant_weights, name):
    assert isinstance(FIGURES[name](quant_weights), Figure)


def test_bits_error_labels_of_two_series_at_the_same_point_do_not_overlap():
    # 05's curve: at blocksize 4096 fp32 constants (4.0078 bits) and double-quantised (4.0020 bits)
    # have almost the same error, so their two "4096" labels used to print on top of each other
    pts = [{"bits": 4 + 32 / b, "rel": 0.1 + 0.4 / b, "label": str(b), "series": "fp32 constants"}
           for b in (64, 4096)]
    pts += [{"bits": 4 + 8 / b + 32 / (256 * b), "rel": 0.1 + 0.4 / b + 1e-6, "label": str(b),
             "series": "double-quantised"} for b in (64, 4096)]
    fig = bits_error_figure(pts)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = {(t.get_text(), t.get_color()): t.get_window_extent(renderer) for t in fig.axes[0].texts}
    fours = [box for (text, _), box in boxes.items() if text == "4096"]
    assert len(fours) == 2 and not fours[0].overlaps(fours[1])


@pytest.mark.parametrize("double_quant", [False, True])
def test_blockwise_layout_parts_are_the_stored_bytes(double_quant):
    import torch

    from minilora.viz.quant import blockwise_layout_diagram, storage_parts

    q = quantize_blockwise(torch.randn(96, 512, generator=torch.Generator().manual_seed(0)), nf4_levels(), 64,
                           double_quant=double_quant)
    parts = storage_parts(q)
    assert sum(parts.values()) == q.nbytes
    # 49,152 weights: 24,576 B of codes; 768 constants: 4 B each, or 1 B each + 3 scales of 256 + 1 offset
    assert parts == ({"4-bit codes": 24576, "absmax, 8-bit codes": 768, "2nd-level scales (fp32)": 12,
                      "offset (fp32)": 4} if double_quant else {"4-bit codes": 24576, "absmax (fp32)": 3072})
    fig = blockwise_layout_diagram(q)
    bars = [p.get_width() for p in fig.axes[1].patches]
    assert sum(bars) == pytest.approx(8 * q.nbytes / q.numel()) and len(bars) == len(parts)


def test_blockwise_layout_rejects_too_many_blocks(quant_weights):
    from minilora.viz.quant import blockwise_layout_diagram

    with pytest.raises(ValueError, match="shown_blocks"):
        blockwise_layout_diagram(quantize_blockwise(quant_weights["a.query"], nf4_levels()), shown_blocks=20)

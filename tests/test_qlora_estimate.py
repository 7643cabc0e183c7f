"""minilora.qlora.estimate (the memory calculator) and its panel, minilora.widgets.MemoryCalculator."""

from __future__ import annotations

import pytest

from minilora.memory import finetune_memory
from minilora.qlora import calculator_memory


def test_the_papers_65b_numbers():
    """QLoRA §1: > 780 GB for full 16-bit fine-tuning of LLaMA-65B, < 48 GB with QLoRA."""
    assert calculator_memory("65B", "full")["total_gb"] > 780
    q = calculator_memory("65B", "qlora")
    assert q["total_gb"] < 48 and q["fits_gb"] == 48


def test_agrees_with_minilora_memory_for_the_defaults():
    for method in ("full", "lora", "qlora"):
        ours, theirs = calculator_memory("13B", method), finetune_memory("13B", method)
        assert ours["total"] == pytest.approx(theirs["total"], rel=1e-12)


def test_knobs_move_the_parts_they_should():
    base = calculator_memory("7B", "qlora")
    no_dq = calculator_memory("7B", "qlora", double_quant=False)
    n_lin = base["parameters"] - (2 * 32000 * 4096 + 65 * 4096)
    # double quantisation saves 0.5 − 0.127 bits per block-matrix weight (QLoRA §3)
    assert no_dq["weights"] - base["weights"] == pytest.approx(n_lin * (0.5 - 8 / 64 - 32 / 16384) / 8)
    eight = calculator_memory("7B", "qlora", bits=8)
    assert eight["weights"] - base["weights"] == pytest.approx(n_lin * 4 / 8)
    paged = calculator_memory("7B", "qlora", paged=True)
    assert paged["optimizer states"] == 0 and paged["host (paged states)"] == base["optimizer states"]
    assert calculator_memory("7B", "qlora", r=8)["adapters"] == base["adapters"] / 8
    assert calculator_memory("7B", "qlora", checkpointing=False)["activations"] > base["activations"]


def test_minilm_preset_counts_bert_shapes():
    m = calculator_memory("MiniLM", "lora", r=8)
    assert m["trainable"] == 6 * 8 * (4 * (384 + 384) + 2 * (384 + 1536))
    assert m["parameters"] == 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 2 * 30522 * 384 + 13 * 384


@pytest.mark.parametrize("kwargs", [dict(model="70B"), dict(method="qora"), dict(bits=3), dict(r=0),
                                    dict(double_quant=1), dict(paged="no"), dict(batch=0)])
def test_bad_arguments_name_the_parameter(kwargs):
    with pytest.raises((ValueError, TypeError), match=next(iter(kwargs))):
        calculator_memory(**kwargs)


def test_calculator_panel_follows_its_controls():
    pytest.importorskip("ipywidgets")
    from minilora.widgets import MemoryCalculator

    panel = MemoryCalculator(draw=False)
    assert panel.summary["fits_gb"] == 48
    panel.method.value = "full"
    assert panel.summary["fits_gb"] is None and "does not fit" in panel.text.value
    panel.model.value, panel.method.value = "MiniLM", "qlora"
    assert panel.summary["total_gb"] < 1 and panel.summary["model"] == "MiniLM-L6"
    panel.paged.value = True
    assert panel.summary["optimizer states"] == 0


def test_calculator_rank_slider_has_doubling_stops_a_mouse_can_pick():
    pytest.importorskip("ipywidgets")
    from minilora.widgets import MemoryCalculator

    panel = MemoryCalculator(r=24, draw=False)
    assert list(panel.r.options) == [1, 2, 4, 8, 16, 24, 32, 64, 128, 256]
    before = panel.summary["total_gb"]
    panel.r.value = 256
    assert panel.summary["total_gb"] > before   # more adapter weights, gradients and states

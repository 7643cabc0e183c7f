"""minilora.widgets.memory: the memory explorer, driven by setting .value on its controls."""

import pytest

pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.memory import memory_summary  # noqa: E402
from minilora.widgets.memory import MemoryExplorer  # noqa: E402

# the controls set one after another in notebook 06's order: each test replays the steps before its own
STEPS = [("seq_len", 4096), ("paged", True), ("method", "full"), ("model", "7B"), ("method", "qlora")]


def explorer_after(n_steps):
    panel = MemoryExplorer(draw=False)
    first = panel.summary
    for control, value in STEPS[:n_steps]:
        getattr(panel, control).value = value
    return panel, first


def test_memory_explorer_starts_at_memory_summarys_defaults():
    _, first = explorer_after(0)
    assert first == memory_summary() and first["fits_gb"] == 48


def test_a_longer_sequence_needs_more_activation_memory():
    panel, first = explorer_after(1)
    assert panel.summary["activations"] > first["activations"]


def test_paging_moves_the_optimizer_states_to_the_host():
    panel, _ = explorer_after(2)
    assert panel.summary["optimizer states"] == 0 and panel.summary["host_gb"] > 0


def test_full_finetune_of_65b_fits_no_gpu_and_says_so():
    panel, _ = explorer_after(3)
    assert panel.summary["fits_gb"] is None and "does not fit" in panel.text.value


def test_qlora_on_7b_fits_a_24_gb_gpu():
    panel, _ = explorer_after(5)
    assert panel.summary["fits_gb"] == 24

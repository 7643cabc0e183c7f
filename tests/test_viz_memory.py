"""minilora.viz.memory: the memory timeline and paper-scale memory stack figures."""

import pytest

pytest.importorskip("matplotlib")

from minilora.memory.estimate import finetune_memory  # noqa: E402
from minilora.memory.measured import measure_step, step_timeline  # noqa: E402
from minilora.viz.memory import memory_stack_figure, timeline_figure  # noqa: E402


def test_timeline_figure_draws_one_panel_per_timeline(training_bert, bert_batch):
    m = measure_step(training_bert(), bert_batch(4))
    fig = timeline_figure({"AdamW": step_timeline(m), "PagedAdamW": step_timeline(m, paged=True)})
    assert len(fig.axes) == 2


def test_memory_stack_figure_draws_one_panel():
    fig = memory_stack_figure({k: finetune_memory("65B", k) for k in ("full", "qlora")})
    assert len(fig.axes) == 1


def test_timeline_figure_rejects_no_timelines():
    with pytest.raises(ValueError):
        timeline_figure({})

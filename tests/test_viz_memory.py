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


def _patches_by_colour(ax):
    from collections import Counter

    from matplotlib.colors import to_hex

    return Counter(to_hex(p.get_facecolor()) for p in ax.patches if p.get_facecolor()[3] > 0)


def test_paging_diagram_moves_the_states_between_device_and_host():
    from minilora.viz.memory import COLOURS, paging_diagram

    fig = paging_diagram(weight_bytes=80e6, state_bytes=160e6, activation_bytes=300e6, max_squares=38)
    out, spike, update = fig.axes[:3]
    states, acts = COLOURS["optimizer states"], COLOURS["activations"]
    # one square = max(W + A, W + S) / 38 = 10 MB: 16 squares of states, 30 of activations
    assert _patches_by_colour(out)[states] == 16 and _patches_by_colour(spike)[acts] == 30
    assert _patches_by_colour(update)[states] == 16 and acts not in _patches_by_colour(update)
    # states sit on the host (right box) during the spike, on the device (left box) for the update
    def side(ax):
        return {p.get_x() > 10 for p in ax.patches if p.get_facecolor()[:3] == matplotlib_rgb(states)}
    assert side(spike) == {True} and side(update) == {False}


def matplotlib_rgb(colour):
    from matplotlib.colors import to_rgb

    return to_rgb(colour)


@pytest.mark.parametrize("kwargs", [dict(state_bytes=0), dict(activation_bytes=float("nan")),
                                    dict(weight_bytes=True), dict(max_squares=2)])
def test_paging_diagram_rejects_bad_sizes(kwargs):
    from minilora.viz.memory import paging_diagram

    args = dict(weight_bytes=1e6, state_bytes=2e6, activation_bytes=3e6) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        paging_diagram(**args)

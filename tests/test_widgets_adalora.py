"""minilora.widgets.adalora: the rank-budget explorer, driven by setting its slider's .value."""

from types import SimpleNamespace

import matplotlib
import pytest

matplotlib.use("Agg")
pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets (the notebooks extra)")

from minilora.widgets import RankBudgetExplorer  # noqa: E402

NAMES = tuple(
    f"bert.encoder.layer.{i}.{p}" for i in range(2) for p in ("attention.self.query", "output.dense")
)
HISTORY = ((4, 4, 4, 4), (3, 4, 2, 4), (1, 4, 0, 3))


def fake_run():
    def kept_at(step):
        i = max(k for k, s in enumerate((0, 2, 4)) if s <= step)
        return dict(zip(NAMES, HISTORY[i]))

    return SimpleNamespace(rank_steps=(0, 2, 4), budget=(16, 13, 10, 8), kept_at=kept_at)


def test_explorer_starts_at_the_last_recorded_step():
    ex = RankBudgetExplorer(fake_run(), init_r=4, draw=False)
    assert ex.state["step"] == 4 and ex.state["kept"] == 8 and ex.state["budget"] == 8


def test_explorer_follows_its_step_slider():
    ex = RankBudgetExplorer(fake_run(), init_r=4, draw=False)
    ex.step.value = 2
    assert ex.state["kept"] == 13 and ex.state["grid"].ranks.tolist() == [[3, 4], [2, 4]]
    assert "budget 13" in ex.summary.value


def test_explorer_draws_its_figure_on_every_move():
    ex = RankBudgetExplorer(fake_run(), init_r=4)  # the figure path runs too
    ex.step.value = 0
    assert ex.state["budget"] == 16 and ex.state["kept"] == 16


def test_explorer_refuses_a_step_that_was_not_recorded():
    with pytest.raises(ValueError, match="step"):
        RankBudgetExplorer(fake_run(), init_r=4, step=3, draw=False)

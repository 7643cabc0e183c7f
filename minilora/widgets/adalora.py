"""Notebook 03's rank-budget explorer: slide over the training steps of an AdaLoRA run and see
which layer × matrix keeps how many ranks, beside the budget curve with the step marked.

The kept ranks come from the run's record (``minilora.course.adalora_fine_tune``) through
``minilora.adalora.rank_grid``; the figure from ``minilora.viz.rank_budget_figure``. Tests
drive the slider by setting ``.value``.
"""

from __future__ import annotations

from ..adalora import rank_grid


class RankBudgetExplorer:
    """A step slider over the recorded rank patterns of ``run`` (``rank_steps``, ``kept_at``,
    ``budget``) and the heatmap + budget figure of the selected step."""

    def __init__(self, run, init_r: int, step: int | None = None, draw: bool = True):
        import ipywidgets as w

        steps = list(getattr(run, "rank_steps", ()))
        if not steps or not getattr(run, "budget", ()):
            raise ValueError(
                "run must carry a rank record (rank_steps, rank_history, budget): "
                "use minilora.course.adalora_fine_tune"
            )
        if step is not None and step not in steps:
            raise ValueError(f"step must be one of the recorded steps {steps[0]}..{steps[-1]}, got {step!r}")
        self.run, self.init_r, self.draw = run, init_r, draw
        self.step = w.SelectionSlider(
            options=steps,
            value=steps[-1] if step is None else step,
            description="step",
            continuous_update=False,
        )
        self.summary = w.HTML()
        self.plot = w.Output()
        self.step.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([self.step, self.summary, self.plot])
        self.update()

    def update(self) -> dict:
        """The grid and budget at the selected step; refreshes the text and the figure."""
        step = self.step.value
        grid = rank_grid(self.run.kept_at(step))
        budget = self.run.budget[step - 1] if step >= 1 else sum(self.run.kept_at(0).values())
        by_type = grid.mean_by_type()
        self.state = {
            "step": step,
            "grid": grid,
            "budget": budget,
            "kept": int(grid.ranks.sum()),
            "by_type": by_type,
        }
        self.summary.value = (
            f"step {step}: budget {budget}, kept {self.state['kept']} triplets; mean kept rank "
            + ", ".join(f"{k} {v:.1f}" for k, v in by_type.items())
        )
        if self.draw:
            self._redraw(grid, step)
        return self.state

    def _redraw(self, grid, step):
        from IPython.display import display

        from ..viz import rank_budget_figure

        fig = rank_budget_figure(grid, self.run.budget, step, self.init_r)
        self.plot.clear_output(wait=True)
        with self.plot:
            display(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)

"""Notebook 02's explorer: pick the matrices LoRA adapts and the rank r, and see what it costs
(trainable parameters, AdamW state, adapter file) and, if the notebook trained that
configuration, the test accuracy it reached, on the accuracy-vs-parameters figure.

The costs come from ``minilora.lora.lora_costs``, the figure from ``minilora.viz``; tests
drive the controls by setting ``.value``. Accuracies are never computed here, only looked
up in ``runs``.
"""

from __future__ import annotations

from ..checks import check_choice
from ..lora import lora_costs
from ..stats import binomial_se

# the paper's Table 5 choices: W_o is the attention output projection
TARGET_SETS = {
    "W_q": ("query",),
    "W_v": ("value",),
    "W_q, W_v": ("query", "value"),
    "W_q, W_k, W_v, W_o": ("query", "key", "value", "attention.output.dense"),
}
RANKS = (1, 2, 4, 8, 16, 32, 64)


class LoRAExplorer:
    """Targets dropdown and rank selector → costs, and the measured accuracy when there is one.

    ``model``: the (base or adapted) model whose shapes are counted; ``runs`` maps
    ``(target-set label, r)`` to ``(accuracy, n)`` measured in the notebook; ``reference``
    is ``(label, trainable, accuracy, n)`` for a run on another budget or other rows (full
    fine-tuning, say): drawn as a labelled line, never as one of the compared points.
    """

    def __init__(self, model, runs: dict, reference=None, head_parameters=0, targets="W_q, W_v", r=8,
                 draw=True):
        import ipywidgets as w

        if targets not in TARGET_SETS:
            raise ValueError(f"targets must be one of {list(TARGET_SETS)}, got {targets!r}")
        check_choice(r, "r", RANKS)
        if not isinstance(runs, dict):
            raise TypeError("runs must be a dict of (targets label, r) → (accuracy, n), "
                            f"got {type(runs).__name__}")
        for key, value in runs.items():
            pair = isinstance(key, tuple) and len(key) == 2
            if not (pair and isinstance(value, tuple) and len(value) == 2):
                raise ValueError(f"runs must map (targets label, r) → (accuracy, n), got {key!r}: {value!r}")
        if reference is not None and not (isinstance(reference, tuple) and len(reference) == 4):
            raise ValueError("reference must be (label, trainable, accuracy, n) or None")
        self.model, self.runs, self.reference = model, dict(runs), reference
        self.head_parameters, self.draw = head_parameters, draw
        self.targets = w.Dropdown(options=list(TARGET_SETS), value=targets, description="adapt")
        self.rank = w.SelectionSlider(options=RANKS, value=r, description="rank r", continuous_update=False)
        self.summary = w.HTML()
        self.plot = w.Output()
        for control in (self.targets, self.rank):
            control.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.targets, self.rank]), self.summary, self.plot])
        self.update()

    def state(self) -> dict:
        """Costs of the current choice, plus ``accuracy``/``se``/``n`` (None if not trained here)."""
        label, r = self.targets.value, self.rank.value
        out = lora_costs(self.model, TARGET_SETS[label], r, self.head_parameters)
        out.update(label=f"{label}, r={r}", accuracy=None, se=None, n=None)
        if (label, r) in self.runs:
            acc, n = self.runs[label, r]
            out.update(accuracy=acc, se=binomial_se(acc, n), n=n)
        return out

    def points(self):
        """``(label, trainable, accuracy, n)`` for every measured run (for ``budget_figure``);
        the reference is not one of them (``reference_line``)."""
        return [(f"{label}, r={r}",
                 lora_costs(self.model, TARGET_SETS[label], r, self.head_parameters)["trainable"], acc, n)
                for (label, r), (acc, n) in self.runs.items()]

    def reference_line(self):
        """``(label, accuracy)`` of the reference for ``budget_figure(reference=...)``, or None."""
        if self.reference is None:
            return None
        label, trainable, acc, n = self.reference
        return f"{label}: {100 * acc:.1f} % ({trainable:,} trainable, n = {n})", acc

    def update(self) -> None:
        s = self.state()
        acc = ("not trained in this notebook" if s["accuracy"] is None
               else f"{100 * s['accuracy']:.1f} ± {100 * s['se']:.1f} % (n = {s['n']})")
        self.summary.value = (
            f"trainable <b>{s['trainable']:,}</b> ({100 * s['share']:.2f} % of the model; LoRA "
            f"{s['lora_parameters']:,}) · AdamW state {s['adamw_state_bytes'] / 2**10:,.0f} KiB · "
            f"adapter file {s['adapter_bytes'] / 2**10:,.0f} KiB · test accuracy: {acc}")
        if self.draw:
            from IPython.display import display

            from ..viz import budget_figure

            self.plot.clear_output(wait=True)
            with self.plot:
                display(budget_figure(self.points(), highlight=s["label"], reference=self.reference_line()))

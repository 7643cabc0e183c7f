"""Notebook 01's explorer: pick a layer and a matrix, slide the rank r, and see the spectrum
of that ΔW with the cut, the reconstruction error ‖ΔW − ΔW_r‖_F/‖ΔW‖_F (Eckart–Young), and
the test accuracy with the truncation applied to that matrix only or to all of them.

The numbers come from ``minilora.rank`` (``truncation_summary``, ``truncation_accuracy``),
the figure from ``minilora.viz``; tests drive the controls by setting ``.value``. Accuracies
are measured on demand on the data given (a test subset keeps it interactive) and
memoised; precomputed full-test numbers can be passed in ``known``.
"""

from __future__ import annotations

from ..checks import check_choice, check_int
from ..rank import matrix_label, truncation_accuracy, truncation_summary
from ..stats import binomial_se

SCOPES = (("this matrix only", "one"), ("all matrices", "all"))


def rank_options(full_rank: int) -> list[tuple[str, int]]:
    """The ranks worth a slider stop: 0, 1, 2, 4, 8, ... below ``full_rank``, then full rank
    itself, labelled "full (n)" — a doubling scale, as the spectra are read on log axes."""
    full_rank = check_int(full_rank, "full_rank", 1)
    stops, r = [0], 1
    while r < full_rank:
        stops.append(r)
        r *= 2
    return [(str(v), v) for v in stops] + [(f"full ({full_rank})", full_rank)]


class RankExplorer:
    """Layer and matrix dropdowns, a rank slider (0, 1, 2, 4, ..., full) and a scope toggle over
    the SVDs of ΔW.

    ``model`` holds the fine-tuned weights the ``factors`` (``minilora.rank.decompose``)
    belong to; ``data`` (Encoded) is what accuracies are measured on; ``known`` maps
    ``("all", r)`` or ``("one", name, r)`` to a precomputed ``(accuracy, n)``;
    ``random_spectra`` maps a matrix type to the spectrum of noise of the same shape and norm.
    """

    def __init__(self, model, factors: dict, data, known=None, random_spectra=None, layer=None,
                 matrix=None, r=8, draw=True):
        import ipywidgets as w

        if not factors:
            raise ValueError("factors is empty: pass minilora.rank.decompose(weight_deltas(...))")
        self.model, self.factors, self.data = model, factors, data
        self.random_spectra = random_spectra or {}
        self.names = {matrix_label(n): n for n in factors}
        layers = sorted({layer for layer, _ in self.names})
        types = list(dict.fromkeys(t for _, t in self.names))
        if layer is not None:
            check_choice(layer, "layer", layers)
        if matrix is not None:
            check_choice(matrix, "matrix", types)
        if not hasattr(data, "labels"):
            raise TypeError(f"data must be an Encoded (minilora.data.encode), got {type(data).__name__}")
        self.measured = dict(known or {})
        self.draw = draw
        self.layer = w.Dropdown(options=layers, value=layers[-1] if layer is None else layer,
                                description="layer")
        self.matrix = w.Dropdown(options=types, value=types[0] if matrix is None else matrix,
                                 description="matrix")
        top = max(len(f[1]) for f in factors.values())
        options = rank_options(top)
        self.rank = w.SelectionSlider(options=options, value=max(v for _, v in options if v <= max(r, 0)),
                                      description="rank r", continuous_update=False)
        self.scope = w.ToggleButtons(options=SCOPES, value="one", description="truncate")
        self.summary = w.HTML()
        self.plot = w.Output()
        for control in (self.layer, self.matrix, self.rank, self.scope):
            control.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.layer, self.matrix]), self.rank, self.scope, self.summary,
                             self.plot])
        self.update()

    @property
    def name(self) -> str:
        """Module name of the selected matrix."""
        key = (self.layer.value, self.matrix.value)
        if key not in self.names:
            raise ValueError(f"no matrix {self.matrix.value!r} in layer {self.layer.value}")
        return self.names[key]

    def accuracy(self) -> tuple[float, int]:
        """(accuracy, n) at the current rank and scope; measured once, then memoised."""
        r, scope = self.rank.value, self.scope.value
        key = ("all", r) if scope == "all" else ("one", self.name, r)
        if key not in self.measured:
            names = None if scope == "all" else [self.name]
            self.measured[key] = (truncation_accuracy(self.model, self.factors, self.data, r, names),
                                  len(self.data))
        return self.measured[key]

    def update(self) -> dict:
        """Recompute the state for the current controls, refresh the text and the figure."""
        factors = self.factors[self.name]
        self.state = dict(truncation_summary(factors[1], self.rank.value), name=self.name,
                          scope=self.scope.value)
        acc, n = self.accuracy()
        self.state.update(accuracy=acc, n=n, se=binomial_se(acc, n))
        scope = "this matrix only" if self.scope.value == "one" else "all matrices"
        text = (f"{self.name} (r = {self.state['r']} of {self.state['max_rank']}): keeps "
                f"{100 * self.state['kept_energy']:.1f} % of ‖ΔW‖², relative error "
                f"{self.state['relative_error']:.3f}; accuracy with {scope} truncated: "
                f"{100 * acc:.1f} ± {100 * self.state['se']:.1f} % (n = {n})")
        self.summary.value = text
        if self.draw:
            self._redraw(factors, f"{100 * acc:.1f} ± {100 * self.state['se']:.1f} % (n = {n})")
        return self.state

    def _redraw(self, factors, accuracy_text):
        from IPython.display import display

        from ..viz import truncation_figure

        fig = truncation_figure(factors[1], self.state["r"], self.random_spectra.get(self.matrix.value),
                                accuracy=accuracy_text,
                                title=f"layer {self.layer.value}, {self.matrix.value}")
        self.plot.clear_output(wait=True)
        with self.plot:
            display(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)


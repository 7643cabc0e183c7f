"""Explorers for notebooks 04 and 05.

* ``QuantExplorer``: pick a matrix, a data type and a blocksize → histogram of the block-
  normalised weights with the levels, the error of every block, and summary numbers.
* ``DoubleQuantExplorer``: pick the first- and second-level blocksizes and the 8-bit table
  for the constants → stored bits/param against weight error, on the curve of all choices.

The numbers come from ``minilora.quant`` (``quant_summary``, ``double_quant_point``) and the
figures from ``minilora.viz``; this file only wires controls to them. Tests drive the panels
by setting ``.value`` on the controls and reading ``.summary``.
"""

from __future__ import annotations

import re

from ..checks import check_choice
from ..quant import dequantize, double_quant_point, quant_summary, quantize_blockwise

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NO_SECOND_LEVEL = "off"     # the 2nd-level dropdown's value for fp32 constants (None would clear a Dropdown)

_ROLES = (("attention.self.query", "query"), ("attention.self.key", "key"), ("attention.self.value", "value"),
          ("attention.output.dense", "attn out"), ("intermediate.dense", "FFN in"),
          ("output.dense", "FFN out"))


def short_label(name: str) -> str:
    """A dropdown label short enough to show whole: ``bert.encoder.layer.0.intermediate.dense`` →
    ``L0 FFN in``, ``…layer.3.attention.self.query`` → ``L3 query``; other names are kept."""
    m = re.search(r"layer\.(\d+)\.(.+)$", name)
    if m:
        for suffix, role in _ROLES:
            if m.group(2) == suffix:
                return f"L{m.group(1)} {role}"
    return name


class QuantExplorer:
    """Matrix, data type and blocksize dropdowns over ``weights`` and ``tables``."""

    def __init__(self, weights: dict, tables: dict, matrix=None, dtype=None, blocksize=64, draw=True):
        import ipywidgets as w

        if not weights or not tables:
            raise ValueError("weights and tables must be non-empty dicts")
        self.weights, self.tables, self.draw = weights, tables, draw
        names, types = list(weights), list(tables)
        check_choice(matrix or names[0], "matrix", names)
        check_choice(dtype or types[0], "dtype", types)
        check_choice(blocksize, "blocksize", BLOCKSIZES)
        labels = [short_label(n) for n in names]
        if len(set(labels)) < len(labels):          # two names shorten alike: keep the full names
            labels = names
        self.matrix = w.Dropdown(options=list(zip(labels, names)), value=matrix or names[0],
                                 description="matrix")
        self.dtype = w.Dropdown(options=types, value=dtype or types[0], description="data type")
        self.blocksize = w.Dropdown(options=BLOCKSIZES, value=blocksize, description="blocksize")
        self.text = w.HTML()
        self.out = w.Output()
        for c in (self.matrix, self.dtype, self.blocksize):
            c.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.matrix, self.dtype, self.blocksize]), self.text, self.out])
        self.summary: dict = {}
        self.update()

    def figure(self):
        from ..viz import quant_histogram_figure

        w, levels = self.weights[self.matrix.value], self.tables[self.dtype.value]
        q = quantize_blockwise(w.detach(), levels, self.blocksize.value)
        title = f"{self.matrix.label} · {self.dtype.value} · blocks of {self.blocksize.value}"
        return quant_histogram_figure(w, dequantize(q), levels, self.blocksize.value, title)

    def update(self):
        w, levels = self.weights[self.matrix.value], self.tables[self.dtype.value]
        s = quant_summary(w, levels, self.blocksize.value)
        self.summary = s
        self.text.value = (f"relative error <b>{s['rel']:.4f}</b> · MSE {s['mse']:.3e} · max |error| "
                           f"{s['max_abs']:.4f} · {s['bits']:.3f} bits/param · {s['blocks']} blocks")
        if self.draw:
            from IPython.display import display

            self.out.clear_output(wait=True)
            with self.out:
                display(self.figure())

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)


class DoubleQuantExplorer:
    """First-/second-level blocksize and constant-table controls; a bits-vs-error point.

    ``double_blocksize=None`` (or the control's value ``"off"``) keeps the constants in fp32."""

    def __init__(self, weights: dict, levels, curve: list[dict] | None = None, blocksize=64,
                 double_blocksize=256, double_levels="dynamic", draw=True):
        import ipywidgets as w

        if not weights:
            raise ValueError("weights must be a non-empty dict")
        check_choice(blocksize, "blocksize", BLOCKSIZES)
        check_choice(double_blocksize, "double_blocksize", (None, *BLOCKSIZES))
        check_choice(double_levels, "double_levels", ("dynamic", "fp8_e4m3"))
        self.weights, self.levels, self.curve, self.draw = weights, levels, list(curve or []), draw
        self.blocksize = w.Dropdown(options=BLOCKSIZES, value=blocksize, description="blocksize")
        second = (("off (fp32)", NO_SECOND_LEVEL),) + tuple((str(b), b) for b in BLOCKSIZES)
        off = double_blocksize is None
        self.double_blocksize = w.Dropdown(options=second, description="2nd level",
                                           value=NO_SECOND_LEVEL if off else double_blocksize)
        self.double_levels = w.Dropdown(options=("dynamic", "fp8_e4m3"), value=double_levels,
                                        description="8-bit table")
        self.text = w.HTML()
        self.out = w.Output()
        for c in (self.blocksize, self.double_blocksize, self.double_levels):
            c.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.blocksize, self.double_blocksize, self.double_levels]),
                             self.text, self.out])
        self.summary: dict = {}
        self.update()

    def update(self):
        second = self.double_blocksize.value
        s = double_quant_point(self.weights, self.levels, self.blocksize.value,
                               None if second == NO_SECOND_LEVEL else second, self.double_levels.value)
        self.summary = s
        self.text.value = f"<b>{s['bits']:.4f}</b> bits/param · relative error <b>{s['rel']:.5f}</b>"
        if self.draw:
            from IPython.display import display

            from ..viz import bits_error_figure

            self.out.clear_output(wait=True)
            with self.out:
                display(bits_error_figure(self.curve, dict(s, label="current")))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)

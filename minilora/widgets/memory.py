"""Notebook 06's memory explorer: pick a LLaMA size, a fine-tuning method, the sequence
length and batch, gradient checkpointing and paging, and see what sits on the GPU.

The numbers come from ``minilora.memory.memory_summary`` (stated formula and
assumptions); the logic is a plain function, and the panel's controls are driven by tests
through ``.value``.
"""

from __future__ import annotations

from ..checks import check_choice, check_int
from ..memory import LLAMA, METHODS, memory_summary


class MemoryExplorer:
    """Dropdowns (model, method), sliders (sequence length, batch), two checkboxes
    (checkpointing, paged); ``.summary`` holds the latest ``memory_summary`` and ``.panel`` is
    the ipywidgets box. ``draw=False`` skips the figure (tests)."""

    def __init__(self, model="65B", method="qlora", seq_len=512, batch=1, checkpointing=True, paged=False,
                 draw=True):
        import ipywidgets as w

        self.draw = draw
        check_choice(model, "model", tuple(LLAMA))
        check_choice(method, "method", METHODS)
        check_int(seq_len, "seq_len", 128, 8192, " (the slider's range)")
        check_int(batch, "batch", 1, 64, " (the slider's range)")
        for name, value in (("checkpointing", checkpointing), ("paged", paged), ("draw", draw)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.model = w.Dropdown(options=list(LLAMA), value=model, description="LLaMA")
        self.method = w.Dropdown(options=list(METHODS), value=method, description="method")
        self.seq_len = w.IntSlider(value=seq_len, min=128, max=8192, step=128, description="seq len",
                                   continuous_update=False)
        self.batch = w.IntSlider(value=batch, min=1, max=64, description="batch", continuous_update=False)
        self.checkpointing = w.Checkbox(value=checkpointing, description="gradient checkpointing")
        self.paged = w.Checkbox(value=paged, description="page optimizer states to host")
        self.text = w.HTML()
        self.plot = w.Output()
        controls = (self.model, self.method, self.seq_len, self.batch, self.checkpointing, self.paged)
        for control in controls:
            control.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.model, self.method]), w.HBox([self.seq_len, self.batch]),
                             w.HBox([self.checkpointing, self.paged]), self.text, self.plot])
        self.update()

    def update(self) -> dict:
        """Recompute from the controls, refresh the text and (if drawing) the figure."""
        self.summary = memory_summary(self.model.value, self.method.value, self.seq_len.value,
                                      self.batch.value, self.checkpointing.value, self.paged.value)
        s = self.summary
        fits = f"fits a {s['fits_gb']} GB GPU" if s["fits_gb"] else "does not fit an 80 GB GPU"
        host = f", {s['host_gb']:,.1f} GB of optimizer states in host RAM" if s["host_gb"] else ""
        total = f"{s['total_gb']:,.1f} GB on the GPU ({fits}){host}"
        self.text.value = f"<b>{s['model']}, {s['method']}</b>: {total}"
        if self.draw:
            from IPython.display import display

            from ..viz import memory_stack_figure

            self.plot.clear_output(wait=True)
            with self.plot:
                display(memory_stack_figure({f"{s['model']} {s['method']}": s}))
        return s

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)


class MemoryCalculator:
    """Notebook 07's memory calculator: model preset (MiniLM, LLaMA 7B–65B), method (full 16-bit /
    LoRA / QLoRA), rank, bits, double quantisation, paging, batch, sequence length and
    checkpointing → stacked bars against 24 / 48 / 80 GB cards. Numbers from
    ``minilora.qlora.calculator_memory`` (computed), the figure from
    ``minilora.viz.calculator_figure``; ``.summary`` holds the latest numbers, ``.panel`` the
    box; tests set ``.value`` of the controls. ``draw=False`` skips the figure."""

    def __init__(self, model="65B", method="qlora", r=64, bits=4, double_quant=True, paged=False, batch=1,
                 seq_len=512, checkpointing=True, draw=True):
        import ipywidgets as w

        from ..qlora import BITS, PRESETS, calculator_memory

        # every argument checked by the function that computes with it
        calculator_memory(model, method, r, bits, double_quant, paged, batch, seq_len, checkpointing)
        check_int(r, "r", 1, 256, " (the slider's range)")
        check_int(seq_len, "seq_len", 128, 8192, " (the slider's range)")
        check_int(batch, "batch", 1, 64, " (the slider's range)")
        if not isinstance(draw, bool):
            raise TypeError(f"draw must be True or False, got {draw!r}")
        self.draw = draw
        self.model = w.Dropdown(options=list(PRESETS), value=model, description="model")
        self.method = w.Dropdown(options=list(METHODS), value=method, description="method")
        # doubling stops (1, 2, 4, ..., 256; plus the given r): 256 single steps would not fit a mouse
        self.r = w.SelectionSlider(options=sorted({2 ** k for k in range(9)} | {r}), value=r,
                                   description="rank r", continuous_update=False)
        self.bits = w.Dropdown(options=list(BITS), value=bits, description="base bits")
        self.double_quant = w.Checkbox(value=double_quant, description="double quantisation")
        self.paged = w.Checkbox(value=paged, description="page optimizer states to host")
        self.batch = w.IntSlider(value=batch, min=1, max=64, description="batch", continuous_update=False)
        self.seq_len = w.IntSlider(value=seq_len, min=128, max=8192, step=128, description="seq len",
                                   continuous_update=False)
        self.checkpointing = w.Checkbox(value=checkpointing, description="gradient checkpointing")
        self.text = w.HTML()
        self.plot = w.Output()
        controls = (self.model, self.method, self.r, self.bits, self.double_quant, self.paged, self.batch,
                    self.seq_len, self.checkpointing)
        for control in controls:
            control.observe(lambda _: self.update(), names="value")
        self.panel = w.VBox([w.HBox([self.model, self.method, self.r]),
                             w.HBox([self.bits, self.double_quant, self.paged]),
                             w.HBox([self.batch, self.seq_len, self.checkpointing]), self.text, self.plot])
        self.update()

    def update(self) -> dict:
        """Recompute from the controls (rank capped at the preset's d_model), refresh text and figure."""
        from ..qlora import calculator_memory

        r = self.r.value if self.model.value != "MiniLM" else min(self.r.value, 384)
        self.summary = s = calculator_memory(self.model.value, self.method.value, r, self.bits.value,
                                             self.double_quant.value, self.paged.value, self.batch.value,
                                             self.seq_len.value, self.checkpointing.value)
        fits = f"fits a {s['fits_gb']} GB GPU" if s["fits_gb"] else "does not fit an 80 GB GPU"
        host = f", {s['host_gb']:,.2f} GB of optimizer states in host RAM" if s["host_gb"] else ""
        total = f"{s['total_gb']:,.2f} GB on the GPU ({fits}){host}"
        self.text.value = f"<b>{s['model']}, {s['method']}</b>: {total}"
        if self.draw:
            from IPython.display import display

            from ..viz import calculator_figure

            self.plot.clear_output(wait=True)
            with self.plot:
                display(calculator_figure({f"{s['model']} {s['method']}": s}))
        return s

    def _ipython_display_(self):
        from IPython.display import display

        display(self.panel)

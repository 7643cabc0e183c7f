"""The tour's sentiment probe: type a sentence, see P(positive) under each model.

The probability comes from ``minilora.train.positive_probability``; this file only wires a
text box to it.
"""

from __future__ import annotations

from ..train import positive_probability


def probe_report(models: dict, tokenizer, text: str) -> str:
    """One line per model: ``name: P(positive) = 0.87 -> positive``."""
    lines = []
    for name, model in models.items():
        p = positive_probability(model, tokenizer, text)[0]
        lines.append(f"{name}: P(positive) = {p:.2f} -> {'positive' if p >= 0.5 else 'negative'}")
    return "\n".join(lines)


def sentiment_probe(models: dict, tokenizer, text="A gorgeous, funny and moving film."):
    """A Text box and an output line per model; ``panel.children[0].value = ...`` updates it."""
    import ipywidgets as W

    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict of name → model")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not callable(tokenizer):
        raise TypeError("tokenizer must be the models' tokenizer (a callable), "
                        f"got {type(tokenizer).__name__}")
    box = W.Text(value=text, description="sentence", layout=W.Layout(width="90%"))
    out = W.HTML()

    def update(_=None):
        try:
            out.value = "<pre>" + probe_report(models, tokenizer, box.value) + "</pre>"
        except ValueError as e:
            out.value = f"<pre>{e}</pre>"

    box.observe(update, names="value")
    update()
    return W.VBox([box, out])

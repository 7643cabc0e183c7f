"""The tour's sentiment probe: type a sentence, see P(positive) under each model."""

from __future__ import annotations

import torch


@torch.no_grad()
def positive_probability(model, tokenizer, texts, max_length=64) -> list[float]:
    """softmax(logits)[:, 1] for each text: the model's probability of a positive label."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be non-empty strings")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    probs = model(**{k: v.to(device) for k, v in enc.items()}).logits.float().softmax(-1)[:, 1]
    model.train(was_training)
    return probs.cpu().tolist()


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

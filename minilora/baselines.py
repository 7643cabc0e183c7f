"""The two reference fine-tunes of the course, cached on disk and shared by the notebooks.

* ``"head"``: frozen pretrained encoder, only the linear classifier trained.
* ``"full"``: every parameter trained (the thing LoRA is measured against).

Both train on one domain's train split and report accuracy on its test split. The result
is cached (minilora.cache) under a key of every argument, the code and the data, so 00
computes it and 01/02/04 reuse it; without a cache entry they recompute identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import cache
from .data import DOMAINS, encode, load_snippets
from .models import load_model
from .train import History, binomial_se, evaluate, train

KINDS = ("head", "full")
DEFAULT_LR = {"head": 1e-2, "full": 1e-4}
DEFAULT_STEPS = {"head": 200, "full": 150}  # CPU size: ~45 s and ~80 s on 2 cores


@dataclass
class Baseline:
    kind: str
    model: torch.nn.Module
    tokenizer: object
    history: History
    test_accuracy: float
    test_n: int
    from_cache: bool

    @property
    def test_se(self) -> float:
        """Binomial standard error of ``test_accuracy``."""
        return binomial_se(self.test_accuracy, self.test_n)


def freeze_all_but_head(model) -> int:
    """requires_grad only on the classifier; returns the number of trainable parameters."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fine_tune_baseline(kind="full", *, model_name=None, domain="movie", steps=None, batch_size=32,
                       lr=None, max_length=64, seed=0, device=None, use_cache=True,
                       progress=None) -> Baseline:
    """Train (or fetch from the cache) the ``kind`` baseline and score it on the test split."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    lr = DEFAULT_LR[kind] if lr is None else lr
    steps = DEFAULT_STEPS[kind] if steps is None else steps
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    if kind == "head":
        freeze_all_but_head(model)
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode(load_snippets(domain, "test"), tokenizer, max_length)
    params = dict(kind=kind, model=model_name, domain=domain, steps=steps, batch_size=batch_size,
                  lr=lr, max_length=max_length, seed=seed,
                  device=str(next(model.parameters()).device))
    here = Path(__file__).resolve().parent
    from .data import data_dir

    files = [here / f for f in ("baselines.py", "train.py", "data.py", "models.py")]
    files.append(data_dir() / f"{domain}.tsv")

    def compute():
        hist = train(model, train_data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                     progress=progress)
        acc = evaluate(model, test_data)
        trained = {k: v for k, v in model.named_parameters() if v.requires_grad}
        return trained, {"history": hist.to_dict(), "test_accuracy": acc}

    key = cache.cache_key(params, files)
    if use_cache:
        tensors, meta, hit = cache.load_or_compute(f"baseline-{kind}-{domain}", key, compute)
    else:
        (tensors, meta), hit = compute(), False
    if hit:
        missing = set(tensors) - set(dict(model.named_parameters()))
        if missing:
            raise RuntimeError(f"cache entry does not match the model: {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in tensors:
                    p.copy_(tensors[name].to(p.device, p.dtype))
        model.eval()
    return Baseline(kind, model, tokenizer, History(**meta["history"]), meta["test_accuracy"],
                    len(test_data), hit)

"""The LoRA fine-tunes of the course (notebook 02), cached on disk like the baselines.

    run = lora_fine_tune(("query", "value"), r=8, alpha=16, steps=150, lr=1e-3)
    run.test_accuracy, run.test_se, run.trainable, run.optimizer_state_bytes, run.history

One call = load the pretrained model, ``apply_lora`` to ``targets``, train only the
adapters and the classifier head (``mark_only_lora_trainable``) with ``minilora.train``,
score on the domain's test split. The trained tensors (A, B, head) and the measurements
are cached (minilora.cache) under a key of every argument, the code and the data; a
cache hit rebuilds the same model from them, so the notebook prints the same numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import cache
from .data import DOMAINS, Encoded, data_dir, encode, load_snippets
from .lora import apply_lora, lora_layers, mark_only_lora_trainable
from .models import load_model
from .train import History, binomial_se, evaluate, train


@dataclass
class LoRARun:
    """A trained LoRA model and what was measured on it."""

    model: torch.nn.Module
    tokenizer: object
    history: History
    test_accuracy: float
    test_n: int
    trainable: int  # parameters trained: LoRA A and B plus the head
    lora_parameters: int  # Σ r·(d_in + d_out) over the adapted layers
    optimizer_state_bytes: int  # bytes AdamW kept for those parameters (measured)
    from_cache: bool
    config: dict = field(default_factory=dict)

    @property
    def test_se(self) -> float:
        """Binomial standard error of ``test_accuracy``."""
        return binomial_se(self.test_accuracy, self.test_n)


def sample_snippets(domain: str, split: str, n=None, seed=0) -> list:
    """``n`` rows of a split drawn at random but reproducibly (all rows if ``n`` is None).

    The files are sorted by label in places (movie: positives first), so "the first n rows"
    is a biased sample; here rows are ordered by ``sha256("<seed>:<id>")`` and the first n
    kept (independent of library versions), then returned in source order.
    """
    rows = load_snippets(domain, split)
    if n is None or n >= len(rows):
        return rows
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    order = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{seed}:{rows[i].id}".encode()).digest())
    keep = set(order[:n])
    return [row for i, row in enumerate(rows) if i in keep]


def encode_sample(domain: str, split: str, tokenizer, n=None, max_length=64, seed=0) -> Encoded:
    """``sample_snippets`` tokenised, rows ordered by token count so that evaluation batches
    carry little padding (about 2x faster to score; accuracy does not depend on the order)."""
    enc = encode(sample_snippets(domain, split, n, seed), tokenizer, max_length)
    order = torch.argsort(enc.attention_mask.sum(1), stable=True)
    return Encoded(enc.input_ids[order], enc.attention_mask[order], enc.labels[order])


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in ``optimizer.state`` (AdamW: exp_avg and exp_avg_sq per parameter, plus step)."""
    return sum(v.numel() * v.element_size() for s in optimizer.state.values()
               for v in s.values() if torch.is_tensor(v))


def lora_fine_tune(targets=("query", "value"), r=8, alpha=16.0, *, domain="movie", model_name=None,
                   steps=150, lr=1e-3, batch_size=32, max_length=64, dropout=0.0, rslora=False, seed=0,
                   test_n=None, val_n=300, eval_every=0, device=None, use_cache=True,
                   progress=None) -> LoRARun:
    """Train LoRA (``targets``, rank ``r``, scale ``alpha/r``) on ``domain`` and test it (LoRA §4.1).

    ``test_n``: score on ``test_n`` test rows drawn by ``sample_snippets`` (None: all). With
    ``eval_every`` the history holds a learning curve on ``val_n`` sampled validation rows.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    names = apply_lora(model, targets, r=r, alpha=alpha, dropout=dropout, rslora=rslora, seed=seed)
    trainable = mark_only_lora_trainable(model)
    lora_parameters = sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode_sample(domain, "test", tokenizer, test_n, max_length)
    val_data = encode_sample(domain, "val", tokenizer, val_n, max_length) if eval_every else None
    config = dict(targets=list(targets) if not isinstance(targets, str) else targets, r=r, alpha=alpha,
                  domain=domain, model=model_name, steps=steps, lr=lr, batch_size=batch_size,
                  max_length=max_length, dropout=dropout, rslora=rslora, seed=seed, test_n=len(test_data),
                  val_n=val_n if eval_every else None, eval_every=eval_every,
                  device=str(next(model.parameters()).device))
    here = Path(__file__).resolve().parent
    files = [here / f for f in ("lora.py", "lora_runs.py", "train.py", "data.py", "models.py")]
    files.append(data_dir() / f"{domain}.tsv")

    def compute():
        made = []

        def adamw(params):
            made.append(torch.optim.AdamW(params, lr=lr, weight_decay=0.01))
            return made[0]

        hist = train(model, train_data, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                     optimizer=adamw, eval_data=val_data, eval_every=eval_every, progress=progress)
        meta = {"history": hist.to_dict(), "test_accuracy": evaluate(model, test_data),
                "optimizer_state_bytes": optimizer_state_bytes(made[0])}
        return {k: v for k, v in model.named_parameters() if v.requires_grad}, meta

    if use_cache:
        key = cache.cache_key(config, files)
        tensors, meta, hit = cache.load_or_compute(f"lora-{domain}-r{r}", key, compute)
    else:
        (tensors, meta), hit = compute(), False
    if hit:
        params = dict(model.named_parameters())
        if set(tensors) != {k for k, p in params.items() if p.requires_grad}:
            raise RuntimeError(f"cache entry does not match the LoRA model ({names[:2]}...)")
        with torch.no_grad():
            for k, t in tensors.items():
                params[k].copy_(t)
    model.eval()
    return LoRARun(model, tokenizer, History(**meta["history"]), meta["test_accuracy"], len(test_data),
                   trainable, lora_parameters, meta["optimizer_state_bytes"], hit, config)

"""The fine-tunes the notebooks share, cached on disk (``minilora.course.cache.cached_fit``).

    full = fine_tune_baseline("full")                 # every parameter trained
    head = fine_tune_baseline("head")                 # frozen encoder, only the classifier
    run = lora_fine_tune(("query", "value"), r=8, alpha=16, steps=150, lr=1e-3)
    run.test_accuracy, run.test_se, run.trainable, run.optimizer_state_bytes, run.history

One call = load the pretrained model, choose what trains, train with ``minilora.train``
(minilora's AdamW), score on the domain's test split (or a sample of it). The trained
tensors and the measurements are cached under a key derived from every argument, the
source of every module the training can run and the data, so notebook 00 computes the full
fine-tune and 01/02/04 reuse it; without a cache entry they recompute identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..adamw import AdamW, state_bytes
from ..checks import check_int, check_number
from ..data import DOMAINS, encode, encode_sample, load_snippets
from ..lora import apply_lora, check_lora_args, lora_layers, mark_only_lora_trainable
from ..models import load_model
from ..stats import binomial_se
from ..train import History, evaluate, train
from .cache import cached_fit

KINDS = ("head", "full")
DEFAULT_LR = {"head": 1e-2, "full": 1e-4}
DEFAULT_STEPS = {"head": 200, "full": 150}  # CPU size: ~30 s and ~65 s on 2 cores


@dataclass
class FineTune:
    """A trained model and what was measured on it."""

    kind: str  # "head", "full" or "lora"
    model: torch.nn.Module
    tokenizer: object
    history: History
    test_accuracy: float
    test_n: int
    trainable: int  # parameters trained
    optimizer_state_bytes: int  # bytes the optimizer kept for them (measured)
    from_cache: bool
    lora_parameters: int = 0  # Σ r·(d_in + d_out) over the adapted layers (LoRA runs)
    config: dict = field(default_factory=dict)

    @property
    def test_se(self) -> float:
        """Binomial standard error of ``test_accuracy``."""
        return binomial_se(self.test_accuracy, self.test_n)


def freeze_all_but_head(model) -> int:
    """requires_grad only on the classifier; returns the number of trainable parameters."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(name.startswith("classifier.") for name, _ in model.named_parameters()):
        raise ValueError("model has no 'classifier' head to train (a ...ForSequenceClassification model)")
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_recipe(steps, lr, batch_size, max_length, seed, use_cache, test_n=None, eval_every=0):
    """The training arguments, checked before the (slow) model load."""
    check_int(steps, "steps", 1)
    check_number(lr, "lr", 0.0, low_open=True)
    check_int(batch_size, "batch_size", 1)
    check_int(max_length, "max_length", 2, 512)
    check_int(seed, "seed", 0, 2**63 - 1)
    check_int(eval_every, "eval_every", 0)
    if test_n is not None:
        check_int(test_n, "test_n", 1)
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")


def _check_domain(domain):
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")


def _train_and_score(name, config, model, train_data, test_data, *, steps, batch_size, lr, seed,
                     val_data=None, eval_every=0, progress=None, use_cache=True):
    """The shared "train with AdamW, score on test, cache it" step of every run here."""
    def fit():
        made = []

        def adamw(params):
            made.append(AdamW(params, lr=lr, weight_decay=0.01))
            return made[0]

        hist = train(model, train_data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, optimizer=adamw,
                     eval_data=val_data, eval_every=eval_every, progress=progress)
        return {"history": hist.to_dict(), "test_accuracy": evaluate(model, test_data),
                "optimizer_state_bytes": state_bytes(made[0])}

    return cached_fit(name, config, model, fit, use_cache=use_cache)


def fine_tune_baseline(kind="full", *, model_name=None, domain="movie", steps=None, batch_size=32,
                       lr=None, max_length=64, seed=0, device=None, use_cache=True,
                       progress=None) -> FineTune:
    """Train (or fetch from the cache) the ``kind`` baseline and score it on the whole test split.

    ``"full"``: every parameter trained (what LoRA is measured against); ``"head"``: the
    pretrained encoder frozen, only the new linear classifier trained.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_domain(domain)
    lr = DEFAULT_LR[kind] if lr is None else lr
    steps = DEFAULT_STEPS[kind] if steps is None else steps
    _check_recipe(steps, lr, batch_size, max_length, seed, use_cache)
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    trainable = freeze_all_but_head(model) if kind == "head" else sum(p.numel() for p in model.parameters())
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode(load_snippets(domain, "test"), tokenizer, max_length)
    config = dict(kind=kind, model=model_name, domain=domain, steps=steps, batch_size=batch_size, lr=lr,
                  max_length=max_length, seed=seed, device=str(next(model.parameters()).device))
    meta, hit = _train_and_score(f"baseline-{kind}-{domain}", config, model, train_data, test_data,
                                 steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                                 use_cache=use_cache)
    return FineTune(kind, model, tokenizer, History(**meta["history"]), meta["test_accuracy"], len(test_data),
                    trainable, meta["optimizer_state_bytes"], hit, config=config)


def lora_fine_tune(targets=("query", "value"), r=8, alpha=16.0, *, domain="movie", model_name=None,
                   steps=150, lr=1e-3, batch_size=32, max_length=64, dropout=0.0, rslora=False, seed=0,
                   test_n=None, val_n=300, eval_every=0, device=None, use_cache=True,
                   progress=None) -> FineTune:
    """Train LoRA (``targets``, rank ``r``, scale ``alpha/r``) on ``domain`` and test it (LoRA §4.1).

    Only the adapters and the classifier head train (``mark_only_lora_trainable``).
    ``test_n``: score on ``test_n`` test rows drawn by ``sample_snippets`` (None: all). With
    ``eval_every`` the history holds a learning curve on ``val_n`` sampled validation rows.
    """
    _check_domain(domain)
    _check_recipe(steps, lr, batch_size, max_length, seed, use_cache, test_n, eval_every)
    check_lora_args(r, alpha, dropout, rslora=rslora)
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    apply_lora(model, targets, r=r, alpha=alpha, dropout=dropout, rslora=rslora, seed=seed)
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
    meta, hit = _train_and_score(f"lora-{domain}-r{r}", config, model, train_data, test_data, steps=steps,
                                 batch_size=batch_size, lr=lr, seed=seed, val_data=val_data,
                                 eval_every=eval_every, progress=progress, use_cache=use_cache)
    return FineTune("lora", model, tokenizer, History(**meta["history"]), meta["test_accuracy"],
                    len(test_data), trainable, meta["optimizer_state_bytes"], hit, lora_parameters, config)

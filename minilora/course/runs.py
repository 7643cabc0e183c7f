"""The fine-tunes the notebooks share, cached on disk (``minilora.course.cache.cached_fit``).

    full = fine_tune_baseline("full")                 # every parameter trained
    head = fine_tune_baseline("head")                 # frozen encoder, a head on mean-pooled vectors
    run = lora_fine_tune(("query", "value"), r=8, alpha=16, steps=150, lr=1e-3)
    run.test_accuracy, run.test_se, run.trainable, run.optimizer_state_bytes, run.history
    run.test_correct, run.val_accuracy               # per test row (minilora.stats.mcnemar); validation
    chosen = select_on_validation({"full": [...], "lora": [...]}, fit)   # recipes chosen on validation

One call = load the pretrained model, choose what trains, train with ``minilora.train``
(minilora's AdamW), score on validation rows and the domain's test split (or a sample). The trained
tensors and the measurements are cached under a key derived from every argument, the
source of every module the training can run and the data, so notebook 00 computes the full
fine-tune and 01/02/04 reuse it; without a cache entry they recompute identically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..adamw import AdamW, state_bytes
from ..checks import check_choice, check_int, check_number
from ..data import DOMAINS, encode, encode_sample, load_snippets
from ..lora import apply_lora, check_lora_args, lora_layers, mark_only_lora_trainable
from ..models import POOLINGS, load_model
from ..stats import binomial_se
from ..train import History, evaluate, predict, train
from .cache import cache_key, cached_fit, load_or_compute

KINDS = ("head", "full")
DEFAULT_LR = {"head": 1e-2, "full": 1e-4}
DEFAULT_STEPS = {"head": 1500, "full": 150}  # head: on cached features, to convergence; full: ~65 s
DEFAULT_BATCH = {"head": 256, "full": 32}
DEFAULT_POOLING = {"head": "mean", "full": "cls"}


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
    test_correct: tuple = ()  # per test row: was the prediction right (for paired tests, minilora.stats)
    val_accuracy: float | None = None  # at the end of training, on the validation rows of the run
    val_n: int = 0

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


def _correct(model, data) -> list[bool]:
    """Per row of ``data``: is ``argmax(logits)`` the label."""
    return (predict(model, data).argmax(-1) == data.labels).tolist()


def _scores(model, val_data, test_data) -> dict:
    """What every run records at its end: validation accuracy, test accuracy and per-row correctness."""
    correct = _correct(model, test_data)
    return {"val_accuracy": evaluate(model, val_data), "test_accuracy": sum(correct) / len(correct),
            "test_correct": correct}


def _train_and_score(name, config, model, train_data, test_data, *, steps, batch_size, lr, seed,
                     val_data, eval_every=0, progress=None, use_cache=True):
    """The shared "train with AdamW, score on val and test, cache it" step of every run here."""
    def fit():
        made = []

        def adamw(params):
            made.append(AdamW(params, lr=lr, weight_decay=0.01))
            return made[0]

        hist = train(model, train_data, steps=steps, batch_size=batch_size, lr=lr, seed=seed, optimizer=adamw,
                     eval_data=val_data if eval_every else None, eval_every=eval_every, progress=progress)
        return {"history": hist.to_dict(), "optimizer_state_bytes": state_bytes(made[0]),
                **_scores(model, val_data, test_data)}

    return cached_fit(name, config, model, fit, use_cache=use_cache)


@torch.no_grad()
def pooled_features(model, data, batch_size=128) -> torch.Tensor:
    """The vector the head of a ``MeanPoolClassifier`` reads, for every row (eval mode, float32)."""
    if not hasattr(model, "features"):
        raise TypeError("model must be a minilora.models.MeanPoolClassifier (load_model(pooling='mean'))")
    model.eval()
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(data), batch_size):
        b = data.batch(torch.arange(lo, min(lo + batch_size, len(data))))
        out.append(model.features(b["input_ids"].to(device), b["attention_mask"].to(device)).float().cpu())
    return torch.cat(out)


def _fit_head_on_features(name, config, model, train_data, val_data, test_data, *, steps, batch_size, lr,
                          seed, eval_every, use_cache):
    """A frozen encoder's head trained on its features, computed once (a linear probe).

    The encoder is frozen and in eval mode, so its output for a row never changes: compute
    the pooled vectors z once and train ``logits = W z + b`` on them with AdamW (constant lr,
    minibatches of ``batch_size`` drawn with replacement), thousands of steps in seconds.
    The history records the minibatch loss per step and the validation accuracy every
    ``eval_every`` steps: the curve shows whether the head converged.
    """
    head = model.classifier
    recipe = ("steps", "batch_size", "lr", "seed", "eval_every")
    feature_config = {k: v for k, v in config.items() if k not in recipe}

    def fit():
        # the frozen encoder's features depend on the model and the rows only: computed once, shared by
        # every head recipe (cached like a run when use_cache)
        def compute():
            return {"train": pooled_features(model, train_data), "val": pooled_features(model, val_data)}, {}

        if use_cache:
            feats = load_or_compute(f"{name}-features", cache_key(feature_config, __name__), compute)[0]
        else:
            feats = compute()[0]
        x, y, x_val = feats["train"], train_data.labels, feats["val"]
        opt = AdamW(list(head.parameters()), lr=lr, weight_decay=0.01)
        gen = torch.Generator().manual_seed(seed)
        hist = History()
        device = head.weight.device
        start = time.perf_counter()
        for step in range(1, steps + 1):
            idx = torch.randint(len(y), (batch_size,), generator=gen)
            loss = torch.nn.functional.cross_entropy(head(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hist.loss.append(loss.item())
            if (eval_every and step % eval_every == 0) or step == steps:
                with torch.no_grad():
                    pred = head(x_val.to(device)).argmax(-1).cpu()
                hist.eval_steps.append(step)
                hist.eval_accuracy.append(float((pred == val_data.labels).float().mean()))
        hist.wall_time = time.perf_counter() - start
        hist.seconds_per_step = hist.wall_time / steps
        with torch.no_grad():
            final_loss = float(torch.nn.functional.cross_entropy(head(x.to(device)), y.to(device)))
        return {"history": hist.to_dict(), "optimizer_state_bytes": state_bytes(opt),
                "train_loss": final_loss, **_scores(model, val_data, test_data)}

    return cached_fit(name, config, model, fit, use_cache=use_cache)


def _finish(kind, model, tokenizer, meta, hit, trainable, n_test, n_val, config, lora_parameters=0):
    return FineTune(kind, model, tokenizer, History(**meta["history"]), meta["test_accuracy"], n_test,
                    trainable, meta["optimizer_state_bytes"], hit, lora_parameters, config,
                    tuple(meta["test_correct"]), meta["val_accuracy"], n_val)


def fine_tune_baseline(kind="full", *, model_name=None, domain="movie", steps=None, batch_size=None,
                       lr=None, max_length=64, seed=0, pooling=None, val_n=None, eval_every=None,
                       device=None, use_cache=True, progress=None) -> FineTune:
    """Train (or fetch from the cache) the ``kind`` baseline and score it on the whole test split.

    ``"full"``: every parameter trained (what LoRA is measured against; BERT's ``[CLS]``
    pooler by default); ``"head"``: the pretrained encoder frozen, only a linear classifier
    on its **mean-pooled** token vectors (``pooling="mean"``, how all-MiniLM was trained)
    trained to convergence on features computed once (``_fit_head_on_features``; 1,500
    steps of 256 by default). ``val_n`` validation rows (None: the whole split) give the
    final validation accuracy, and with ``eval_every`` a learning curve (the head: every
    50 steps by default).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_domain(domain)
    lr = DEFAULT_LR[kind] if lr is None else lr
    steps = DEFAULT_STEPS[kind] if steps is None else steps
    batch_size = DEFAULT_BATCH[kind] if batch_size is None else batch_size
    pooling = DEFAULT_POOLING[kind] if pooling is None else check_choice(pooling, "pooling", POOLINGS)
    eval_every = (50 if kind == "head" else 0) if eval_every is None else eval_every
    _check_recipe(steps, lr, batch_size, max_length, seed, use_cache, eval_every=eval_every)
    if val_n is not None:
        check_int(val_n, "val_n", 1)
    model, tokenizer = load_model(model_name, device=device, seed=seed, pooling=pooling)
    trainable = freeze_all_but_head(model) if kind == "head" else sum(p.numel() for p in model.parameters())
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    val_data = encode_sample(domain, "val", tokenizer, val_n, max_length)
    test_data = encode(load_snippets(domain, "test"), tokenizer, max_length)
    config = dict(kind=kind, model=model_name, domain=domain, steps=steps, batch_size=batch_size, lr=lr,
                  max_length=max_length, seed=seed, pooling=pooling, val_n=len(val_data),
                  eval_every=eval_every, device=str(next(model.parameters()).device))
    args = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every,
                use_cache=use_cache)
    if kind == "head":
        meta, hit = _fit_head_on_features(f"baseline-head-{domain}", config, model, train_data, val_data,
                                          test_data, **args)
    else:
        meta, hit = _train_and_score(f"baseline-{kind}-{domain}", config, model, train_data, test_data,
                                     val_data=val_data, progress=progress, **args)
    return _finish(kind, model, tokenizer, meta, hit, trainable, len(test_data), len(val_data), config)


def lora_fine_tune(targets=("query", "value"), r=8, alpha=16.0, *, domain="movie", model_name=None,
                   steps=150, lr=1e-3, batch_size=32, max_length=64, dropout=0.0, rslora=False, seed=0,
                   test_n=None, val_n=300, eval_every=0, device=None, use_cache=True,
                   progress=None) -> FineTune:
    """Train LoRA (``targets``, rank ``r``, scale ``alpha/r``) on ``domain`` and test it (LoRA §4.1).

    Only the adapters and the classifier head train (``mark_only_lora_trainable``).
    ``test_n``: score on ``test_n`` test rows drawn by ``sample_snippets`` (None: all).
    ``val_n`` sampled validation rows (None: all) give the final validation accuracy and,
    with ``eval_every``, a learning curve in the history.
    """
    _check_domain(domain)
    _check_recipe(steps, lr, batch_size, max_length, seed, use_cache, test_n, eval_every)
    if val_n is not None:
        check_int(val_n, "val_n", 1)
    check_lora_args(r, alpha, dropout, rslora=rslora)
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    apply_lora(model, targets, r=r, alpha=alpha, dropout=dropout, rslora=rslora, seed=seed)
    trainable = mark_only_lora_trainable(model)
    lora_parameters = sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode_sample(domain, "test", tokenizer, test_n, max_length)
    val_data = encode_sample(domain, "val", tokenizer, val_n, max_length)
    config = dict(targets=list(targets) if not isinstance(targets, str) else targets, r=r, alpha=alpha,
                  domain=domain, model=model_name, steps=steps, lr=lr, batch_size=batch_size,
                  max_length=max_length, dropout=dropout, rslora=rslora, seed=seed, test_n=len(test_data),
                  val_n=len(val_data), eval_every=eval_every, device=str(next(model.parameters()).device))
    meta, hit = _train_and_score(f"lora-{domain}-r{r}", config, model, train_data, test_data, steps=steps,
                                 batch_size=batch_size, lr=lr, seed=seed, val_data=val_data,
                                 eval_every=eval_every, progress=progress, use_cache=use_cache)
    return _finish("lora", model, tokenizer, meta, hit, trainable, len(test_data), len(val_data), config,
                   lora_parameters)


@dataclass
class Selection:
    """One method's recipe, chosen on the validation split (``select_on_validation``).

    ``trials``: every recipe tried with its validation accuracy, in the order tried;
    ``recipe``/``val_accuracy``: the best of them; ``run``: its FineTune, the only run of
    the method whose test score a notebook reads.
    """

    method: str
    trials: list
    recipe: dict
    val_accuracy: float
    run: FineTune

    def summary(self) -> str:
        tried = "; ".join(f"{_recipe_text(r)}: {100 * v:.1f} %" for r, v in self.trials)
        return (f"{self.method}: validation accuracy of {len(self.trials)} recipes: {tried} "
                f"-> {_recipe_text(self.recipe)}")


def _recipe_text(recipe: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in recipe.items())


def select_on_validation(candidates: dict, fit) -> dict[str, Selection]:
    """Choose each method's recipe on the validation split, with the same number of trials each.

    ``candidates`` maps a method name to a list of recipes (dicts of keyword arguments);
    every method must have the same number of them (an equal tuning budget).
    ``fit(method, **recipe)`` returns a ``FineTune`` (its ``val_accuracy`` is what is
    compared). The recipe with the highest validation accuracy wins (the first on a tie);
    its run is returned, the others are dropped, so the test split is read once per method.
    """
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError("candidates must be a non-empty dict: method -> list of recipes")
    if not callable(fit):
        raise TypeError(f"fit must be a callable fit(method, **recipe), got {type(fit).__name__}")
    sizes = {m: len(r) if isinstance(r, (list, tuple)) else None for m, r in candidates.items()}
    if any(n is None or n == 0 for n in sizes.values()):
        raise ValueError(f"candidates must map each method to a non-empty list of recipes, got {sizes}")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every method must get the same number of recipes (equal tuning budget): {sizes}")
    chosen = {}
    for method, recipes in candidates.items():
        best, trials = None, []
        for recipe in recipes:
            if not isinstance(recipe, dict):
                raise TypeError(f"a recipe must be a dict of keyword arguments, got {type(recipe).__name__}")
            run = fit(method, **recipe)
            if not isinstance(run, FineTune) or run.val_accuracy is None:
                raise TypeError("fit must return a FineTune with a val_accuracy")
            trials.append((dict(recipe), run.val_accuracy))
            if best is None or run.val_accuracy > best[1]:
                best = (dict(recipe), run.val_accuracy, run)
        chosen[method] = Selection(method, trials, best[0], best[1], best[2])
    return chosen


def inference_latency(models: dict, data, repeats: int = 5, batch_size: int = 128) -> dict[str, list[float]]:
    """Seconds to predict every row of ``data``, per model, ``repeats`` times **interleaved**
    (model 1, model 2, ..., then again), so a load spike on a shared machine hits all alike.
    One untimed warm-up pass per model first. Report the median (or the fastest) per model.
    """
    if not isinstance(models, dict) or not models:
        raise ValueError("models must be a non-empty dict: name -> model")
    check_int(repeats, "repeats", 1, 1000)
    check_int(batch_size, "batch_size", 1)
    for m in models.values():
        predict(m, data, batch_size)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            predict(m, data, batch_size)
            times[name].append(time.perf_counter() - t0)
    return times

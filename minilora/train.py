"""One small, readable training loop used by every notebook, plus evaluation and error bars.

    history = train(model, encoded_train, steps=200, lr=5e-5, eval_data=encoded_val, eval_every=50)
    acc = evaluate(model, encoded_test)
    p = positive_probability(model, tokenizer, "A gorgeous film.")

The optimizer is injectable: pass a ``torch.optim.Optimizer`` instance, or a callable
``params -> optimizer``; the default is minilora's from-scratch AdamW (minilora.adamw, equal
to ``torch.optim.AdamW`` step for step, which stays a reference) over the trainable parameters.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .adamw import AdamW
from .checks import ArgumentTypeError, check_int, check_number
from .data import Encoded, batches, check_nonempty


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def quiet() -> bool:
    """True under CI (``CI`` set and not "false"): progress bars stay off there."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


@dataclass
class History:
    """What a run measured: loss per step, (step, accuracy) per evaluation, time, memory."""

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    wall_time: float = 0.0  # whole run, evaluations included
    seconds_per_step: float = 0.0
    peak_memory_bytes: int | None = None  # CUDA only; None where it cannot be measured

    def to_dict(self) -> dict:
        return asdict(self)


def _device_of(model) -> torch.device:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError("model has no parameters")
    return p.device


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model, data: Encoded, batch_size=128) -> torch.Tensor:
    """Logits (N x num_labels, float32, on the CPU) for every row of ``data``, in eval mode."""
    check_nonempty(data)
    check_int(batch_size, "batch_size", 1)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    # score rows sorted by length (little padding), then put the logits back in row order
    order = torch.argsort(data.attention_mask.sum(1), stable=True)
    out = []
    for lo in range(0, len(data), batch_size):
        batch = data.batch(order[lo:lo + batch_size])
        batch.pop("labels")
        out.append(model(**_to(batch, device)).logits.float().cpu())
    model.train(was_training)
    logits = torch.cat(out)
    if not bool(torch.isfinite(logits).all()):  # argmax of NaN would score as a real prediction
        raise FloatingPointError("the model produced non-finite logits (NaN/inf): its weights or inputs "
                                 "are broken, so no accuracy can be computed")
    return logits[torch.argsort(order)]


def evaluate(model, data: Encoded, batch_size=128) -> float:
    """Accuracy of ``argmax(logits)`` against ``data.labels``."""
    logits = predict(model, data, batch_size)
    return (logits.argmax(-1) == data.labels).float().mean().item()


@torch.no_grad()
def positive_probability(model, tokenizer, texts, max_length=64) -> list[float]:
    """``softmax(logits)[:, 1]`` for each text: the model's probability of a positive label."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("texts must be non-empty strings")
    if not callable(tokenizer):
        raise TypeError("tokenizer must be the model's tokenizer (a callable), "
                        f"got {type(tokenizer).__name__}")
    check_int(max_length, "max_length", 2, 512)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    logits = model(**_to(dict(enc), device)).logits.float()
    model.train(was_training)
    if logits.shape[-1] != 2:
        raise ValueError("model must have 2 labels (negative, positive) for P(positive), "
                         f"it has {logits.shape[-1]}")
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError("the model produced non-finite logits (NaN/inf): no probability to report")
    return logits.softmax(-1)[:, 1].cpu().tolist()


def lr_multiplier(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning-rate schedule: linear warm-up, then linear decay to 0 (BERT's schedule).

    For optimizer step ``s`` = 0, 1, …, T − 1 (T = ``total_steps``, W = ``warmup_steps``):
        1. warm-up, s < W:   (s + 1) / W                 reaches 1 at the last warm-up step
        2. decay,  s ≥ W:    (T − s) / (T − W)            1 at s = W, 1/(T − W) at the last step
    The optimizer's lr is multiplied by this value (``torch.optim.lr_scheduler.LambdaLR``).
    """
    total_steps = check_int(total_steps, "total_steps", 1)
    warmup_steps = check_int(warmup_steps, "warmup_steps", 0, total_steps)
    step = check_int(step, "step", 0)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))


def gradient_norm(optimizer, clip=None) -> torch.Tensor:
    """The global L2 norm of the gradients of ``optimizer``'s parameters; with ``clip`` the
    gradients are scaled so the norm is at most ``clip`` (``clip_grad_norm_``). Returns the
    norm before clipping."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if clip is not None:
        check_number(clip, "clip", 0.0, low_open=True, why=" or None")
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not params:
        raise RuntimeError("no parameter received a gradient: does the loss depend on the trainable "
                           "parameters (and is an adapter merged)?")
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


@contextmanager
def gradient_checkpointing(model):
    """Within this context, every block of ``model`` (each element of its outermost
    ``nn.ModuleList``s: the transformer layers) keeps only its input for backward and re-runs
    its forward there (``torch.utils.checkpoint``, non-reentrant, RNG state preserved so dropout
    masks repeat): activation memory per layer falls from all intermediates to one input, for
    about one extra forward pass (Chen et al. 2016; QLoRA §4 trains with it). Without grad
    (evaluation) blocks run plainly."""
    from torch.utils.checkpoint import checkpoint

    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    outer = [m for n, m in lists if not any(n.startswith(o + ".") for o, _ in lists if o != n)]
    blocks = [b for m in outer for b in m]
    if not blocks:
        raise ValueError("checkpointing=True needs a model whose blocks sit in an nn.ModuleList "
                         f"(a transformer's layers); {type(model).__name__} has none")

    def checkpointed(forward):
        def run(*args, **kwargs):
            if torch.is_grad_enabled():
                # keep the block's inputs, recompute its forward during backward
                return checkpoint(forward, *args, use_reentrant=False, **kwargs)
            return forward(*args, **kwargs)
        return run

    for b in blocks:
        b.forward = checkpointed(b.forward)
    try:
        yield blocks
    finally:
        for b in blocks:
            del b.forward  # back to the class's forward


def _make_optimizer(optimizer, model, lr, weight_decay):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameter with requires_grad=True: nothing to train")
    if optimizer is None:
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        made = optimizer(params)
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError("optimizer(params) must return a torch.optim.Optimizer, "
                            f"got {type(made).__name__}")
        return made
    raise TypeError("optimizer must be None, an Optimizer or a callable(params), "
                    f"got {type(optimizer).__name__}")


def train(model, data: Encoded, *, steps=200, batch_size=32, lr=5e-5, weight_decay=0.01,
          optimizer=None, clip=1.0, seed=0, eval_data: Encoded | None = None, eval_every=0,
          warmup=0.1, progress=None, extra_loss=None, on_step=None, checkpointing=False) -> History:
    """Train ``model`` for ``steps`` optimizer steps on shuffled batches of ``data``.

    Linear warm-up over the first ``warmup`` fraction of steps, then linear decay to 0.
    ``clip`` bounds the global gradient norm (None: off). ``eval_data`` is scored every
    ``eval_every`` steps and at the end. ``extra_loss(model)`` is added to the task loss
    (e.g. a regulariser); ``on_step(model, step)`` runs after each optimizer step (e.g. a
    rank allocator). ``progress=None`` shows a tqdm bar except under CI. ``checkpointing=True``
    recomputes each block's forward in backward (``gradient_checkpointing``): same losses and
    gradients, less activation memory, about one more forward pass of time.
    """
    steps = check_int(steps, "steps", 1)
    check_nonempty(data)
    check_int(batch_size, "batch_size", 1)
    if eval_data is not None:
        check_nonempty(eval_data, "eval_data")
    eval_every = check_int(eval_every, "eval_every", 0)
    check_number(weight_decay, "weight_decay", 0.0)
    seed = check_int(seed, "seed", 0)
    for name, fn in (("extra_loss", extra_loss), ("on_step", on_step)):
        if fn is not None and not callable(fn):
            raise ArgumentTypeError(f"{name} must be a callable or None, got {type(fn).__name__}")
    check_number(lr, "lr", 0.0, low_open=True)
    if clip is not None:
        check_number(clip, "clip", 0.0, low_open=True, why=" or None")
    check_number(warmup, "warmup", 0.0, 1.0, high_open=True)
    if eval_every and eval_data is None:
        raise ValueError("eval_every needs eval_data")
    if not isinstance(checkpointing, bool):
        raise ArgumentTypeError(f"checkpointing must be True or False, got {checkpointing!r}")
    set_seed(seed)
    device = _device_of(model)
    opt = _make_optimizer(optimizer, model, lr, weight_decay)
    n_warm = int(warmup * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, steps, n_warm))
    gen = torch.Generator().manual_seed(seed)
    history = History()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, disable=quiet() if progress is None else not progress, leave=False)
    model.train()
    start = time.perf_counter()
    step, eval_time = 0, 0.0
    with gradient_checkpointing(model) if checkpointing else nullcontext():
        while step < steps:
            for batch in batches(data, batch_size, shuffle=True, generator=gen):
                loss = model(**_to(batch, device)).loss
                if extra_loss is not None:
                    extra = extra_loss(model)
                    if not isinstance(extra, torch.Tensor) or extra.numel() != 1:
                        raise TypeError("extra_loss(model) must return a scalar tensor, got "
                                        f"{getattr(extra, 'shape', type(extra).__name__)}")
                    loss = loss + extra.reshape(())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}; lower lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # the global gradient norm, checked BEFORE the update: a non-finite gradient stops the
                # run with the weights of the last good step (one host sync, as loss.item() already is)
                norm = gradient_norm(opt, clip)
                if not torch.isfinite(norm):
                    raise FloatingPointError(f"the gradient became {norm.item()} at step {step + 1}; the "
                                             f"weights were not updated (they hold step {step}'s values). "
                                             "Lower lr or check the data and extra_loss")
                opt.step()
                sched.step()
                step += 1
                if on_step is not None:
                    on_step(model, step)
                history.loss.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
                if eval_data is not None and ((eval_every and step % eval_every == 0) or step == steps):
                    t_eval = time.perf_counter()
                    history.eval_steps.append(step)
                    history.eval_accuracy.append(evaluate(model, eval_data))
                    model.train()
                    eval_time += time.perf_counter() - t_eval
                if step == steps:
                    break
    bar.close()
    model.eval()
    bad = [n for n, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
    if bad:  # finite gradients can still overflow in the update (a huge lr): say so, once, at the end
        raise FloatingPointError(f"training produced non-finite weights in {bad[:3]}; lower lr")
    history.wall_time = time.perf_counter() - start
    history.seconds_per_step = (history.wall_time - eval_time) / steps  # training only
    if device.type == "cuda":
        history.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    return history

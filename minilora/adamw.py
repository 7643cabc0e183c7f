"""AdamW written from scratch, the optimizer QLoRA pages (Dettmers et al. 2023, §3 "Paged
Optimizers"), in PyTorch's convention (``torch.optim.AdamW``).

For each parameter θ with gradient g, at step t (η = lr, λ = weight_decay):

    θ ← θ · (1 − η λ)                       decoupled weight decay (PyTorch's form, see below)
    m ← β1 m + (1 − β1) g                   first moment  (``exp_avg``)
    v ← β2 v + (1 − β2) g²                  second moment (``exp_avg_sq``)
    θ ← θ − η/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)      bias-corrected update

The decay is *decoupled* from the gradient as in Loshchilov & Hutter ("Decoupled Weight Decay
Regularization", ICLR 2019, Algorithm 2), but scaled differently: the paper writes
θ ← θ − η_t (α m̂/(√v̂ + ε) + λ θ), with α the step size and η_t the schedule multiplier, so
its λ is scaled by the schedule only; PyTorch (and this file) multiply λ by the whole learning
rate lr = α·η_t, i.e. λ_torch = λ_paper / α.

This is the same order of floating-point operations as ``torch.optim.AdamW``, so the two
agree to rounding (the tests check ≤ 1e-6 over 50+ steps). The update runs on lists of
tensors with ``torch._foreach_*`` ops: on a GPU one call per op for a whole parameter group
(few kernel launches); on a CPU one tensor at a time by default, which keeps each tensor in
cache through its six ops (measured faster: benchmarks/bench_paged.py). ``PagedAdamW``
(minilora.paged) subclasses this and only changes where the two state tensors live.
"""

from __future__ import annotations

import torch

from .checks import ArgumentTypeError, check_int, check_number

STATE_KEYS = ("exp_avg", "exp_avg_sq")
FLOAT32_TINY = torch.finfo(torch.float32).tiny
FLOAT32_MAX = torch.finfo(torch.float32).max
ADAMW_STATE_BYTES_PER_PARAMETER = 8  # m and v in fp32: what AdamW keeps per trained number


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Measured bytes of the tensors in ``optimizer.state`` (AdamW: ``exp_avg`` and
    ``exp_avg_sq`` per parameter; the scalar ``step`` counters are not counted)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return sum(v.numel() * v.element_size() for s in optimizer.state.values()
               for v in s.values() if torch.is_tensor(v) and v.dim() > 0)


def check_hyperparameters(lr, betas, eps, weight_decay) -> None:
    """Raise ``TypeError``/``ValueError`` naming the parameter unless lr ≥ 0, betas ∈ [0, 1)²,
    eps > 0 and weight_decay ≥ 0, all finite real numbers."""
    check_number(lr, "lr", 0.0)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ArgumentTypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        check_number(beta, f"betas[{i}]", 0.0, 1.0, high_open=True)
    check_number(eps, "eps", FLOAT32_TINY, why=" (smaller underflows to 0 in float32 and divides by zero)")
    check_number(weight_decay, "weight_decay", 0.0)
    if lr * weight_decay >= 1:
        raise ValueError(f"lr × weight_decay must be < 1 (the decay multiplies θ by 1 − lr·weight_decay), "
                         f"got {lr} × {weight_decay}")
    if lr / (1 - betas[0]) > FLOAT32_MAX:
        raise ValueError(f"lr is too large: the first update scales by lr/(1 − β1) = "
                         f"{lr / (1 - betas[0]):.3g}, beyond float32's range")


def adamw_update(params, grads, exp_avgs, exp_avg_sqs, step: int, *, lr: float, beta1: float,
                 beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW step, in place, on equal-length lists of tensors that share device, dtype and
    step number ``t = step`` (Loshchilov & Hutter 2019, Algorithm 2, lines 6-12, with the decay
    scaled by ``lr`` as in ``torch.optim.AdamW``)."""
    check_int(step, "step", 1)
    if not len(params) == len(grads) == len(exp_avgs) == len(exp_avg_sqs) or not params:
        raise ValueError("params, grads, exp_avgs and exp_avg_sqs must be non-empty lists of equal length")
    if weight_decay != 0:
        # θ ← θ (1 − η λ)
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    # m ← β1 m + (1 − β1) g, written as m + (1 − β1)(g − m)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    # v ← β2 v + (1 − β2) g ⊙ g
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    # bias corrections 1 − β1ᵗ and 1 − β2ᵗ
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    # denominator √v / √(1 − β2ᵗ) + ε
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2 ** 0.5)
    torch._foreach_add_(denom, eps)
    # θ ← θ − η / (1 − β1ᵗ) · m / denom
    torch._foreach_addcdiv_(params, exp_avgs, denom, -(lr / bias_correction1))


class AdamW(torch.optim.Optimizer):
    """AdamW from scratch: decoupled weight decay, bias correction, parameter groups,
    ``state_dict``/``load_state_dict`` (torch's format: ``step``, ``exp_avg``, ``exp_avg_sq``)
    and closures. ``foreach``: True updates a whole group per op, False one tensor at a time,
    None (default) picks True for CUDA tensors and False otherwise; the numbers are the same."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *, foreach=None):
        check_hyperparameters(lr, betas, eps, weight_decay)
        if foreach not in (None, True, False):
            raise TypeError(f"foreach must be None, True or False, got {foreach!r}")
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of tensors or of parameter groups (dicts), "
                            "not one tensor: pass [p] or model.parameters()")
        params = list(params)
        if not params:
            raise ValueError("params is empty: nothing to optimise (are all parameters frozen?)")
        self.foreach = foreach
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    # options of torch.optim.AdamW that change the update; this AdamW implements their defaults only
    UNSUPPORTED = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": True}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state in torch's format (``torch.optim.AdamW(...).state_dict()`` works).

        Refused with a ValueError, before anything changes: options this AdamW does not
        implement (``amsgrad``/``maximize`` True, or Adam's coupled weight decay — they would
        be silently ignored), invalid hyperparameters, and moments whose shape differs from
        their parameter's.
        """
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise TypeError("state_dict must be an optimizer state dict with 'state' and 'param_groups'")
        for i, group in enumerate(state_dict["param_groups"]):
            for key, ok in self.UNSUPPORTED.items():
                if group.get(key, ok) != ok:
                    raise ValueError(f"param_groups[{i}]['{key}'] = {group[key]!r} is not supported by "
                                     f"minilora's AdamW (only {ok!r}); it would be silently ignored")
            check_hyperparameters(*(group.get(k) for k in ("lr", "betas", "eps", "weight_decay")))
        params = [p for g in self.param_groups for p in g["params"]]
        for index, entry in state_dict["state"].items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(params):
                raise ValueError(f"state key {index!r} must be a parameter index in [0, {len(params)})")
            p = params[index]
            if not isinstance(entry, dict) or not all(k in entry for k in ("step", *STATE_KEYS)):
                raise ValueError(f"state[{index}] must hold 'step', 'exp_avg' and 'exp_avg_sq'")
            step = entry["step"]
            if not isinstance(step, (torch.Tensor, int, float)) or float(step) < 0:
                raise ValueError(f"state[{index}]['step'] must be a count >= 0, got {step!r}")
            for key in STATE_KEYS:
                t = entry[key]
                if not isinstance(t, torch.Tensor):
                    raise TypeError(f"state[{index}]['{key}'] must be a tensor, got {type(t).__name__}")
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(f"state[{index}]['{key}'] has shape {tuple(t.shape)}, but "
                                     f"parameter {index} has shape {tuple(p.shape)}")
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"state[{index}]['{key}'] holds NaN or inf")
        super().load_state_dict(state_dict)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (its own lr/betas/eps/weight_decay override the defaults). Everything is
        checked first, so a refused group is never installed."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' entry")
        merged = {**self.defaults, **param_group}
        check_hyperparameters(merged["lr"], merged["betas"], merged["eps"], merged["weight_decay"])
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in params:
            if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.is_complex():
                raise TypeError(f"AdamW needs real floating-point parameters, got "
                                f"{getattr(p, 'dtype', type(p).__name__)}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears twice in params: it would be updated twice per step")
        super().add_param_group({**param_group, "params": params})

    def new_state_buffer(self, p: torch.Tensor) -> torch.Tensor:
        """A zeroed tensor like ``p`` for m or v (``PagedAdamW`` puts big ones in managed memory)."""
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def update_chunks(self, params: list) -> list[list]:
        """How to split one (device, dtype, step) bucket into update calls."""
        together = self.foreach if self.foreach is not None else bool(params) and params[0].is_cuda
        return [params] if together else [[p] for p in params]

    def before_update(self, params: list) -> None:
        """Hook run right before ``params`` are updated (paging prefetches their states here)."""

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None and not callable(closure):
            raise TypeError(f"closure must be a callable returning the loss, got {type(closure).__name__}")
        for i, group in enumerate(self.param_groups):  # edited since construction? check before any update
            try:
                check_hyperparameters(group["lr"], group["betas"], group["eps"], group["weight_decay"])
            except (TypeError, ValueError) as e:
                raise type(e)(f"param_groups[{i}]: {e}") from None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            buckets: dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)  # float32 on the CPU, as torch.optim.AdamW keeps it
                    for key in STATE_KEYS:
                        state[key] = self.new_state_buffer(p)
                state["step"] += 1
                buckets.setdefault((p.device, p.dtype, int(state["step"].item())), []).append(p)
            for (_, _, t), bucket in buckets.items():
                for chunk in self.update_chunks(bucket):
                    self.before_update(chunk)
                    adamw_update(chunk, [p.grad for p in chunk], [self.state[p]["exp_avg"] for p in chunk],
                                 [self.state[p]["exp_avg_sq"] for p in chunk], t, lr=group["lr"],
                                 beta1=beta1, beta2=beta2, eps=group["eps"],
                                 weight_decay=group["weight_decay"])
        return loss

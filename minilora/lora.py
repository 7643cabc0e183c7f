"""LoRA: a frozen linear layer plus a trainable low-rank update (Hu et al., 2021, §4.1).

    h = W0 x + (α/r) · B A x          W0: d_out × d_in (frozen), A: r × d_in, B: d_out × r

A starts random (``kaiming_uniform_(a=√5)`` as in peft/loralib, or Gaussian as the paper
words it) and B starts at zero, so at step 0 the model is exactly the pretrained one.
Only A and B (r·(d_in + d_out) numbers per layer) are trained. After training the update
folds into the weight, ``W ← W0 + (α/r)·B A`` (merge), so inference costs nothing extra.

    names = apply_lora(model, targets=("query", "value"), r=8, alpha=16)
    mark_only_lora_trainable(model, extra=("classifier",))
    save_adapter(model, "my_adapter")   # peft's folder format (see minilora.adapter_io)
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from .adapter_io import load_adapter, save_adapter

INITS = ("kaiming", "gaussian")

__all__ = ["INITS", "LoRALinear", "apply_lora", "lora_layers", "mark_only_lora_trainable",
           "load_adapter", "save_adapter", "lora_scaling", "check_lora_args", "lora_parameter_count"]


def check_lora_args(r, alpha, dropout=0.0, init="kaiming", max_r=None) -> None:
    """Raise ValueError naming the first bad argument: r in 1..max_r, α finite, dropout in [0, 1)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1 or (max_r is not None and r > max_r):
        bound = "" if max_r is None else f" and <= min(d_in, d_out) = {max_r}"
        raise ValueError(f"r must be an int >= 1{bound}, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")


def lora_scaling(alpha, r: int, rslora: bool = False) -> float:
    """The factor in front of B A: ``α/r`` (LoRA §4.1), or ``α/√r`` with rsLoRA (Kalajdzievski, 2023)."""
    check_lora_args(r, alpha)
    # γ_r = α/r  (LoRA)   or   α/√r  (rank-stabilised LoRA)
    return alpha / math.sqrt(r) if rslora else alpha / r


class LoRALinear(nn.Module):
    """``h = W0 x + (α/r) B A dropout(x)`` around a frozen ``nn.Linear`` (LoRA §4.1).

    ``base`` is kept as ``.base_layer`` with ``requires_grad=False`` and is not modified
    until ``merge()``. ``lora_A`` is r × d_in, ``lora_B`` is d_out × r (peft's layout).
    ``init="kaiming"``: A ~ kaiming_uniform_(a=√5), B = 0 (peft, loralib);
    ``init="gaussian"``: A ~ N(0, 1/r²), B = 0 (peft's "gaussian"). Dropout acts on the
    adapter's input only; the frozen path always sees the clean ``x``.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 init: str = "kaiming", rslora: bool = False):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        d_out, d_in = base.weight.shape
        check_lora_args(r, alpha, dropout, init, max_r=min(d_in, d_out))
        self.scaling = lora_scaling(alpha, r, rslora)
        self.r, self.alpha, self.rslora, self.init = r, float(alpha), bool(rslora), init
        self.base_layer = base
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(r, d_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, **kw))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters()

    # the wrapped layer's attributes, so code that reads them keeps working
    in_features = property(lambda self: self.base_layer.in_features)
    out_features = property(lambda self: self.base_layer.out_features)
    weight = property(lambda self: self.base_layer.weight)
    bias = property(lambda self: self.base_layer.bias)

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """A random, B = 0: the adapter starts as an exact no-op (LoRA §4.1)."""
        if self.merged:
            raise RuntimeError("unmerge() before re-initialising a merged adapter")
        if self.init == "kaiming":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # U(-1/√d_in, 1/√d_in)
        else:
            nn.init.normal_(self.lora_A, std=1 / self.r)
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r) · B A, the d_out × d_in update the adapter stands for."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # W0 x + b
        if self.merged:
            return out  # W already holds W0 + ΔW
        # + (α/r) · B (A dropout(x)); the scale is applied on the r-wide activation (cheapest)
        return out + F.linear(F.linear(self.dropout(x), self.lora_A) * self.scaling, self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the frozen weight, ``W ← W0 + (α/r)·B A`` (LoRA §4.1).

        Idempotent: merging a merged layer does nothing. A non-finite ΔW is refused with a
        ValueError (it would corrupt the weight irreversibly).
        """
        if self.merged:
            return
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise ValueError("refusing to merge: the LoRA update (α/r)·B A has non-finite entries")
        self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()``: ``W ← W − (α/r)·B A`` (exact up to float rounding); idempotent."""
        if not self.merged:
            return
        self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha:g}, scaling={self.scaling:.4g}, merged={self.merged}")


def _name_matches(name: str, targets) -> bool:
    """peft's rule: a str is a regex that must match the whole name; a list/tuple matches by
    suffix (``name == t`` or ``name`` ends with ``"." + t``)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _check_targets(targets, what="targets"):
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as e:
            raise ValueError(f"{what} is not a valid regular expression: {e}") from e
        return targets
    if not isinstance(targets, (list, tuple, set)) or not all(isinstance(t, str) and t for t in targets):
        raise TypeError(f"{what} must be a regex str or a list/tuple of module-name suffixes, "
                        f"got {targets!r}")
    return tuple(targets)


def _linear_names(model: nn.Module) -> list[str]:
    """Names of the model's Linear layers, numbers collapsed (``layer.*.query``); LoRA ones marked."""
    names = {re.sub(r"\.\d+\.", ".*.", n) + (" (LoRA)" if isinstance(m, LoRALinear) else "")
             for n, m in model.named_modules()
             if isinstance(m, nn.Linear | LoRALinear) and not n.endswith("base_layer")}
    return sorted(names)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module name: LoRALinear}`` for every adapted layer of ``model``, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameter_count(model: nn.Module, targets, r: int) -> int:
    """Σ r·(d_in + d_out) over the Linear layers ``targets`` selects (LoRA §4.1); the model is not changed.

    E.g. MiniLM, W_q and W_v of 6 layers, r = 8: 12 · 8 · (384 + 384) = 73,728.
    """
    targets = _check_targets(targets)
    check_lora_args(r, 1.0)
    layers = [m for n, m in model.named_modules() if n and isinstance(m, nn.Linear | LoRALinear)
              and _name_matches(n, targets) and not n.endswith(".base_layer")]
    if not layers:
        raise ValueError(f"targets={targets!r} matched no Linear module; the Linear modules are: "
                         + ", ".join(_linear_names(model)))
    return sum(r * (m.in_features + m.out_features) for m in layers)


def apply_lora(model: nn.Module, targets=("query", "value"), r: int = 8, alpha: float = 8.0,
               dropout: float = 0.0, init: str = "kaiming", rslora: bool = False,
               seed: int | None = None) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` whose name matches ``targets`` by a LoRALinear.

    ``targets``: module-name suffixes (``("query", "value")`` = W_q, W_v, the paper's
    choice, LoRA §7.1) or one regex matched against the full name (peft's rules). Returns
    the replaced names. A pattern matching nothing raises ValueError listing the Linear
    modules that exist; a match that is not an ``nn.Linear`` raises TypeError. With
    ``seed`` the A matrices are drawn from ``torch.manual_seed(seed)`` (global RNG kept).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = _check_targets(targets)
    found = [(n, m) for n, m in model.named_modules()
             if n and _name_matches(n, targets) and not n.endswith(".base_layer")]
    if not found:
        raise ValueError(f"targets={targets!r} matched no module; the Linear modules are: "
                         + ", ".join(_linear_names(model)))
    for n, m in found:
        if isinstance(m, LoRALinear):
            raise ValueError(f"targets={targets!r}: {n} already has a LoRA adapter")
        if not isinstance(m, nn.Linear):
            raise TypeError(f"targets={targets!r} matched {n}, a {type(m).__name__}; "
                            "LoRA wraps torch.nn.Linear only")
    # validate every argument before the model is touched
    for _, m in found:
        check_lora_args(r, alpha, dropout, init, max_r=min(m.weight.shape))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for n, m in found:
            parent_name, _, child = n.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(m, r=r, alpha=alpha, dropout=dropout, init=init, rslora=rslora))
    return [n for n, _ in found]


def mark_only_lora_trainable(model: nn.Module, extra=("classifier",)) -> int:
    """Freeze everything except the LoRA A/B matrices and the modules named by ``extra``.

    ``extra`` uses the same suffix/regex rules as ``apply_lora`` (the new task head,
    ``classifier``, must train: it is random at the start; peft calls it modules_to_save).
    Returns the number of trainable parameters, r·(d_in + d_out) per layer plus the extras.
    """
    extra = _check_targets(() if extra is None else extra, "extra")
    if not lora_layers(model):
        raise ValueError("model has no LoRALinear layer: call apply_lora(model, ...) first")
    extra_modules = [n for n, _ in model.named_modules() if n and extra and _name_matches(n, extra)]
    if extra and not extra_modules:
        raise ValueError(f"extra={extra!r} matched no module; the Linear modules are: "
                         + ", ".join(_linear_names(model)))
    for p in model.parameters():
        p.requires_grad = False
    for layer in lora_layers(model).values():
        layer.lora_A.requires_grad = layer.lora_B.requires_grad = True
    for n in extra_modules:
        for p in model.get_submodule(n).parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

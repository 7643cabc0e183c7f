"""LoRA: a frozen linear layer plus a trainable low-rank update (Hu et al., 2021, §4.1).

    h = W0 x + (α/r) · B A x          W0: d_out × d_in (frozen), A: r × d_in, B: d_out × r

A starts random (``kaiming_uniform_(a=√5)`` as in peft/loralib, or Gaussian as the paper
words it) and B starts at zero, so at step 0 the model is exactly the pretrained one.
Only A and B (r·(d_in + d_out) numbers per layer) are trained. After training the update
folds into the weight, ``W ← W0 + (α/r)·B A`` (merge), so inference costs nothing extra.

This file is the layer; ``inject.py`` puts layers into a model and ``peft_format.py``
saves and loads them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import ArgumentTypeError, check_choice, check_int, check_number

INITS = ("kaiming", "gaussian")


def check_lora_args(r, alpha, dropout=0.0, init="kaiming", max_r=None, rslora=False) -> None:
    """Raise naming the first bad argument: r an int in 1..max_r, α finite and non-zero,
    dropout in [0, 1), init one of ``INITS``."""
    check_int(r, "r", 1, max_r, "" if max_r is None else " (min(d_in, d_out) of the layer)")
    if check_number(alpha, "alpha") == 0:
        raise ValueError("alpha must be non-zero: the update is scaled by α/r, so with α = 0 the adapter "
                         "does nothing and every gradient of A and B is exactly 0")
    check_number(dropout, "dropout", 0.0, 1.0, high_open=True)
    check_choice(init, "init", INITS)
    if not isinstance(rslora, bool):
        raise ArgumentTypeError(f"rslora must be True or False, got {rslora!r}")


def lora_scaling(alpha, r: int, rslora: bool = False) -> float:
    """The factor in front of B A: ``α/r`` (LoRA §4.1), or ``α/√r`` with rsLoRA (Kalajdzievski, 2023)."""
    check_lora_args(r, alpha, rslora=rslora)
    # γ_r = α/r  (LoRA)   or   α/√r  (rank-stabilised LoRA)
    return alpha / math.sqrt(r) if rslora else alpha / r


def is_quantized_base(module) -> bool:
    """A frozen 4/8-bit stand-in for an nn.Linear (minilora.qlora.Linear4bit/Linear8bit), which
    marks itself with ``quantized_base = True`` (duck-typed: lora/ does not import qlora/)."""
    return bool(getattr(module, "quantized_base", False))


class _MergedGuard(torch.autograd.Function):
    """Identity in the forward pass; in the backward pass it explains why a merged adapter
    cannot train (its update is folded into the frozen weight, so A and B get no gradient)."""

    @staticmethod
    def forward(ctx, out, anchor):
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward through a merged LoRALinear: the adapter's update is folded into "
                           "the frozen weight, so lora_A and lora_B get no gradient. Call unmerge() "
                           "before training, or freeze the adapter (requires_grad_(False)) to train "
                           "other parts of the model with it merged")


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
        quantized = is_quantized_base(base)
        if not isinstance(base, nn.Linear) and not quantized:
            raise TypeError("base must be a torch.nn.Linear or a quantised stand-in "
                            f"(minilora.qlora.Linear4bit), got {type(base).__name__}")
        d_out, d_in = base.out_features, base.in_features
        check_lora_args(r, alpha, dropout, init, max_r=min(d_in, d_out), rslora=rslora)
        r = int(r)
        self.scaling = lora_scaling(alpha, r, rslora)
        self.r, self.alpha, self.rslora, self.init = r, float(alpha), rslora, init
        self.base_layer = base
        if not quantized:  # a quantised base stores no float weight: its codes are buffers
            base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        # a quantised base: A and B in the dtype of the weight it was made from (peft's QLoRA: fp32)
        kw = (dict(device=base.packed.device, dtype=base.weight_dtype) if quantized
              else dict(device=base.weight.device, dtype=base.weight.dtype))
        self.lora_A = nn.Parameter(torch.empty(r, d_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, **kw))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self._merged_adapter = None  # (A, B, α/r) as merged, for an exact unmerge
        self.reset_lora_parameters()

    linear_like = True  # stands in for an nn.Linear (minilora.lora.inject.is_linear_like)

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
        if self.merged:  # W already holds W0 + ΔW
            if torch.is_grad_enabled() and (self.lora_A.requires_grad or self.lora_B.requires_grad):
                return _MergedGuard.apply(out, self.lora_A)  # backward explains, instead of torch's error
            return out
        # + (α/r) · B (A dropout(x)); the scale is applied on the r-wide activation (cheapest)
        return out + F.linear(F.linear(self.dropout(x), self.lora_A) * self.scaling, self.lora_B)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the frozen weight, ``W ← W0 + (α/r)·B A`` (LoRA §4.1).

        Idempotent: merging a merged layer does nothing. A non-finite ΔW is refused with a
        ValueError (it would corrupt the weight irreversibly). A copy of the merged A, B and
        scaling is kept (r·(d_in + d_out) numbers), so ``unmerge`` restores W0 even if they
        are edited while merged.
        """
        if self.merged:
            return
        if is_quantized_base(self.base_layer):
            raise RuntimeError("refusing to merge into a quantised base: W0 + (α/r)·B A would have to be "
                               "re-quantised to 4 bits, which adds a new rounding error to every weight and "
                               "loses most of what the adapter learned (its update is far smaller than a "
                               "quantisation step). Keep the adapter separate, or dequantise the base to a "
                               "float nn.Linear (layer.base_layer.dequantized_weight()) and merge there")
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise ValueError("refusing to merge: the LoRA update (α/r)·B A has non-finite entries")
        self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
        self._merged_adapter = (self.lora_A.detach().clone(), self.lora_B.detach().clone(), self.scaling)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()``: ``W ← W − (α/r)·B A`` with the A, B and α/r that were merged (exact
        up to float rounding, even if they were edited since); idempotent."""
        if not self.merged:
            return
        A, B, scaling = self._merged_adapter
        self.base_layer.weight -= ((B @ A) * scaling).to(self.base_layer.weight.dtype)
        self._merged_adapter = None
        self.merged = False

    def get_extra_state(self) -> torch.Tensor:
        """Saved in ``state_dict`` (a 0-d tensor, so safetensors can store it): whether W already
        holds the update. A merged layer's state loaded into an unmerged one is then marked
        merged, so its update is not added twice."""
        return torch.tensor(self.merged)

    def set_extra_state(self, state) -> None:
        merged = bool(state.get("merged", False)) if isinstance(state, dict) else bool(state)
        self.merged = merged  # base weight, A and B were loaded before this call
        self._merged_adapter = ((self.lora_A.detach().clone(), self.lora_B.detach().clone(), self.scaling)
                                if merged else None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha:g}, scaling={self.scaling:.4g}, merged={self.merged}")

"""AdaLoRA's SVD-form adapter: a frozen linear layer plus ``P Λ Q`` (Zhang et al., 2023, §3.1).

    h = W0 x + (α / ranknum) · P Λ Q x        P: d_out × r, Λ = diag(λ): r × 1, Q: r × d_in

``lora_A`` is Q, ``lora_E`` holds the singular values λ, ``lora_B`` is P (peft's names and
layouts). λ starts at 0, so at step 0 the model is exactly the pretrained one; P and Q start
at N(0, 0.02²). Pruning a rank sets one λ_i to 0 (the allocator does it, ``allocator.py``)
and leaves P and Q alone, so a pruned triplet can come back if its score recovers.
``ranknum`` is the initial r and stays fixed when ranks are pruned (the AdaLoRA code found
that rescaling by the current rank hurt).

``apply_adalora`` puts these layers into a model with the matching and replacement helpers
that LoRA uses (``minilora.lora.match_modules`` / ``replace_module``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_int, check_number
from ..lora import check_lora_args, match_modules, replace_module
from ..lora.inject import check_shared, check_targets

INIT_STD = 0.02  # P, Q ~ N(0, 0.02²)  (AdaLoRA code, peft's reset_lora_parameters)


class SVDLinear(nn.Module):
    """``h = W0 x + (α/ranknum) · B (A ⊙ E) dropout(x)`` around a frozen ``nn.Linear`` (AdaLoRA §3.1).

    ``lora_A`` = Q (r × d_in), ``lora_E`` = Λ (r × 1, zeros), ``lora_B`` = P (d_out × r).
    ``ranknum`` defaults to ``r`` and is never changed by pruning; a layer loaded with fewer
    kept triplets than it started with passes the initial r as ``ranknum`` (then ``r`` may
    be 0). ``rank_mask`` (a bool per triplet) is what the allocator last kept; saving slices
    the tensors to it. peft divides by ``ranknum + 1e-5``; this layer divides by ``ranknum``
    (a relative difference of 1e-5/ranknum, below float32 noise for the tests).
    """

    linear_like = True  # stands in for an nn.Linear (minilora.lora.inject.is_linear_like)

    def __init__(
        self,
        base: nn.Linear,
        r: int = 12,
        alpha: float = 8.0,
        dropout: float = 0.0,
        ranknum: int | None = None,
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        d_out, d_in = base.weight.shape
        max_r = min(d_in, d_out)
        if ranknum is None:
            check_lora_args(r, alpha, dropout, max_r=max_r)
            ranknum = r
        else:
            check_int(r, "r", 0, max_r, " (min(d_in, d_out) of the layer)")
            check_lora_args(max(r, 1), alpha, dropout)
            check_int(ranknum, "ranknum", max(1, r), why=" (the initial rank, at least r)")
        self.r, self.alpha, self.ranknum = int(r), float(alpha), int(ranknum)
        self.base_layer = base
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(self.r, d_in, **kw))  # Q: right singular vectors
        self.lora_E = nn.Parameter(torch.zeros(self.r, 1, **kw))  # Λ: singular values
        self.lora_B = nn.Parameter(torch.empty(d_out, self.r, **kw))  # P: left singular vectors
        self.register_buffer(
            "rank_mask", torch.ones(self.r, dtype=torch.bool, device=kw["device"]), persistent=False
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self._merged_delta = None
        self.reset_parameters()

    in_features = property(lambda self: self.base_layer.in_features)
    out_features = property(lambda self: self.base_layer.out_features)
    weight = property(lambda self: self.base_layer.weight)
    bias = property(lambda self: self.base_layer.bias)

    @property
    def scaling(self) -> float:
        """α / ranknum, fixed for the whole run (AdaLoRA §3.1, ranknum = the initial r)."""
        return self.alpha / self.ranknum

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Λ = 0, P, Q ~ N(0, 0.02²): the adapter starts as an exact no-op (AdaLoRA §3.1)."""
        if self.merged:
            raise RuntimeError("unmerge() before re-initialising a merged adapter")
        nn.init.normal_(self.lora_A, mean=0.0, std=INIT_STD)
        nn.init.zeros_(self.lora_E)
        nn.init.normal_(self.lora_B, mean=0.0, std=INIT_STD)
        self.rank_mask.fill_(True)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/ranknum) · P diag(λ) Q = (α/ranknum) · B (A ⊙ E), d_out × d_in."""
        return (self.lora_B @ (self.lora_A * self.lora_E)) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # W0 x + b
        if self.merged:
            return out
        # + (α/ranknum) · dropout(x) (A ⊙ E)ᵀ Bᵀ  — the r-wide activation first (cheapest)
        return (
            out + F.linear(F.linear(self.dropout(x), self.lora_A * self.lora_E), self.lora_B) * self.scaling
        )

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the frozen weight, ``W ← W0 + (α/ranknum)·P Λ Q``; idempotent.
        The merged ΔW is kept so ``unmerge`` restores W0 even if A, E, B change meanwhile."""
        if self.merged:
            return
        delta = self.delta_weight()
        if not torch.isfinite(delta).all():
            raise ValueError("refusing to merge: the AdaLoRA update P Λ Q has non-finite entries")
        self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
        self._merged_delta = delta.to(self.base_layer.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge()`` (``W ← W − ΔW`` with the ΔW that was merged); idempotent."""
        if not self.merged:
            return
        self.base_layer.weight -= self._merged_delta
        self._merged_delta = None
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
            f"kept={int(self.rank_mask.sum())}, alpha={self.alpha:g}, ranknum={self.ranknum}, "
            f"merged={self.merged}"
        )


def svd_layers(model: nn.Module) -> dict[str, SVDLinear]:
    """``{module name: SVDLinear}`` for every AdaLoRA layer of ``model``, in module order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, SVDLinear)}


def mark_only_adalora_trainable(model: nn.Module, extra=("classifier",)) -> int:
    """Freeze everything but the A, E, B of every SVDLinear and the ``extra`` modules (the new
    task head; peft's modules_to_save). Returns the number of trainable parameters."""
    extra = () if extra is None else check_targets(extra, "extra")
    layers = svd_layers(model)
    if not layers:
        raise ValueError("model has no SVDLinear layer: call apply_adalora(model, ...) first")
    extra_modules = [n for n, _ in match_modules(model, extra, "extra")] if extra else []
    for p in model.parameters():
        p.requires_grad = False
    for layer in layers.values():
        for p in (layer.lora_A, layer.lora_E, layer.lora_B):
            p.requires_grad = True
    for n in extra_modules:
        for p in model.get_submodule(n).parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def apply_adalora(
    model: nn.Module,
    targets=("query", "value"),
    init_r: int = 12,
    alpha: float = 8.0,
    dropout: float = 0.0,
    extra=("classifier",),
    seed: int | None = None,
) -> list[str]:
    """Wrap every ``nn.Linear`` whose name matches ``targets`` in an SVDLinear of rank ``init_r``,
    then freeze all but the adapters and the ``extra`` modules (AdaLoRA §3.1).

    ``targets`` follow peft's rules (suffixes or one regex, ``minilora.lora.match_modules``);
    ``extra=None`` freezes the head too. With ``seed`` the P, Q draws come from
    ``torch.manual_seed(seed)`` (the global RNG is kept). Returns the wrapped names.
    """
    found = match_modules(model, targets)
    if seed is not None:
        check_int(seed, "seed", 0, 2**63 - 1)
    check_shared(model, found)
    for n, m in found:
        if isinstance(m, SVDLinear):
            raise ValueError(f"targets={targets!r}: {n} already has an AdaLoRA adapter")
        if not isinstance(m, nn.Linear):
            raise TypeError(
                f"targets={targets!r} matched {n}, a {type(m).__name__}; AdaLoRA wraps torch.nn.Linear only"
            )
    check_number(alpha, "alpha")
    for n, m in found:  # validate every argument before the model is touched
        check_int(init_r, "init_r", 1, min(m.weight.shape), f" (min(d_in, d_out) of {n})")
        check_lora_args(init_r, alpha, dropout)
    if extra:
        check_targets(extra, "extra")
        match_modules(model, extra, "extra")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for n, m in found:
            replace_module(model, n, SVDLinear(m, r=init_r, alpha=alpha, dropout=dropout))
    mark_only_adalora_trainable(model, extra)
    return [n for n, _ in found]

"""The weight update of a fine-tune, ``ΔW = W_ft − W0``, per encoder matrix, and its rank-r truncation.

LoRA's hypothesis (Hu et al. 2021, §4) is that ΔW has low intrinsic rank. The direct test:
keep the fine-tuned model but replace each ΔW by its best rank-r approximation,

    W ← W0 + trunc_r(ΔW) = W_ft − Σ_{i>r} σ_i u_i v_iᵀ

and measure what the task loses. This module finds the 36 encoder matrices of a BERT-style
model (per layer: query, key, value, attention output, FFN in, FFN out), computes ΔW, and
writes truncated updates into a model inside a context manager that restores it exactly.
Everything else the fine-tune changed (embeddings, biases, LayerNorms, pooler, head) is
left as fine-tuned.
"""

from __future__ import annotations

import contextlib
import re

import torch

from ..checks import check_int
from ..train import evaluate
from .spectra import as_matrix

# matrix type -> module path inside ``encoder.layer.{i}.``
MATRIX_TYPES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)$")


def matrix_label(name: str) -> tuple[int, str]:
    """``(layer, type)`` of an encoder Linear's module name, e.g. ``(3, "ffn_in")``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a module name (str), got {type(name).__name__}")
    m = _LAYER.search(name)
    types = {path: t for t, path in MATRIX_TYPES.items()}
    if m is None or m.group(2) not in types:
        allowed = "|".join(MATRIX_TYPES.values())
        raise ValueError(f"name must be an encoder matrix (…encoder.layer.N.<{allowed}>), got {name!r}")
    return int(m.group(1)), types[m.group(2)]


def encoder_matrices(model, types=tuple(MATRIX_TYPES)) -> dict[str, torch.nn.Linear]:
    """The encoder's Linear modules of the given ``types`` by module name, in model order."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    unknown = [t for t in types if t not in MATRIX_TYPES]
    if unknown or isinstance(types, str) or not types:
        raise ValueError(f"types must be a sequence drawn from {tuple(MATRIX_TYPES)}, got {types!r}")
    found = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and _LAYER.search(name):
            try:
                _, kind = matrix_label(name)
            except ValueError:
                continue
            if kind in types:
                found[name] = module
    if not found:
        raise ValueError("model has no encoder.layer.N.* Linear modules (expected a BERT-style encoder)")
    return found


def weight_deltas(tuned, base, types=tuple(MATRIX_TYPES)) -> dict[str, torch.Tensor]:
    """``ΔW = W_ft − W0`` (float32, CPU) for every encoder matrix of ``types``, keyed by module name."""
    tuned_m, base_m = encoder_matrices(tuned, types), encoder_matrices(base, types)
    if tuned_m.keys() != base_m.keys():
        raise ValueError("tuned and base must have the same architecture; module names differ: "
                         f"{sorted(set(tuned_m) ^ set(base_m))[:5]}")
    out = {}
    for name, lin in tuned_m.items():
        w_ft, w_0 = lin.weight.detach().float().cpu(), base_m[name].weight.detach().float().cpu()
        if w_ft.shape != w_0.shape:
            raise ValueError(f"{name}: tuned shape {tuple(w_ft.shape)} != base shape {tuple(w_0.shape)}")
        out[name] = w_ft - w_0
    return out


def decompose(deltas: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Thin SVD ``(U, σ, Vᵀ)`` (float64) of each ΔW, computed once and reused for every r."""
    if not isinstance(deltas, dict) or not deltas:
        raise TypeError("deltas must be a non-empty dict of module name → ΔW (weight_deltas(...))")
    return {name: torch.linalg.svd(as_matrix(d, name), full_matrices=False) for name, d in deltas.items()}


def tail(factors, r: int) -> torch.Tensor:
    """``ΔW − trunc_r(ΔW) = Σ_{i>r} σ_i u_i v_iᵀ`` from the SVD factors (float64)."""
    if (not isinstance(factors, (tuple, list)) or len(factors) != 3
            or not all(isinstance(f, torch.Tensor) for f in factors)):
        raise TypeError("factors must be the (U, σ, Vᵀ) tensors of one ΔW (decompose(...)[name])")
    U, s, Vh = factors
    if U.dim() != 2 or s.dim() != 1 or Vh.dim() != 2 or U.shape[1] != s.numel() or Vh.shape[0] != s.numel():
        raise ValueError(f"factors must be a thin SVD (U: m×k, σ: k, Vᵀ: k×n), got shapes "
                         f"{tuple(U.shape)}, {tuple(s.shape)}, {tuple(Vh.shape)}")
    r = check_int(r, "r", 0, len(s))
    return (U[:, r:] * s[r:]) @ Vh[r:]


@contextlib.contextmanager
def truncated_update(model, factors: dict, r, names=None):
    """Inside the block, each named matrix of ``model`` is ``W0 + trunc_r(ΔW)``; restored exactly after.

    ``model`` must hold the fine-tuned weights ``W_ft`` the ``factors`` (from ``decompose``)
    were computed for; each weight becomes ``W_ft − Σ_{i>r} σ_i u_i v_iᵀ``. ``r=None`` or
    ``"full"`` leaves ΔW whole; an int r larger than a matrix's min(m, n) is clipped to it
    (nothing left to cut). ``names`` limits the change to some matrices (default: all).
    """
    names = list(factors) if names is None else list(names)
    missing = [n for n in names if n not in factors]
    if missing:
        raise ValueError(f"names not in factors: {missing[:5]}")
    if not (r is None or r == "full"):
        check_int(r, "r", 0, why=", None or 'full'")
    modules = dict(model.named_modules())
    saved = {}
    try:
        with torch.no_grad():
            for name in names:
                if name not in modules:
                    raise ValueError(f"model has no module {name!r}")
                weight = modules[name].weight
                U, sv, Vh = factors[name]
                if (U.shape[0], Vh.shape[1]) != tuple(weight.shape):
                    raise ValueError(f"factors[{name!r}] are of a {U.shape[0]}×{Vh.shape[1]} matrix, the "
                                     f"model's {name} is {tuple(weight.shape)}")
                k = len(sv)
                if r is None or r == "full" or r >= k:
                    continue
                saved[name] = weight.detach().clone()
                # W ← W_ft − Σ_{i>r} σ_i u_i v_iᵀ  (= W0 + trunc_r(ΔW))
                weight.sub_(tail(factors[name], r).to(weight.device, weight.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, w in saved.items():
                modules[name].weight.copy_(w)


def truncation_accuracy(model, factors: dict, data, r, names=None) -> float:
    """Accuracy on ``data`` with each named ΔW truncated to rank r (``evaluate`` in ``truncated_update``)."""
    with truncated_update(model, factors, r, names):
        return evaluate(model, data)

"""Putting LoRA layers into a model: find modules by name, swap them, freeze the rest.

    names = apply_lora(model, targets=("query", "value"), r=8, alpha=16)   # LoRA §4.2, §7.1
    mark_only_lora_trainable(model, extra=("classifier",))

``match_modules`` implements peft's matching rule and ``replace_module`` the swap; every
adapter family (LoRA here, SVD-form AdaLoRA, 4-bit bases) reuses both.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..adamw import ADAMW_STATE_BYTES_PER_PARAMETER
from ..checks import check_int
from .layer import LoRALinear, check_lora_args, is_quantized_base


def name_matches(name: str, targets) -> bool:
    """peft's rule: a str is a regex that must match the whole name; a list/tuple matches by
    suffix (``name == t`` or ``name`` ends with ``"." + t``)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def check_targets(targets, what="targets"):
    """``targets`` validated: a compilable regex str, or a non-empty tuple of non-empty suffixes."""
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


def is_linear_like(module: nn.Module) -> bool:
    """An ``nn.Linear`` or a layer standing in for one (LoRA/AdaLoRA wrappers, 4-bit bases),
    which marks itself with the class attribute ``linear_like = True``."""
    return isinstance(module, nn.Linear) or getattr(module, "linear_like", False)


def linear_names(model: nn.Module) -> list[str]:
    """Names of the model's Linear layers, numbers collapsed (``layer.*.query``), wrapper types
    marked: what an error message lists when a target matches nothing."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = set()
    for n, m in model.named_modules():
        if n and is_linear_like(m) and not n.endswith(".base_layer"):
            kind = "" if isinstance(m, nn.Linear) else f" ({type(m).__name__})"
            names.add(re.sub(r"\.\d+\.", ".*.", n) + kind)
    return sorted(names)


def match_modules(model: nn.Module, targets, what: str = "targets", outermost: bool = False
                  ) -> list[tuple[str, nn.Module]]:
    """``[(name, module)]`` of every submodule whose name matches ``targets`` (peft's rule), in
    model order. The ``base_layer`` inside a wrapper is never matched (the wrapper is).
    ``outermost`` drops matches nested in another match. Nothing matched: ValueError listing
    the Linear modules that exist."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = check_targets(targets, what)
    found = [(n, m) for n, m in model.named_modules()
             if n and name_matches(n, targets) and not n.endswith(".base_layer")]
    if outermost:
        found = [(n, m) for n, m in found if not any(n.startswith(o + ".") for o, _ in found)]
    if not found:
        raise ValueError(f"{what}={targets!r} matched no module; the Linear modules are: "
                         + ", ".join(linear_names(model)))
    return found


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where submodule ``name`` (dotted path) is; returns the module it replaced."""
    if not isinstance(new, nn.Module):
        raise TypeError(f"new must be a torch.nn.Module, got {type(new).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be the dotted path of a submodule, got {name!r}")
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
        old = parent._modules[child]
    except (AttributeError, KeyError):
        raise ValueError(f"name={name!r} is not a submodule of the model") from None
    setattr(parent, child, new)
    return old


def check_shared(model: nn.Module, found) -> None:
    """Refuse a module used at two places in the model (tied weights): wrapping it at one name
    would leave the other use a plain layer, so only half of it would be adapted."""
    uses: dict[int, list[str]] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        uses.setdefault(id(m), []).append(n)
    for n, m in found:
        if len(uses[id(m)]) > 1:
            raise ValueError(f"{n} is the same module as {[u for u in uses[id(m)] if u != n]} (shared or "
                             "tied): an adapter at one name would leave the other use unadapted; untie them "
                             "first (copy.deepcopy) or adapt neither")


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module name: LoRALinear}`` for every adapted layer of ``model``, in module order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameter_count(model: nn.Module, targets, r: int) -> int:
    """Σ r·(d_in + d_out) over the Linear layers ``targets`` selects (LoRA §4.1); the model is not changed.

    E.g. MiniLM, W_q and W_v of 6 layers, r = 8: 12 · 8 · (384 + 384) = 73,728. ``r`` must
    be a rank ``apply_lora`` accepts for every selected layer.
    """
    found = match_modules(model, targets)
    for n, m in found:
        if not is_linear_like(m):
            raise TypeError(f"targets={targets!r} matched {n}, a {type(m).__name__}; LoRA adapts Linear "
                            "layers only (apply_lora refuses it too)")
    layers = [m for _, m in found]
    check_lora_args(r, 1.0, max_r=min(min(m.in_features, m.out_features) for m in layers))
    return sum(r * (m.in_features + m.out_features) for m in layers)


def lora_costs(model: nn.Module, targets, r: int, head_parameters: int = 0) -> dict:
    """What LoRA on ``targets`` at rank ``r`` costs, from the model's shapes (LoRA §4.1, §4.2).

    ``lora_parameters = Σ r·(d_in + d_out)``; AdamW keeps two fp32 moments per trained
    number (``8 bytes × trainable``); the adapter file stores the trained numbers in fp32
    (``4 bytes × trainable``); ``share`` is trainable / all parameters of the model.
    """
    head_parameters = check_int(head_parameters, "head_parameters", 0)
    lora = lora_parameter_count(model, targets, r)
    trainable = lora + head_parameters
    total = sum(p.numel() for p in model.parameters())
    return {"lora_parameters": lora, "trainable": trainable,
            "adamw_state_bytes": ADAMW_STATE_BYTES_PER_PARAMETER * trainable,
            "adapter_bytes": 4 * trainable, "share": trainable / total}


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
    found = match_modules(model, targets)
    if seed is not None:
        check_int(seed, "seed", 0, 2**63 - 1)
    check_shared(model, found)
    for n, m in found:
        if isinstance(m, LoRALinear):
            raise ValueError(f"targets={targets!r}: {n} already has a LoRA adapter")
        if not isinstance(m, nn.Linear) and not is_quantized_base(m):
            raise TypeError(f"targets={targets!r} matched {n}, a {type(m).__name__}; "
                            "LoRA wraps torch.nn.Linear (or a quantised Linear4bit) only")
    # validate every argument before the model is touched
    for _, m in found:
        check_lora_args(r, alpha, dropout, init, max_r=min(m.in_features, m.out_features), rslora=rslora)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for n, m in found:
            layer = LoRALinear(m, r=r, alpha=alpha, dropout=dropout, init=init, rslora=rslora)
            replace_module(model, n, layer)
    return [n for n, _ in found]


def mark_only_lora_trainable(model: nn.Module, extra=("classifier",)) -> int:
    """Freeze everything except the LoRA A/B matrices and the modules named by ``extra``.

    ``extra`` uses the same suffix/regex rules as ``apply_lora`` (the new task head,
    ``classifier``, must train: it is random at the start; peft calls it modules_to_save).
    Returns the number of trainable parameters, r·(d_in + d_out) per layer plus the extras.
    """
    extra = () if extra is None else extra
    check_targets(extra, "extra")
    if not lora_layers(model):
        raise ValueError("model has no LoRALinear layer: call apply_lora(model, ...) first")
    extra_modules = [n for n, _ in match_modules(model, extra, "extra")] if extra else []
    for p in model.parameters():
        p.requires_grad = False
    for layer in lora_layers(model).values():
        layer.lora_A.requires_grad = layer.lora_B.requires_grad = True
    for n in extra_modules:
        for p in model.get_submodule(n).parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
